"""Atomic file writes, and JSON reads that name the file and the repair when it is broken.

A write goes to a temporary file in the target's folder, is flushed and ``fsync``-ed, then
renamed over the target with :func:`os.replace` (atomic on POSIX and Windows). A full disk, a
crash or a ``SIGKILL`` half way leaves the old file untouched, never a truncated one; the
temporary file is removed when Python still can.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "result.json"
>>> _ = atomic_write_json(path, {"accuracy": 0.75})
>>> read_json(path, repair="rerun the experiment")
{'accuracy': 0.75}
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()  # what open() would give a new file; mkstemp's own is owner-only 0o600


class CorruptFileError(ValueError):
    """A stored file that cannot be read back; the message names the file and the repair."""


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(f)`` on a temporary binary file beside ``path``, then move it to ``path``.

    ``write`` may be anything that writes to an open binary file, e.g.
    ``lambda f: torch.save(state, f)``. The folder is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), _MODE)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(path.parent)
    return path


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 1) -> Path:
    """Serialise ``obj`` first (a non-JSON value fails before anything is written), then write."""
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def read_json(path: str | Path, repair: str) -> Any:
    """Parse a stored JSON file; a missing-or-broken file raises an error naming it and ``repair``.

    ``repair`` is the sentence that tells the reader what to do, e.g. ``"delete it and rerun
    `python -m mtl_tutorial.studies.experiments methods` to retrain that run"``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as error:
        raise CorruptFileError(f"cannot read {path} ({error}); {repair}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise CorruptFileError(f"{path} is not valid JSON ({error}); {repair}") from None
