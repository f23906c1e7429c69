r"""Text to a fixed-size vector: signed feature hashing of words and character n-grams.

Why this featurisation for the few-shot benchmark: it needs no vocabulary (so no statistics leak
from meta-test categories into the featuriser), no training and no download; it is deterministic
across processes (``zlib.crc32``, unlike Python's salted ``hash``); it costs a few milliseconds
per episode, computed only for the texts an episode draws; and character n-grams give short
texts, single words in particular, something to share (suffixes such as *-ness*, *-ize*, *-ist*
are strong cues to a lexicographer category). The meta-learners then work on a small MLP over
these vectors, so every method sees exactly the same inputs.

Each text $t$ becomes $v(t) = u / \lVert u \rVert$ with
$u_j = \sum_{g \in \mathrm{grams}(t),\ h(g) \bmod D = j} s(g)$, $s(g) = \pm 1$ a second hash bit
(signed hashing, Weinberger et al., ICML 2009, keeps collisions unbiased in inner products).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import torch
from torch import Tensor

WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


class HashedNgrams:
    """Featuriser: ``texts`` -> ``Tensor (B, num_features)``, unit rows, float32.

    The grams of a text are its lower-cased words (if ``words``) and the character n-grams of
    each word wrapped in ``<`` and ``>``, for every n in ``ngram_sizes``.

    >>> f = HashedNgrams(num_features=64)
    >>> f.grams("Dogs bark")
    ['dogs', '<do', 'dog', 'ogs', 'gs>', '<dog', 'dogs', 'ogs>', 'bark', '<ba', 'bar', 'ark', 'rk>', '<bar', 'bark', 'ark>']
    >>> f(["Dogs bark", ""]).norm(dim=1).round(decimals=4)
    tensor([1., 0.])
    """

    def __init__(self, num_features: int = 2048, ngram_sizes: Sequence[int] = (3, 4), words: bool = True) -> None:
        if num_features < 2:
            raise ValueError(f"num_features must be at least 2, got {num_features}")
        if not words and not ngram_sizes:
            raise ValueError("choose words=True or at least one n-gram size, or no gram is ever produced")
        if any(n < 1 for n in ngram_sizes):
            raise ValueError(f"n-gram sizes must be positive, got {tuple(ngram_sizes)}")
        self.num_features = num_features
        self.ngram_sizes = tuple(ngram_sizes)
        self.words = words

    def grams(self, text: str) -> list[str]:
        grams: list[str] = []
        for word in WORD.findall(text.lower()):
            if self.words:
                grams.append(word)
            padded = f"<{word}>"
            for n in self.ngram_sizes:
                grams.extend(padded[i : i + n] for i in range(len(padded) - n + 1))
        return grams

    def __call__(self, texts: Sequence[str]) -> Tensor:
        rows, columns, signs = [], [], []
        for row, text in enumerate(texts):
            for gram in self.grams(text):
                h = zlib.crc32(gram.encode())
                rows.append(row)
                columns.append(h % self.num_features)
                signs.append(1.0 if (h // self.num_features) % 2 == 0 else -1.0)
        u = torch.zeros(len(texts), self.num_features)  # (B, D)
        u.index_put_((torch.tensor(rows, dtype=torch.long), torch.tensor(columns, dtype=torch.long)),
                     torch.tensor(signs), accumulate=True)
        return u / u.norm(dim=1, keepdim=True).clamp(min=1e-12)  # (B, D), unit rows (zero if empty)

    def __repr__(self) -> str:
        return f"HashedNgrams(num_features={self.num_features}, ngram_sizes={self.ngram_sizes}, words={self.words})"


class LazyTextFeatures:
    """``texts`` featurised on demand: ``features[indices] -> Tensor (len(indices), D)``.

    An :class:`~mtl_tutorial.meta.episodes.EpisodeSampler` indexes it with each episode's example
    indices, so only the ~100 texts of an episode are ever hashed, never the whole corpus.
    """

    def __init__(self, texts: Sequence[str], featurizer: HashedNgrams | None = None) -> None:
        self.texts = texts
        self.featurizer = featurizer or HashedNgrams()

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, indices: Tensor | Sequence[int]) -> Tensor:
        return self.featurizer([self.texts[int(i)] for i in indices])

    def __repr__(self) -> str:
        return f"LazyTextFeatures({len(self.texts)} texts, {self.featurizer!r})"


class PrecomputedTextFeatures:
    """``texts`` featurised once and kept sparse: ``features[indices] -> Tensor (len(indices), D)``.

    The same rows as :class:`LazyTextFeatures`, bit for bit, but each text is hashed only once:
    meta-training draws tens of thousands of episodes from the same texts, so hashing on demand
    would cost more than the training itself. The rows are stored in compressed sparse row form
    (a hashed definition has about 90 non-zeros out of 2,048), about 1 MB per 1,000 texts.
    """

    def __init__(self, texts: Sequence[str], featurizer: HashedNgrams | None = None, chunk: int = 4096) -> None:
        self.featurizer = featurizer or HashedNgrams()
        row_lengths, columns, values = [], [], []
        for start in range(0, len(texts), chunk):
            dense = self.featurizer(texts[start : start + chunk])  # (C, D)
            rows, cols = dense.nonzero(as_tuple=True)  # row-major order
            row_lengths.append(torch.bincount(rows, minlength=len(dense)))
            columns.append(cols)
            values.append(dense[rows, cols])
        lengths = torch.cat(row_lengths) if row_lengths else torch.zeros(0, dtype=torch.long)
        self.row_starts = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(lengths, 0)])  # (M + 1,)
        self.columns = torch.cat(columns) if columns else torch.zeros(0, dtype=torch.long)  # (nnz,)
        self.values = torch.cat(values) if values else torch.zeros(0)  # (nnz,)

    def __len__(self) -> int:
        return len(self.row_starts) - 1

    def __getitem__(self, indices: Tensor | Sequence[int]) -> Tensor:
        indices = torch.as_tensor(indices, dtype=torch.long).reshape(-1)  # (B,)
        if len(indices) and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"feature rows are 0..{len(self) - 1}; got indices {indices.min()}..{indices.max()}")
        starts, ends = self.row_starts[indices], self.row_starts[indices + 1]  # (B,), (B,)
        lengths = ends - starts
        rows = torch.repeat_interleave(torch.arange(len(indices)), lengths)  # (nnz_B,)
        offsets = torch.arange(len(rows)) - torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
        positions = starts[rows] + offsets  # (nnz_B,) into columns / values
        out = torch.zeros(len(indices), self.featurizer.num_features)  # (B, D)
        out[rows, self.columns[positions]] = self.values[positions]
        return out

    def __repr__(self) -> str:
        return f"PrecomputedTextFeatures({len(self)} texts, {len(self.values)} non-zeros, {self.featurizer!r})"
