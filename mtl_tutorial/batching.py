"""From snippets to padded tensor batches, one stream per task, and the task-mixing schedule.

A :class:`TaskStream` walks a seeded permutation of its task's examples, epoch after epoch, sorted
by length within pools of batches or, for a classification task, in batches whose class counts are
those of uniform sampling (``TrainConfig.batch_sampling``); its state (generator, permutation,
position) is saved in checkpoints so a resumed run sees the very same batches. :func:`mixing_rates`
gives the T5 mixing rates (Raffel et al., 2020, section 3.5.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mtl_tutorial.config import BATCH_SAMPLINGS
from mtl_tutorial.data import Snippet
from mtl_tutorial.tasks import CLASSIFICATION, IGNORE_INDEX, Task
from mtl_tutorial.tokenizer import TextTokenizer


@dataclass
class Batch:
    """``inputs (B, L)`` token ids, right-padded with 0; ``targets`` ``(B,)`` or ``(B, L)``."""

    inputs: Tensor
    targets: Tensor

    def to(self, device: str | torch.device) -> Batch:
        return Batch(self.inputs.to(device), self.targets.to(device))

    def __len__(self) -> int:
        return self.inputs.shape[0]


@dataclass
class EncodedTask:
    """A task's examples as token ids.

    Classification: ``ids[i]`` starts with ``<bos>``, ``labels[i]`` is the class. Generation:
    ``ids[i]`` starts with ``<bos>`` and ``prefixed[i]`` with the snippet's label token; a batch
    takes the prefixed form with probability ``1 - prefix_dropout``.
    """

    task: Task
    ids: list[list[int]]
    labels: list[int] | None = None
    prefixed: list[list[int]] | None = None

    def __len__(self) -> int:
        return len(self.ids)


def encode_task(task: Task, snippets: Sequence[Snippet], tokenizer: TextTokenizer) -> EncodedTask:
    """Select the task's snippets and tokenize them."""
    chosen = task.select(snippets)
    if not chosen:
        raise ValueError(f"task {task.name!r} has no examples among the {len(snippets)} snippets given")
    ids = [tokenizer.encode(s.text) for s in chosen]
    if task.kind == CLASSIFICATION:
        return EncodedTask(task, ids, labels=[task.target(s) for s in chosen])
    prefixed = [tokenizer.encode(s.text, prefix=s.label) for s in chosen]
    return EncodedTask(task, ids, prefixed=prefixed)


def pad(sequences: Sequence[Sequence[int]], value: int = 0) -> Tensor:
    """Right-pad to the longest sequence: ``(B, L_max)``."""
    length = max(len(s) for s in sequences)
    out = torch.full((len(sequences), length), value, dtype=torch.long)
    for i, s in enumerate(sequences):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def collate(data: EncodedTask, indices: Sequence[int], use_prefix: Sequence[bool] | None = None) -> Batch:
    """The batch of examples ``indices``.

    Language modelling shifts by one: ``inputs = ids[:-1]``, ``targets = ids[1:]``, so the first
    token (``<bos>`` or the label prefix) is never a target and ``<eos>`` always is.
    """
    if data.task.kind == CLASSIFICATION:
        inputs = pad([data.ids[i] for i in indices])  # (B, L)
        return Batch(inputs, torch.tensor([data.labels[i] for i in indices], dtype=torch.long))
    use_prefix = use_prefix or [False] * len(indices)
    seqs = [data.prefixed[i] if p else data.ids[i] for i, p in zip(indices, use_prefix)]
    full = pad(seqs, value=IGNORE_INDEX)  # (B, L + 1)
    inputs = full[:, :-1].clamp(min=0)  # (B, L); padding becomes <pad> = 0
    return Batch(inputs, full[:, 1:].contiguous())  # targets (B, L), IGNORE_INDEX at padding


def eval_batches(data: EncodedTask, batch_size: int) -> list[Batch]:
    """Every example once, in order, without label prefixes (deterministic evaluation)."""
    return [collate(data, range(i, min(i + batch_size, len(data)))) for i in range(0, len(data), batch_size)]


