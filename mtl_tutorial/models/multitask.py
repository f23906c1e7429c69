"""Hard parameter sharing: one trunk, one head per task (the article's shared-trunk diagram)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from mtl_tutorial.config import ModelConfig
from mtl_tutorial.models.heads import ClassificationHead, LanguageModelHead
from mtl_tutorial.models.lstm import LSTMTrunk
from mtl_tutorial.models.transformer import TransformerTrunk
from mtl_tutorial.tasks import CLASSIFICATION, Task

TRUNKS: dict[str, type[nn.Module]] = {"transformer": TransformerTrunk, "lstm": LSTMTrunk}


class MultiTaskModel(nn.Module):
    """``model(task_name, input_ids (B, L))`` -> that task's logits.

    Example::

        >>> model = MultiTaskModel(ModelConfig(), [SENTIMENT, GENERATION], vocab_size=8000)
        >>> model("sentiment", torch.ones(2, 5, dtype=torch.long)).shape
        torch.Size([2, 2])
    """

    def __init__(self, config: ModelConfig, tasks: Sequence[Task], vocab_size: int) -> None:
        super().__init__()
        if config.trunk not in TRUNKS:
            raise ValueError(f"unknown trunk {config.trunk!r}; valid trunks are: {', '.join(TRUNKS)}")
        self.config = config
        self.task_names = [t.name for t in tasks]
        self.trunk = TRUNKS[config.trunk](config, vocab_size)
        heads = {}
        for task in tasks:
            if task.kind == CLASSIFICATION:
                heads[task.name] = ClassificationHead(config.d_model, task.num_classes, config.dropout)
            else:
                tied = self.trunk.embedding if config.tie_embeddings else None
                heads[task.name] = LanguageModelHead(config.d_model, vocab_size, tied)
        self.heads = nn.ModuleDict(heads)

    def forward(self, task: str, input_ids: Tensor) -> Tensor:
        if task not in self.heads:
            raise KeyError(f"this model has no head for task {task!r}; its tasks are: {', '.join(self.heads)}")
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape (B, L), got {tuple(input_ids.shape)}")
        hidden = self.trunk(input_ids)  # (B, L, D)
        return self.heads[task](hidden, input_ids)

    def shared_parameters(self) -> list[nn.Parameter]:
        """θ_s: the trunk (including a token embedding tied to the generation head)."""
        return list(self.trunk.parameters())

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The last shared layer, whose gradient norms GradNorm balances (the trunk's output layer)."""
        return self.trunk.last_layer_parameters()

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """θ_t: the parameters only ``task`` uses."""
        if task not in self.heads:
            raise KeyError(f"unknown task {task!r}; this model's tasks are: {', '.join(self.heads)}")
        shared = {id(p) for p in self.shared_parameters()}
        return [p for p in self.heads[task].parameters() if id(p) not in shared]

    def parameter_counts(self) -> dict[str, int]:
        """Number of shared and per-task parameters, e.g. ``{"shared": ..., "sentiment": ...}``."""
        counts = {"shared": sum(p.numel() for p in self.shared_parameters())}
        for name in self.heads:
            counts[name] = sum(p.numel() for p in self.task_parameters(name))
        return counts
