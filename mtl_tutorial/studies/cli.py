"""The command convention every study follows: ``python -m mtl_tutorial.studies.NAME ...``.

- argparse, and ``--help`` exits 0;
- ``--seeds`` always means seed ids: ``--seeds 0 1 2``, ``--seeds 0,1,2`` or ``--seeds 0-7``;
- ``--threads N`` is checked (a positive integer) and sets ``torch.set_num_threads``;
- every bad value is one line on stderr naming the problem and the fix, exit code 2, no
  traceback (set ``MTL_TUTORIAL_TRACEBACK=1`` to see one while debugging).

A study writes::

    def main(argv=None) -> int:
        parser = study_parser("digits", __doc__)
        add_seeds(parser, default=range(20))
        add_threads(parser, default=1)
        args = parser.parse_args(argv)
        ...

    if __name__ == "__main__":
        raise SystemExit(run(main))
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NoReturn

from mtl_tutorial.files import CorruptFileError


class UsageError(ValueError):
    """A bad command-line value or an action that would lose data; the message says the fix."""


class StudyParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: ``PROG: error: MESSAGE (see PROG --help)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def study_parser(name: str, doc: str | None) -> StudyParser:
    """The parser of ``python -m mtl_tutorial.studies.NAME``; the docstring is its help text."""
    doc = doc or ""
    return StudyParser(prog=f"python -m mtl_tutorial.studies.{name}", description=doc.split("\n")[0],
                       epilog="\n".join(doc.split("\n")[1:]).strip() or None,
                       formatter_class=argparse.RawDescriptionHelpFormatter)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type factory: an integer >= ``minimum`` (``int_at_least(1)`` is :func:`positive_int`)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer of at least {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer of at least {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"  # what argparse names in its own messages
    return parse


def _writable_folder(folder: Path, text: str) -> None:
    """Raise unless ``folder`` is, or can be created as, a folder this process may write into."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text}: no write permission in {existing}")


def output_file(text: str) -> Path:
    """argparse type: a file to write, checked before any work (not a folder; its folder writable)."""
    path = Path(text)
    if not text or path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder, not a file; give the path of the file to write")
    _writable_folder(path.absolute().parent, text)
    return path


def add_out(parser: argparse.ArgumentParser, name: str) -> None:
    """``--out FILE``: where the summary goes, by default ``book/results/NAME``, checked before any work."""
    from mtl_tutorial.studies import RESULTS

    parser.add_argument("--out", type=output_file, default=RESULTS / name,
                        help=f"the summary to write (default: book/results/{name})")


def output_folder(text: str) -> Path:
    """argparse type: a folder to write files into, checked before any work (created when needed)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    _writable_folder(path.absolute(), text)
    return path


def seed_ids(text: str) -> list[int]:
    """argparse type: ``"3"``, ``"0,1,2"`` or ``"0-7"`` (inclusive) -> seed ids."""
    seeds: list[int] = []
    for part in filter(None, text.replace(" ", ",").split(",")):
        low, _, high = part.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise argparse.ArgumentTypeError(
                f"seeds are non-negative seed ids such as 0 1 2, 0,1,2 or 0-7, got {text!r}")
        if high and int(high) < int(low):
            raise argparse.ArgumentTypeError(f"seed range {part!r} runs backwards; write {high}-{low}")
        seeds.extend(range(int(low), int(high or low) + 1))
    if not seeds:
        raise argparse.ArgumentTypeError("no seed given; write seed ids such as 0 1 2 or 0-7")
    return seeds


class _SeedsAction(argparse.Action):
    """Flattens ``--seeds 0 1,2 4-5`` into one sorted list without duplicates."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        flat = sorted({s for group in values for s in group})
        setattr(namespace, self.dest, flat)


def add_seeds(parser: argparse.ArgumentParser, default: Iterable[int] | None,
              help: str = "seed ids to run") -> None:
    """``--seeds``: seed ids (``0 1 2``, ``0,1,2`` or ``0-7``); ``default=None`` means every seed."""
    shown = "every seed of the study" if default is None else _compact(list(default))
    parser.add_argument("--seeds", type=seed_ids, nargs="+", action=_SeedsAction,
                        default=None if default is None else list(default),
                        help=f"{help}: ids such as 0 1 2, 0,1,2 or 0-7 (default: {shown})")


def seeds_text(seeds: Sequence[int]) -> str:
    """Seed ids as ``--seeds`` takes them: ``0-7`` for a run of three or more, else ``0 2 5``."""
    return _compact(list(seeds))


def _compact(seeds: Sequence[int]) -> str:
    if seeds and list(seeds) == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2:
        return f"{seeds[0]}-{seeds[-1]}"
    return " ".join(map(str, seeds))


def add_force(parser: argparse.ArgumentParser, what: str = "the stored summary") -> None:
    """``--force``: replace ``what`` even when it holds more runs than this call would store."""
    parser.add_argument("--force", action="store_true",
                        help=f"replace {what} even if it holds more runs than this call (default: refuse, "
                             "or merge this call's runs into it where the study can)")


def add_threads(parser: argparse.ArgumentParser, default: int | None = None) -> None:
    """``--threads N``: torch threads, a positive integer (``None``: torch's own choice)."""
    parser.add_argument("--threads", type=positive_int, default=default,
                        help="torch threads (default: %s); use 1 to run two processes side by side "
                             "on two cores" % ("torch's choice" if default is None else default))


def apply_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` unless ``threads`` is None."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


# Errors that mean "the input is wrong or a stored file is broken": one line, no traceback.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (UsageError, ValueError, KeyError, FileNotFoundError,
                                                    CorruptFileError, FileExistsError)


def run(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None,
        prog: str | None = None) -> int:
    """Call ``main(argv)``; an expected error becomes one line on stderr and exit code 2."""
    try:
        code = main(argv)
    except EXPECTED_ERRORS as error:
        if os.environ.get("MTL_TUTORIAL_TRACEBACK"):
            raise
        message = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
        message = " ".join(str(message).split())  # one line
        print(f"{prog or _prog()}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog or _prog()}: interrupted; finished runs are saved, rerun the same command to resume",
              file=sys.stderr)
        return 130
    return int(code or 0)


def _prog() -> str:
    module = getattr(sys.modules.get("__main__"), "__spec__", None)
    return f"python -m {module.name}" if module is not None else os.path.basename(sys.argv[0])
