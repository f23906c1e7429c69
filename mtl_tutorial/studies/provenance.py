"""Which code produced a result: the git commit, package versions, threads and time.

Every study stamps two kinds of record: :func:`run_provenance` on each run *when it is trained*
(kept unchanged when a later call collects the run into a summary), and :func:`provenance` on
the summary, naming the command and commit that collected it.
"""

from __future__ import annotations

import datetime
import platform
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
PACKAGES = ("torch", "tokenizers", "scikit-learn", "numpy")


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


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages`` (``"absent"`` for one that is not installed)."""
    out = {}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def run_provenance() -> dict:
    """Stamped on one run as it is trained: commit, versions, Python, machine, threads, UTC time."""
    commit, dirty = git_state()
    return {
        "git_commit": commit,
        "package_modified_since_commit": dirty,
        "versions": versions(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": _threads(),
        "trained_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def provenance(name: str, started: float, threads: int | None = None, seeds: list[int] | None = None,
               command: str | None = None) -> dict:
    """Stamped on a summary: the command, git commit, versions, machine and wall time of this call."""
    commit, dirty = git_state()
    return {
        "experiment": name,
        "command": command or (f"python -m mtl_tutorial.studies.experiments {name}"
                               + (f" --threads {threads}" if threads else "")),
        "seeds": list(seeds) if seeds is not None else "all",
        "git_commit": commit,
        "package_modified_since_commit": dirty,
        "versions": versions(),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {_threads()} torch threads",
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
