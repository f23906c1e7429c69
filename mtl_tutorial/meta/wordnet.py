r"""A few-shot language benchmark from WordNet 3.0: classify words or definitions into categories.

Every WordNet synset was filed by a lexicographer into one of 45 *lexicographer files*
(``noun.animal``, ``verb.motion``, ``adj.pert``, ...), a coarse semantic category; the number is
the second field of each line of ``data.noun``, ``data.verb``, ``data.adj`` and ``data.adv``
(Debian package ``wordnet-base``, in ``/usr/share/wordnet``). One example per synset:

===================  ===========================================================
``text="word"``       its first word, e.g. ``"hound dog"`` (underscores -> spaces)
``text="definition"``  its gloss without the quoted usage examples, e.g.
                       ``"any of several breeds of dog used for hunting"``
``text="both"``        ``"hound dog: any of several breeds ..."``
===================  ===========================================================

labelled with its category (0..44). Duplicate ``(text, category)`` pairs are kept once, so an
episode cannot show the same text on both its support and query side.

Meta-learning holds categories out: :func:`split_categories` splits the 45 into disjoint
meta-train / meta-val / meta-test sets (seeded), and :func:`episode_sampler` draws N-way K-shot
episodes from one of them, the texts featurised by :class:`~mtl_tutorial.meta.features.HashedNgrams`.
Caveat for the reader: the part of speech is part of the category (``noun.*`` vs ``verb.*``), so
an episode that mixes parts of speech is partly solvable from syntax alone.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mtl_tutorial.meta.episodes import EpisodeSampler
from mtl_tutorial.meta.features import HashedNgrams, LazyTextFeatures

WORDNET_DIR = Path("/usr/share/wordnet")  # where Debian's wordnet-base installs WordNet 3.0
POS_FILES = ("noun", "verb", "adj", "adv")
TEXT_KINDS = ("word", "definition", "both")
# The 45 lexicographer files of WordNet 3.0, by number (lexnames(5WN)).
CATEGORIES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)  # fmt: skip
SYNTACTIC_MARKER = re.compile(r"\((?:a|p|ip)\)$")  # adjective position markers, e.g. "galore(ip)"
EXAMPLE = re.compile(r'"([^"]*)"')  # quoted usage examples in a gloss


@dataclass(frozen=True)
class Synset:
    """One line of a ``data.*`` file: its category, its words, its definition and usage examples."""

    offset: int
    pos: str  # n, v, a, s (adjective satellite) or r
    category: int  # lexicographer file number, 0..44
    words: tuple[str, ...]
    definition: str
    examples: tuple[str, ...]


def parse_synset(line: str) -> Synset:
    """Parse one data line: ``offset lex_filenum ss_type w_cnt (word lex_id)* ... | gloss``."""
    fields, _, gloss = line.partition(" | ")
    parts = fields.split()
    num_words = int(parts[3], 16)
    words = parts[4 : 4 + 2 * num_words : 2]
    if "(" in fields:
        words = [SYNTACTIC_MARKER.sub("", w) for w in words]
    gloss = gloss.strip()
    definition, quote, _ = gloss.partition('"')
    return Synset(
        offset=int(parts[0]),
        pos=parts[2],
        category=int(parts[1]),
        words=tuple(w.replace("_", " ") for w in words),
        definition=definition.strip().rstrip(";").strip() or gloss,
        examples=tuple(EXAMPLE.findall(gloss)) if quote else (),
    )


def load_synsets(directory: str | Path = WORDNET_DIR) -> tuple[Synset, ...]:
    """Every synset of WordNet 3.0 (117,659), in file order noun, verb, adj, adv. Cached."""
    return _read_synsets(Path(directory).resolve())


@functools.lru_cache(maxsize=2)
def _read_synsets(directory: Path) -> tuple[Synset, ...]:
    missing = [f"data.{pos}" for pos in POS_FILES if not (directory / f"data.{pos}").is_file()]
    if missing:
        raise FileNotFoundError(
            f"WordNet data not found: {', '.join(missing)} missing in {directory}. Install WordNet 3.0 "
            "with `sudo apt-get install wordnet-base` (Debian/Ubuntu; `make setup` does it), or pass "
            "directory= pointing at a folder holding data.noun, data.verb, data.adj and data.adv"
        )
    synsets = []
    for pos in POS_FILES:
        with open(directory / f"data.{pos}", encoding="utf-8") as file:
            synsets += [parse_synset(line) for line in file if not line.startswith("  ")]  # "  ": licence
    return tuple(synsets)


@dataclass(frozen=True)
class WordNetData:
    """Examples ``(texts[i], labels[i])``; iterate to get ``(text, category)`` pairs.

    ``labels (M,)`` holds category numbers into ``CATEGORIES``; ``synsets[i]`` is the synset
    example ``i`` came from.
    """

    texts: tuple[str, ...]
    labels: Tensor
    synsets: tuple[Synset, ...]
    text: str  # which text: word, definition or both

    def __len__(self) -> int:
        return len(self.texts)

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return zip(self.texts, self.labels.tolist())

    def counts(self) -> dict[str, int]:
        """Examples per category, by category name."""
        counts = Counter(self.labels.tolist())
        return {CATEGORIES[c]: counts[c] for c in range(len(CATEGORIES)) if counts[c]}


def load_wordnet(text: str = "definition", directory: str | Path = WORDNET_DIR) -> WordNetData:
    """One ``(text, category)`` example per synset, duplicates dropped (see the module docstring).

    >>> data = load_wordnet("definition")
    >>> len(data), data.counts()["noun.motive"]
    (116782, 42)
    """
    if text not in TEXT_KINDS:
        raise ValueError(f"unknown text {text!r}; valid choices are: {', '.join(TEXT_KINDS)}")
    texts, labels, kept, seen = [], [], [], set()
    for s in load_synsets(directory):
        t = {"word": s.words[0], "definition": s.definition, "both": f"{s.words[0]}: {s.definition}"}[text]
        if (t, s.category) in seen:
            continue
        seen.add((t, s.category))
        texts.append(t)
        labels.append(s.category)
        kept.append(s)
    return WordNetData(tuple(texts), torch.tensor(labels), tuple(kept), text)


@dataclass(frozen=True)
class CategorySplit:
    """Disjoint meta-train / meta-val / meta-test category numbers."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]

    def __post_init__(self) -> None:
        train, val, test = set(self.train), set(self.val), set(self.test)
        overlap = (train & val) | (train & test) | (val & test)
        if overlap:
            raise ValueError(f"category splits overlap on {sorted(overlap)}; every category belongs to one split")

    def names(self, split: str) -> list[str]:
        return [CATEGORIES[c] for c in self[split]]

    def __getitem__(self, split: str) -> tuple[int, ...]:
        if split not in ("train", "val", "test"):
            raise KeyError(f"unknown split {split!r}; valid splits are: train, val, test")
        return getattr(self, split)