class TaskStream:
    r"""An endless, seeded stream of training batches for one task.

    ``sampling`` (a name in :data:`~mtl_tutorial.config.BATCH_SAMPLINGS`) decides how each
    epoch's random permutation becomes batches of a classification task; generation streams use
    ``"length_pools"`` under every choice.

    - ``"length_pools"`` sorts the permutation by length within pools of ``POOL`` batches, which
      saves padding but gathers a class of unlike length in a few batches: in the source task the
      plot synopses (7.6% of the snippets, nearly all cut at 64 tokens against a median of 31 for
      reviews) fill the long end of each pool, so most batches hold no plot and a few mostly plots.
    - ``"uniform"`` keeps the permutation as it is: a batch is B examples drawn uniformly without
      replacement, and its count of class c is hypergeometric,
      :math:`\approx \mathrm{Binomial}(B, p_c)` with :math:`p_c` the class's share of the examples.
    - ``"length_pools_by_class"`` sorts by length within each class inside a pool, every class
      keeping the positions the permutation gave it: the class counts of every batch are those of
      ``"uniform"``, with less padding where the classes have similar lengths (sentiment).

    >>> stream = TaskStream(data.encoded["train"]["source"], 32, seed=0, sampling="uniform")
    >>> stream.next().targets.sum()  # plots among 32 snippets: 2.4 on average, variance 2.2
    """

    POOL = 50  # batches per length-sorting pool

    def __init__(self, data: EncodedTask, batch_size: int, seed: int, prefix_dropout: float = 0.5,
                 sampling: str = "length_pools") -> None:
        if sampling not in BATCH_SAMPLINGS:
            raise ValueError(f"unknown batch sampling {sampling!r}; valid choices are: "
                             f"{', '.join(BATCH_SAMPLINGS)}")
        if len(data) < batch_size:
            raise ValueError(
                f"task {data.task.name!r} has {len(data)} training examples, fewer than one batch of "
                f"{batch_size}; lower TrainConfig.batch_size"
            )
        self.data = data
        self.batch_size = batch_size
        self.prefix_dropout = prefix_dropout
        self.sampling = sampling
        self.generator = torch.Generator().manual_seed(seed)
        self.lengths = torch.tensor([len(ids) for ids in data.ids])
        self.order = self._epoch_order()
        self.position = 0
        self.epoch = 0

    def _epoch_order(self) -> Tensor:
        """A random permutation of whole batches, sorted by length within pools of ``POOL`` batches
        (or within each class, or not at all: ``sampling``).

        Batches of similar lengths waste less compute on padding; shuffling the pools first and
        the batches afterwards keeps the order random at the scale that matters.
        """
        order = torch.randperm(len(self.data), generator=self.generator)
        if self.data.task.kind == CLASSIFICATION and self.sampling != "length_pools":
            order = order[: len(order) - len(order) % self.batch_size]  # drop a random ragged tail
            return order if self.sampling == "uniform" else self._sort_within_classes(order)
        pool = self.POOL * self.batch_size
        chunks = []
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            chunks.append(chunk[torch.argsort(self.lengths[chunk], stable=True)])
        batches = list(torch.cat(chunks).split(self.batch_size))
        batches = [b for b in batches if len(b) == self.batch_size]  # drop the ragged tail
        shuffle = torch.randperm(len(batches), generator=self.generator).tolist()
        return torch.cat([batches[i] for i in shuffle])

    def _sort_within_classes(self, order: Tensor) -> Tensor:
        """Within each pool, the examples of each class sorted by length into that class's
        positions, then the batches shuffled: every position keeps its class, so every batch keeps
        the class counts of the permutation ``order``."""
        labels = torch.tensor(self.data.labels)
        pool = self.POOL * self.batch_size
        out = order.clone()
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            for label in labels[chunk].unique():
                slots = (labels[chunk] == label).nonzero().squeeze(1)  # this class's positions
                members = chunk[slots]
                out[start + slots] = members[torch.argsort(self.lengths[members], stable=True)]
        batches = out.split(self.batch_size)
        shuffle = torch.randperm(len(batches), generator=self.generator).tolist()
        return torch.cat([batches[i] for i in shuffle])

    def next(self) -> Batch:
        if self.position + self.batch_size > len(self.order):  # epoch done: reshuffle
            self.order = self._epoch_order()
            self.position = 0
            self.epoch += 1
        indices = self.order[self.position : self.position + self.batch_size].tolist()
        self.position += self.batch_size
        use_prefix = None
        if self.data.task.kind != CLASSIFICATION:
            keep = torch.rand(len(indices), generator=self.generator) >= self.prefix_dropout
            use_prefix = keep.tolist()
        return collate(self.data, indices, use_prefix)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order.clone(),
                "position": self.position, "epoch": self.epoch, "sampling": self.sampling}

    def load_state_dict(self, state: dict) -> None:
        saved = state.get("sampling", "length_pools")  # states saved before the choice existed
        if saved != self.sampling:
            raise ValueError(f"this stream state was saved with sampling={saved!r}; a stream with "
                             f"sampling={self.sampling!r} cannot continue it")
        self.generator.set_state(state["generator"])
        self.order = state["order"].clone()
        self.position = int(state["position"])
        self.epoch = int(state["epoch"])


def mixing_rates(sizes: Sequence[int], mixing: str, temperature: float = 2.0, limit: int | None = None) -> Tensor:
    """Probability of drawing each task at a step.

    ``proportional``: r_m = min(e_m, K) / Σ_n min(e_n, K); ``temperature``: r_m^{1/τ} renormalised
    (τ = 1 is proportional, τ → ∞ uniform); ``all`` and ``round_robin``: uniform.
    """
    e = torch.tensor(sizes, dtype=torch.float64)
    if limit is not None:
        e = e.clamp(max=limit)
    if mixing in ("all", "round_robin"):
        return torch.full_like(e, 1.0 / len(e))
    rates = e / e.sum()
    if mixing == "temperature":
        rates = rates ** (1.0 / temperature)
        rates = rates / rates.sum()
    elif mixing != "proportional":
        raise ValueError(f"unknown mixing {mixing!r}; valid: all, round_robin, proportional, temperature")
    return rates


class TaskSchedule:
    """Which tasks a step trains on: all of them, or one chosen by round-robin or by sampling."""

    def __init__(self, task_names: Sequence[str], sizes: Sequence[int], mixing: str,
                 temperature: float, seed: int, limit: int | None = None) -> None:
        self.task_names = list(task_names)
        self.mixing = mixing
        self.rates = mixing_rates(sizes, mixing, temperature, limit)
        self.generator = torch.Generator().manual_seed(seed)

    def tasks_for_step(self, step: int) -> list[str]:
        if self.mixing == "all":
            return self.task_names
        if self.mixing == "round_robin":
            return [self.task_names[step % len(self.task_names)]]
        index = torch.multinomial(self.rates, 1, generator=self.generator).item()
        return [self.task_names[index]]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
