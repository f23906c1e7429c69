r"""Episodes and the episodic N-way K-shot sampler (Vinyals et al., 2016; Finn et al., 2017).

An *episode* is one small task: a support set to adapt on and a query set to score the adapted
model. For N-way K-shot classification the sampler draws N classes, relabels them $0..N-1$ in the
order drawn, and takes K support and Q query examples of each, so an episode holds $NK$ support
and $NQ$ query examples. Meta-training episodes come from the meta-training classes only; the
meta-test classes are never seen until meta-testing (:func:`mtl_tutorial.meta.wordnet.split_categories`).

Episode ``i`` of a sampler is a pure function of ``(seed, i)``, so every method can be scored on
the very same test episodes, in any order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor


class Indexable(Protocol):
    """Inputs the sampler can draw from: a ``Tensor (M, ...)`` or a lazy featuriser of M texts."""

    def __len__(self) -> int: ...

    def __getitem__(self, indices: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class Episode:
    """One few-shot task.

    Shapes: ``support_x (S, ...)``, ``support_y (S, ...)``, ``query_x (Q, ...)``,
    ``query_y (Q, ...)``. In N-way K-shot classification S = N K, the labels are ``0..N-1`` and
    ``classes[i]`` is the original class (category id) of label ``i``; ``support_indices`` and
    ``query_indices`` point back into the sampler's inputs (to show the texts, or to check for
    leaks). A regression episode (sine waves) leaves ``classes`` and the indices empty.
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor
    classes: tuple[int, ...] = ()
    support_indices: tuple[int, ...] = ()
    query_indices: tuple[int, ...] = ()

    @property
    def all_x(self) -> Tensor:
        """Support then query inputs, ``(S + Q, ...)``: all the data of the task."""
        return torch.cat([self.support_x, self.query_x])

    @property
    def all_y(self) -> Tensor:
        return torch.cat([self.support_y, self.query_y])


