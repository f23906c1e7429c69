"""Where studies keep results: every write atomic, and a stored summary never shrinks.

A summary (``book/results/NAME.json``) is what the book reads. A call that would store fewer
runs than the summary already holds (a ``--seeds 0`` test run, a ``--collect`` with other
settings, a crash before the last run) refuses with one line naming the flag that forces it,
instead of erasing hours of training. A per-run record is written once, atomically, when the run
finishes; a broken one is refused on load with the file's name and the repair.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mtl_tutorial.files import atomic_write_json, read_json
from mtl_tutorial.studies.cli import UsageError

FORCE_FLAG = "--force"


def count_runs(result: dict) -> int:
    """The number of runs a summary holds: ``len(result["runs"])``."""
    return len(result.get("runs", ()))


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def save_summary(path: str | Path, result: dict, force: bool = False,
                 count: Callable[[dict], int] = count_runs, rerun: str = "the study without --seeds") -> Path:
    """Write ``result`` to ``path`` atomically unless it holds fewer runs than the stored one.

    ``count`` says how many runs a summary holds; ``rerun`` is the command that stores them all.
    With ``force`` the stored summary is replaced whatever it holds.
    """
    path = Path(path)
    if path.exists() and not force:
        stored = read_json(path, repair=f"restore it with `git checkout -- {_shown(path)}`, or pass {FORCE_FLAG} "
                                        "to replace it")
        old, new = count(stored), count(result)
        if new < old:
            raise UsageError(
                f"{_shown(path)} holds {old} runs and this call has only {new}; writing it would lose "
                f"{old - new}. Run {rerun} to store them all, write elsewhere with --out, or pass "
                f"{FORCE_FLAG} to replace it")
    return atomic_write_json(path, result)


def load_run(path: str | Path, command: str) -> Any:
    """A finished run's record; a broken file names itself and how to retrain the run."""
    return read_json(path, repair=f"delete it and rerun `{command}` to train that run again")


def save_run(path: str | Path, record: dict) -> Path:
    """Store one finished run's record atomically."""
    return atomic_write_json(path, record)
