r"""Multi-gate mixture of experts, MMoE (Ma, Zhao, Yi, Chen, Hong & Chi, KDD 2018).

E expert networks :math:`f_1, \dots, f_E` read the same input; task t mixes them with its own
softmax gate and feeds the mixture to its head :math:`h^t` (section 4.2 of the paper):

.. math::

    y_t = h^t\Big(\sum_{e=1}^{E} g^t(x)_e \, f_e(x)\Big), \qquad g^t(x) = \operatorname{softmax}(W_{g^t} x).

Here an expert is a small causal Transformer (its own blocks and final layer norm) on top of a
shared token and position embedding, and the gate input x is the running mean of the token
embeddings: at position i, :math:`\bar x_i = \frac{1}{i}\sum_{j \le i} e(\text{token}_j)` over
real tokens. A running (not a whole-sequence) mean keeps generation causal: the gate at
position i never sees a later token. At the last real token it is the mean-pooled embedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import Tensor, nn

from mtl_tutorial.architectures.base import MultiTaskArchitecture, embed, exclude, task_heads
from mtl_tutorial.config import ModelConfig
from mtl_tutorial.models.transformer import Block, _init_weights
from mtl_tutorial.tasks import Task


class Expert(nn.Module):
    """Transformer blocks and a final layer norm: ``(B, L, D) -> (B, L, D)``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(config.d_model)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class MMoEModel(MultiTaskArchitecture):
    """E Transformer experts on a shared embedding, one softmax gate per task over the experts.

    Shared θ_s: the token and position embeddings and every expert. Task-specific: the task's gate
    (a ``Linear(D, E)``) and head. The gates start near uniform (weights N(0, 0.02), zero bias).

    Why whole small Transformers as experts, and why narrow ones: they are the paper's design
    (each expert reads the input and returns a representation), and they keep the forward
    affordable on a CPU. By default an expert's feed-forward width is ``d_ff // num_experts``, so
    the E experts together hold the feed-forward weights of one hard-sharing trunk; attention is
    per expert, so at E = 4 the experts hold, and cost per token, about twice the hard trunk's
    blocks (0.80M against 0.40M parameters at the case-study size). Per-layer feed-forward
    experts would be cheaper still, but their gates would mix representations the tasks already
    share, not whole networks as in the paper.

    Example::

        >>> model = MMoEModel(ModelConfig(), [SENTIMENT, GENERATION], vocab_size=4000, num_experts=4)
        >>> model("sentiment", torch.ones(2, 5, dtype=torch.long)).shape
        torch.Size([2, 2])
    """

    def __init__(self, config: ModelConfig, tasks: Sequence[Task], vocab_size: int,
                 num_experts: int = 4, expert_d_ff: int | None = None) -> None:
        super().__init__(config, tasks, "mmoe")
        if num_experts < 1:
            raise ValueError(f"num_experts must be at least 1, got {num_experts}")
        expert_d_ff = expert_d_ff if expert_d_ff is not None else max(1, config.d_ff // num_experts)
        if expert_d_ff < 1:
            raise ValueError(f"expert_d_ff must be positive, got {expert_d_ff}")
        self.num_experts = num_experts
        self.embedding = nn.Embedding(vocab_size, config.d_model)
        self.position = nn.Embedding(config.max_length, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.experts = nn.ModuleList(Expert(replace(config, d_ff=expert_d_ff)) for _ in range(num_experts))
        self.gates = nn.ModuleDict({task.name: nn.Linear(config.d_model, num_experts) for task in tasks})
        for module in (self.embedding, self.position, self.experts, self.gates):
            module.apply(_init_weights)  # GPT-2 style, as the hard-sharing trunk
        self.heads = task_heads(config, tasks, vocab_size, self.embedding)

    def gate(self, task: str, input_ids: Tensor) -> Tensor:
        """Task ``task``'s mixture weights over the experts at every position: ``(B, L, E)``."""
        self.check_inputs(task, input_ids)
        tokens = self.embedding(input_ids)  # (B, L, D)
        real = (input_ids != 0).unsqueeze(-1).to(tokens.dtype)  # (B, L, 1); 0 is <pad>
        running_mean = (tokens * real).cumsum(1) / real.cumsum(1).clamp(min=1.0)  # (B, L, D)
        return torch.softmax(self.gates[task](running_mean), dim=-1)  # (B, L, E)

    def forward(self, task: str, input_ids: Tensor) -> Tensor:
        gate = self.gate(task, input_ids)  # (B, L, E)
        x = embed(input_ids, self.embedding, self.position, self.dropout)  # (B, L, D)
        experts = torch.stack([expert(x) for expert in self.experts], dim=-1)  # (B, L, D, E)
        hidden = (experts * gate.unsqueeze(2)).sum(-1)  # (B, L, D)
        return self.heads[task](hidden, input_ids)

    def shared_parameters(self) -> list[nn.Parameter]:
        """θ_s: the embeddings and the experts (a tied generation head is the embedding)."""
        return [*self.embedding.parameters(), *self.position.parameters(), *self.experts.parameters()]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The experts' final layer norms: the last layer every task's gradient passes through."""
        return [p for expert in self.experts for p in expert.norm.parameters()]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """Task ``task``'s gate and head."""
        self.check_task(task)
        return exclude([*self.gates[task].parameters(), *self.heads[task].parameters()],
                       self.shared_parameters())