def stack_episodes(episodes: Sequence[Episode]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``B`` episodes of equal shapes -> ``support_x (B, S, ...)``, ``support_y (B, S, ...)``,
    ``query_x (B, Q, ...)``, ``query_y (B, Q, ...)``, ready for ``torch.func.vmap``."""
    if not episodes:
        raise ValueError("no episodes given; pass a non-empty list (one meta-batch)")
    first = episodes[0]
    for i, e in enumerate(episodes):
        for name in ("support_x", "support_y", "query_x", "query_y"):
            if getattr(e, name).shape != getattr(first, name).shape:
                raise ValueError(
                    f"episode {i} has {name} of shape {tuple(getattr(e, name).shape)} but episode 0 "
                    f"has {tuple(getattr(first, name).shape)}; a meta-batch needs episodes of one "
                    "shape (same N, K and number of queries)"
                )
    return (
        torch.stack([e.support_x for e in episodes]),  # (B, S, ...)
        torch.stack([e.support_y for e in episodes]),  # (B, S, ...)
        torch.stack([e.query_x for e in episodes]),  # (B, Q, ...)
        torch.stack([e.query_y for e in episodes]),  # (B, Q, ...)
    )


class EpisodeSampler:
    r"""Draws N-way K-shot classification episodes from labelled inputs, restricted to ``classes``.

    ``inputs`` is a ``Tensor (M, ...)`` or any object indexable by a ``LongTensor`` of example
    indices (e.g. :class:`mtl_tutorial.meta.features.HashedTextFeatures`, which featurises only
    the texts an episode needs); ``labels (M,)`` holds integer class ids. Only examples whose
    label is in ``classes`` (default: every label present) are ever drawn.

    >>> x = torch.arange(12.0)[:, None]                  # 12 examples, 1 feature
    >>> y = torch.tensor([0, 1, 2] * 4)                   # 3 classes, 4 examples each
    >>> sampler = EpisodeSampler(x, y, num_ways=2, num_shots=1, num_queries=2, seed=0)
    >>> e = sampler.episode(0)
    >>> e.support_y.tolist(), e.query_y.tolist()
    ([0, 1], [0, 0, 1, 1])
    """

    def __init__(
        self,
        inputs: Tensor | Indexable,
        labels: Tensor,
        num_ways: int,
        num_shots: int,
        num_queries: int = 15,  # per class; 15 is the usual choice in the few-shot literature
        classes: Sequence[int] | None = None,
        seed: int = 0,
        class_names: Sequence[str] | None = None,  # only to make error messages readable
    ) -> None:
        labels = torch.as_tensor(labels)
        if labels.dim() != 1 or len(inputs) != labels.numel():
            raise ValueError(
                f"labels must be (M,) with one label per input; got {tuple(labels.shape)} labels "
                f"for {len(inputs)} inputs"
            )
        if num_ways < 1 or num_shots < 1 or num_queries < 1:
            raise ValueError(
                f"num_ways, num_shots and num_queries must be at least 1, got "
                f"{num_ways}, {num_shots}, {num_queries}"
            )
        present = sorted(set(labels.tolist()))
        classes = present if classes is None else sorted({int(c) for c in classes})

        def name(c: int) -> str:
            return f"{c} ({class_names[c]!r})" if class_names is not None else str(c)

        absent = [c for c in classes if c not in present]
        if absent:
            raise ValueError(
                f"classes {', '.join(map(name, absent))} have no examples in labels; "
                "pass only classes that occur in the data"
            )
        if num_ways > len(classes):
            raise ValueError(
                f"{num_ways}-way episodes need {num_ways} classes but only {len(classes)} are "
                f"available ({', '.join(map(name, classes))}); lower num_ways to at most "
                f"{len(classes)} or give the sampler more classes"
            )
        needed = num_shots + num_queries
        order = torch.argsort(labels, stable=True)  # example indices grouped by class
        counts = torch.bincount(labels[order], minlength=max(classes) + 1)
        starts = torch.cumsum(counts, 0) - counts
        self.examples_by_class = {
            c: order[starts[c] : starts[c] + counts[c]].numpy() for c in classes
        }  # class -> (n_c,) example indices, ascending
        small = [c for c in classes if len(self.examples_by_class[c]) < needed]
        if small:
            smallest = min(len(self.examples_by_class[c]) for c in small)
            raise ValueError(
                f"a {num_shots}-shot episode with {num_queries} queries per class needs {needed} "
                f"examples of each class, but class(es) {', '.join(map(name, small))} have fewer "
                f"(the smallest has {smallest}); lower num_shots or num_queries so that "
                f"num_shots + num_queries <= {smallest}, or leave those classes out"
            )
        self.inputs = inputs
        self.labels = labels
        self.num_ways = num_ways
        self.num_shots = num_shots
        self.num_queries = num_queries
        self.classes = tuple(classes)
        self.seed = seed

    def episode(self, index: int) -> Episode:
        """Episode number ``index``: a pure function of ``(seed, index)``."""
        rng = np.random.default_rng([self.seed, index])
        chosen = rng.choice(len(self.classes), size=self.num_ways, replace=False)
        classes = tuple(self.classes[i] for i in chosen)
        support, query = [], []
        for c in classes:
            picked = rng.choice(self.examples_by_class[c], size=self.num_shots + self.num_queries, replace=False)
            support.append(picked[: self.num_shots])
            query.append(picked[self.num_shots :])
        support_idx = torch.from_numpy(np.concatenate(support))  # (N K,), label-major
        query_idx = torch.from_numpy(np.concatenate(query))  # (N Q,)
        ways = torch.arange(self.num_ways)
        return Episode(
            support_x=self.inputs[support_idx],
            support_y=ways.repeat_interleave(self.num_shots),  # (N K,): 0..0, 1..1, ...
            query_x=self.inputs[query_idx],
            query_y=ways.repeat_interleave(self.num_queries),  # (N Q,)
            classes=classes,
            support_indices=tuple(support_idx.tolist()),
            query_indices=tuple(query_idx.tolist()),
        )

    def episodes(self, count: int, start: int = 0) -> list[Episode]:
        """Episodes ``start, ..., start + count - 1``."""
        return [self.episode(i) for i in range(start, start + count)]

    def batches(self, batch_size: int, start: int = 0) -> Iterator[list[Episode]]:
        """Endless meta-batches of ``batch_size`` consecutive episodes, for meta-training."""
        index = start
        while True:
            yield self.episodes(batch_size, index)
            index += batch_size

    def __repr__(self) -> str:
        return (
            f"EpisodeSampler({self.num_ways}-way {self.num_shots}-shot, {self.num_queries} queries, "
            f"{len(self.classes)} classes, seed={self.seed})"
        )
