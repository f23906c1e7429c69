"""From snippets to padded tensor batches, one stream per task, and the task-mixing schedule.

A :class:`TaskStream` walks a seeded permutation of its task's examples, epoch after epoch; its
state (generator, permutation, position) is saved in checkpoints so a resumed run sees the very
same batches. :func:`mixing_rates` gives the T5 mixing rates (Raffel et al., 2020, section 3.5.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

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
    """An endless, seeded stream of training batches for one task."""

    POOL = 50  # batches per length-sorting pool

    def __init__(self, data: EncodedTask, batch_size: int, seed: int, prefix_dropout: float = 0.5) -> None:
        if len(data) < batch_size:
            raise ValueError(
                f"task {data.task.name!r} has {len(data)} training examples, fewer than one batch of "
                f"{batch_size}; lower TrainConfig.batch_size"
            )
        self.data = data
        self.batch_size = batch_size
        self.prefix_dropout = prefix_dropout
        self.generator = torch.Generator().manual_seed(seed)
        self.lengths = torch.tensor([len(ids) for ids in data.ids])
        self.order = self._epoch_order()
        self.position = 0
        self.epoch = 0

    def _epoch_order(self) -> Tensor:
        """A random permutation, sorted by length within pools of ``POOL`` batches.

        Batches of similar lengths waste less compute on padding; shuffling the pools first and
        the batches afterwards keeps the order random at the scale that matters.
        """
        order = torch.randperm(len(self.data), generator=self.generator)
        pool = self.POOL * self.batch_size
        chunks = []
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            chunks.append(chunk[torch.argsort(self.lengths[chunk], stable=True)])
        batches = list(torch.cat(chunks).split(self.batch_size))
        batches = [b for b in batches if len(b) == self.batch_size]  # drop the ragged tail
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
                "position": self.position, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
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
