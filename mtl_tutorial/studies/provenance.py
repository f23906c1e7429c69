"""Which code produced a result: the git commit of the package, and whether it had uncommitted changes."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository


def git_state(*paths: str) -> tuple[str, bool]:
    """``(commit, modified)``: ``git rev-parse HEAD`` and whether ``paths`` (default: the package)
    differ from it; ``("unknown", True)`` outside a git checkout or without git.

    >>> commit, modified = git_state()
    >>> len(commit) == 40 or commit == "unknown"
    True
    """
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], check=False, capture_output=True, text=True,
                                cwd=ROOT).stdout.strip()
        modified = bool(subprocess.run(["git", "status", "--porcelain", *(paths or ("mtl_tutorial",))], check=False,
                                       capture_output=True, text=True, cwd=ROOT).stdout.strip())
    except OSError:
        return "unknown", True
    return (commit, modified) if commit else ("unknown", True)
