"""The book's studies: code that exists only to produce the book's results.

The library (everything else under :mod:`mtl_tutorial`) never imports from here. Each study is
one module and one command, ``python -m mtl_tutorial.studies.NAME --help``; they share one
command-line convention (:mod:`mtl_tutorial.studies.cli`) and write their results atomically
under ``book/results/`` (:mod:`mtl_tutorial.studies.store`). ``python -m mtl_tutorial.studies``
lists them.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: book/ and the package live here
RESULTS = ROOT / "book" / "results"
