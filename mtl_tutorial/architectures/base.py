"""What every sharing architecture offers the trainer, the weightings and the aggregators.

The task interface is the one of :class:`~mtl_tutorial.models.MultiTaskModel` (hard sharing):
``model(task, input_ids (B, L))`` returns the task's logits, and the model names its shared
parameters θ_s (what an aggregator combines task gradients on), each task's own parameters θ_t,
and the last shared layer (GradNorm's). :class:`MultiTaskArchitecture` holds the input checks and
the parameter counts, so a new architecture writes only its modules, ``forward`` and the three
parameter lists.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mtl_tutorial.config import ModelConfig
from mtl_tutorial.models.heads import ClassificationHead, LanguageModelHead
from mtl_tutorial.tasks import CLASSIFICATION, Task


def check_model_inputs(config: ModelConfig, task_names: Sequence[str], task: str, input_ids: Tensor) -> None:
    """Unknown task, ``input_ids`` not ``(B, L)``, or longer than ``config.max_length``: a clear error."""
    if task not in task_names:
        raise KeyError(f"this model has no head for task {task!r}; its tasks are: {', '.join(task_names)}")
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must have shape (B, L), got {tuple(input_ids.shape)}")
    if input_ids.shape[1] > config.max_length:
        raise ValueError(
            f"sequence of {input_ids.shape[1]} tokens exceeds ModelConfig.max_length={config.max_length}; "
            "raise max_length or cut the inputs (TokenizerConfig.max_length)"
        )


class MultiTaskArchitecture(nn.Module):
    """Base class: ``model(task, input_ids (B, L))`` -> that task's logits.

    Subclasses implement ``forward``, ``shared_parameters``, ``task_parameters`` and
    ``last_shared_parameters``; the parameter counts and input checks live here.
    """

    def __init__(self, config: ModelConfig, tasks: Sequence[Task], architecture: str) -> None:
        super().__init__()
        if config.trunk != "transformer":
            raise ValueError(
                f"architecture {architecture!r} is built from Transformer blocks, but ModelConfig.trunk is "
                f"{config.trunk!r}; use trunk='transformer' (the LSTM trunk exists for hard sharing only)"
            )
        if not tasks:
            raise ValueError("an architecture needs at least one task")
        self.config = config
        self.tasks = {task.name: task for task in tasks}
        self.task_names = list(self.tasks)

    def check_inputs(self, task: str, input_ids: Tensor) -> None:
        """The errors of :class:`MultiTaskModel`: unknown task, wrong shape, too long."""
        check_model_inputs(self.config, self.tasks, task, input_ids)

    def check_task(self, task: str) -> None:
        if task not in self.tasks:
            raise KeyError(f"unknown task {task!r}; this model's tasks are: {', '.join(self.tasks)}")

    def shared_parameters(self) -> list[nn.Parameter]:
        """θ_s: the parameters every task's loss depends on (what an aggregator acts on)."""
        raise NotImplementedError

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """θ_t: the parameters that belong to ``task`` (disjoint from θ_s)."""
        raise NotImplementedError

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The last shared layer, whose gradient norms GradNorm balances."""
        raise NotImplementedError

    def parameter_counts(self) -> dict[str, int]:
        """Number of shared and per-task parameters, e.g. ``{"shared": ..., "sentiment": ...}``."""
        counts = {"shared": sum(p.numel() for p in self.shared_parameters())}
        for name in self.tasks:
            counts[name] = sum(p.numel() for p in self.task_parameters(name))
        return counts


def task_heads(config: ModelConfig, tasks: Sequence[Task], vocab_size: int,
               embeddings: dict[str, nn.Embedding] | nn.Embedding) -> nn.ModuleDict:
    """One head per task, as in hard sharing: a pooled classifier or a next-token head.

    With ``config.tie_embeddings`` a generation head reuses a token embedding: ``embeddings`` is
    the one shared embedding, or a dict task name -> the embedding of that task's own column.
    """
    heads = {}
    for task in tasks:
        if task.kind == CLASSIFICATION:
            heads[task.name] = ClassificationHead(config.d_model, task.num_classes, config.dropout)
        else:
            embedding = embeddings[task.name] if isinstance(embeddings, dict) else embeddings
            heads[task.name] = LanguageModelHead(config.d_model, vocab_size,
                                                 embedding if config.tie_embeddings else None)
    return nn.ModuleDict(heads)


def embed(input_ids: Tensor, embedding: nn.Embedding, position: nn.Embedding, dropout: nn.Dropout) -> Tensor:
    """Token plus learned position embeddings, then dropout: ``(B, L) -> (B, L, D)``.

    The first step of :class:`~mtl_tutorial.models.TransformerTrunk`, for architectures that run
    the blocks themselves.
    """
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # (L,)
    return dropout(embedding(input_ids) + position(positions))  # (B, L, D)


def exclude(parameters: Sequence[nn.Parameter] | nn.Module, *others: Sequence[nn.Parameter]) -> list[nn.Parameter]:
    """``parameters`` without duplicates and without any parameter of ``others`` (tied weights)."""
    if isinstance(parameters, nn.Module):
        parameters = list(parameters.parameters())
    seen = {id(p) for group in others for p in group}
    kept = []
    for p in parameters:
        if id(p) not in seen:
            seen.add(id(p))
            kept.append(p)
    return kept
