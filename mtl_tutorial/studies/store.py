"""Where studies keep results: every write atomic, and a stored summary never shrinks.

A summary (``book/results/NAME.json``) is what the book reads. A call that would store fewer
runs than the summary already holds (a ``--seeds 0`` test run, a ``--collect`` with other
settings, a crash before the last run) refuses with one line naming the flag that forces it,
instead of erasing hours of training. A per-run record is written once, atomically, when the run
finishes; a broken one is refused on load with the file's name and the repair.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mtl_tutorial.files import atomic_write_json, atomic_write_text, read_json
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


def _stored_repair(path: Path) -> str:
    return f"restore it with `git checkout -- {_shown(path)}`, or pass {FORCE_FLAG} to replace it"


def load_summary(path: str | Path) -> dict | None:
    """The summary stored at ``path``, or None when there is none; a broken one names itself."""
    path = Path(path)
    if not path.exists():
        return None
    return read_json(path, repair=_stored_repair(path))


def check_summary(path: str | Path, runs: int, force: bool = False, count: Callable[[dict], int] = count_runs,
                  rerun: str = "the study without --seeds") -> None:
    """Refuse, before any training, a call whose summary would hold ``runs`` runs, fewer than the stored one.

    The same check as :func:`save_summary`, made up front so that a refused call costs nothing.
    """
    path = Path(path)
    if force or not path.exists():
        return
    old = count(read_json(path, repair=_stored_repair(path)))
    if runs < old:
        raise UsageError(
            f"{_shown(path)} holds {old} runs and this call has only {runs}; writing it would lose "
            f"{old - runs}. Run {rerun} to store them all, write elsewhere with --out, or pass "
            f"{FORCE_FLAG} to replace it")


def save_summary(path: str | Path, result: dict, force: bool = False,
                 count: Callable[[dict], int] = count_runs, rerun: str = "the study without --seeds",
                 serialise: Callable[[dict], str] | None = None) -> Path:
    """Write ``result`` to ``path`` atomically unless it holds fewer runs than the stored one.

    ``count`` says how many runs a summary holds; ``rerun`` is the command that stores them all.
    With ``force`` the stored summary is replaced whatever it holds. ``serialise`` turns the
    result into the file's text (default: JSON indented by one space).
    """
    path = Path(path)
    check_summary(path, count(result), force, count, rerun)
    if serialise is None:
        return atomic_write_json(path, result)
    return atomic_write_text(path, serialise(result))


STORED = "recorded with the summary"
"""The training key of runs stored before each run named the call that trained it."""


def merge_runs(stored: dict | None, runs: list[dict], key: Callable[[dict], Any],
               training: dict) -> tuple[list[dict], dict[str, dict]]:
    """The stored summary's runs and this call's (a run of the same key is replaced), and who trained each.

    Each returned run names the call that trained it in ``run["trained"]``, a key of the returned
    table ``{key: provenance}``: this call's runs get ``training`` (a
    :func:`~mtl_tutorial.studies.provenance.run_provenance`, keyed by its ``trained_at``), stored
    runs keep theirs, and stored runs from before runs named their training get the stored
    summary's own provenance (key :data:`STORED`), never this call's. Trainings no run refers to
    any more are dropped. The runs come in the stored order, then the new keys in call order.
    """
    trainings: dict[str, dict] = dict((stored or {}).get("trainings", {}))
    old = []
    for run in (stored or {}).get("runs", []):
        if "trained" not in run:
            run = {**run, "trained": STORED}
            trainings.setdefault(STORED, stored.get("provenance", {}))
        old.append(run)
    name = str(training.get("trained_at", "this call"))
    while name in trainings and trainings[name] != training:  # two calls in the same second
        name += "'"
    trainings[name] = training
    merged = {key(run): run for run in old}
    merged.update({key(run): {**run, "trained": name} for run in runs})
    used = {run["trained"] for run in merged.values()}
    return list(merged.values()), {k: v for k, v in trainings.items() if k in used}


def same_json(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are equal once both go through JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(a)) == json.loads(json.dumps(b))


def config_differences(stored: Any, current: Any, shown: int = 3) -> str:
    """Where two configs differ, for a message: ``"steps 300 stored, 5 here"`` (the first ``shown`` keys)."""
    stored, current = json.loads(json.dumps(stored)), json.loads(json.dumps(current))
    if not isinstance(stored, dict) or not isinstance(current, dict):
        return "no config stored" if stored is None else "another kind of config"
    keys = [k for k in dict.fromkeys([*stored, *current]) if stored.get(k) != current.get(k)]
    text = ", ".join(f"{k} {stored.get(k, 'absent')} stored, {current.get(k, 'absent')} here" for k in keys[:shown])
    return text + (f" and {len(keys) - shown} more" if len(keys) > shown else "")


def refuse_other_config(path: str | Path, runs: int, stored_config: Any, config: Any) -> None:
    """Refuse, before any training, to mix or replace ``runs`` stored runs of another config.

    Merging them with this call's would mix two configs in one summary; replacing them would
    lose them. ``--out`` elsewhere or :data:`FORCE_FLAG` (replace) are the ways on.
    """
    if not same_json(stored_config, config):
        raise UsageError(
            f"{_shown(Path(path))} holds {runs} runs of another config ({config_differences(stored_config, config)}); "
            f"this call would replace them. Write elsewhere with --out, or pass {FORCE_FLAG} to replace them")


def load_run(path: str | Path, command: str) -> Any:
    """A finished run's record; a broken file names itself and how to retrain the run."""
    return read_json(path, repair=f"delete it and rerun `{command}` to train that run again")


def save_run(path: str | Path, record: dict) -> Path:
    """Store one finished run's record atomically."""
    return atomic_write_json(path, record)