def split_categories(
    num_val: int = 10,
    num_test: int = 10,
    seed: int = 0,
    categories: Sequence[int] = tuple(range(len(CATEGORIES))),
) -> CategorySplit:
    """A seeded random partition of ``categories``: ``num_test`` for meta-test, ``num_val`` for
    meta-validation, the rest (25 by default) for meta-training. Each part is sorted.

    >>> split_categories(seed=0).test == split_categories(seed=0).test
    True
    """
    categories = sorted(set(categories))
    if num_val < 0 or num_test < 1 or num_val + num_test >= len(categories):
        raise ValueError(
            f"cannot hold out {num_val} validation and {num_test} test categories out of "
            f"{len(categories)}: keep num_test >= 1 and num_val + num_test < {len(categories)}"
        )
    order = np.random.default_rng(seed).permutation(categories).tolist()
    test, val, train = order[:num_test], order[num_test : num_test + num_val], order[num_test + num_val :]
    return CategorySplit(tuple(sorted(train)), tuple(sorted(val)), tuple(sorted(test)))


def episode_sampler(
    data: WordNetData,
    classes: Sequence[int],
    num_ways: int = 5,
    num_shots: int = 1,
    num_queries: int = 15,
    seed: int = 0,
    featurizer: HashedNgrams | None = None,
) -> EpisodeSampler:
    """N-way K-shot episodes over the categories ``classes`` only (e.g. ``split.test``).

    Episodes hold hashed features ``(N K, D)``; ``episode.support_indices`` point back into
    ``data.texts`` to show the words or definitions themselves.
    """
    return EpisodeSampler(
        LazyTextFeatures(data.texts, featurizer),
        data.labels,
        num_ways=num_ways,
        num_shots=num_shots,
        num_queries=num_queries,
        classes=classes,
        seed=seed,
        class_names=CATEGORIES,
    )
