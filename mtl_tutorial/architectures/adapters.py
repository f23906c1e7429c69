r"""Task-specific bottleneck adapters on a shared trunk (Houlsby et al., ICML 2019).

An adapter is a small residual bottleneck, down-projection to r dimensions, nonlinearity,
up-projection (figure 2 of the paper):

.. math::

    A(h) = h + W_{\text{up}} \, \operatorname{GELU}(W_{\text{down}} h + b_{\text{down}}) + b_{\text{up}},
    \qquad W_{\text{down}} \in \mathbb{R}^{r \times D}, \; W_{\text{up}} \in \mathbb{R}^{D \times r}.

Every task has its own adapter after the attention and after the feed-forward sub-layer of every
block of the shared trunk, applied to the sub-layer's output before the residual sum:
:math:`x \leftarrow x + A_t(\text{sublayer}(\text{norm}(x)))`. The up-projection starts at zero,
so :math:`A_t` starts as the identity and the model starts as the hard-sharing one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from mtl_tutorial.architectures.base import check_model_inputs, embed, exclude
from mtl_tutorial.config import ModelConfig
from mtl_tutorial.models.multitask import MultiTaskModel
from mtl_tutorial.tasks import Task


class Adapter(nn.Module):
    """``h + up(GELU(down(h)))``: ``(B, L, D) -> (B, L, D)``, the identity at initialisation."""

    def __init__(self, d_model: int, bottleneck: int) -> None:
        super().__init__()
        self.down = nn.Linear(d_model, bottleneck)
        self.up = nn.Linear(bottleneck, d_model)
        nn.init.normal_(self.down.weight, std=0.02)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)  # A(h) = h at the start
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: Tensor) -> Tensor:
        return hidden + self.up(F.gelu(self.down(hidden)))  # (B, L, D)


class BlockAdapters(nn.Module):
    """One task's two adapters of one block: after attention, after the feed-forward layer."""

    def __init__(self, d_model: int, bottleneck: int) -> None:
        super().__init__()
        self.attention = Adapter(d_model, bottleneck)
        self.mlp = Adapter(d_model, bottleneck)


class AdapterModel(MultiTaskModel):
    """The hard-sharing model (shared trunk, one head per task) plus per-task bottleneck adapters.

    Shared θ_s: the trunk, exactly as in hard sharing. Task-specific: the task's adapters
    (``2 × num_layers`` of them, ``2·(D·r) + r + D`` parameters each) and its head. Built with the
    same seed, it starts with the very weights and outputs of :class:`MultiTaskModel`: the trunk
    and heads are created first, in the same order, and the adapters are the identity.

    Differences from the paper, which adapts a pre-trained BERT and freezes it: here the trunk is
    trained with the adapters from scratch (shared by all tasks), and the layer norms are shared
    (Houlsby et al. also train them per task).

    Example::

        >>> model = AdapterModel(ModelConfig(), [SENTIMENT, SOURCE], vocab_size=4000, bottleneck=16)
        >>> model.parameter_counts()["sentiment"]  # 4 adapters of 4240 + a head of 258
        17218
    """

    def __init__(self, config: ModelConfig, tasks: Sequence[Task], vocab_size: int, bottleneck: int = 16) -> None:
        if config.trunk != "transformer":
            raise ValueError(
                f"architecture 'adapters' inserts adapters into Transformer blocks, but ModelConfig.trunk is "
                f"{config.trunk!r}; use trunk='transformer'"
            )
        if bottleneck < 1:
            raise ValueError(f"bottleneck must be at least 1, got {bottleneck}")
        super().__init__(config, tasks, vocab_size)  # trunk and heads first: the hard-sharing weights
        self.bottleneck = bottleneck
        self.adapters = nn.ModuleDict({
            task.name: nn.ModuleList(BlockAdapters(config.d_model, bottleneck) for _ in range(config.num_layers))
            for task in tasks
        })

    def forward(self, task: str, input_ids: Tensor) -> Tensor:
        check_model_inputs(self.config, list(self.heads), task, input_ids)
        trunk = self.trunk
        x = embed(input_ids, trunk.embedding, trunk.position, trunk.dropout)  # (B, L, D)
        for block, adapters in zip(trunk.blocks, self.adapters[task]):
            # the trunk's Block.forward with task `task`'s adapter on each sub-layer's output
            x = x + block.dropout(adapters.attention(block.attention(block.norm1(x))))  # (B, L, D)
            x = x + block.dropout(adapters.mlp(block.mlp(block.norm2(x))))  # (B, L, D)
        return self.heads[task](trunk.norm(x), input_ids)

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """θ_t: the task's adapters and its head."""
        if task not in self.heads:
            raise KeyError(f"unknown task {task!r}; this model's tasks are: {', '.join(self.heads)}")
        return exclude([*self.adapters[task].parameters(), *self.heads[task].parameters()],
                       self.shared_parameters())
