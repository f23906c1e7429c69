r"""Soft parameter sharing with cross-stitch units (Misra, Shrivastava, Gupta & Hebert, CVPR 2016).

One column, a whole causal Transformer trunk, per task. After block :math:`l` of every column a
learned :math:`T \times T` cross-stitch unit :math:`\alpha^{(l)}` mixes the columns' hidden states
(eq. 1 of the paper, written for T tasks and applied at every position):

.. math::

    \tilde h^{(l)}_t = \sum_{s=1}^{T} \alpha^{(l)}_{ts} \, h^{(l)}_s ,

and column t continues from :math:`\tilde h^{(l)}_t`. Task t's head reads its own column. With
:math:`\alpha = I` the model is T independent single-task networks; with all rows equal, the
columns carry the same mixture, which is how hard sharing looks through these units.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mtl_tutorial.architectures.base import MultiTaskArchitecture, embed, exclude, task_heads
from mtl_tutorial.config import ModelConfig
from mtl_tutorial.models.transformer import TransformerTrunk
from mtl_tutorial.tasks import Task


def cross_stitch_init(num_tasks: int, self_weight: float = 0.9) -> Tensor:
    r"""The initial unit: :math:`\alpha_S` on the diagonal, :math:`(1 - \alpha_S)/(T - 1)` off it.

    Every row sums to 1, so each column starts as a convex mixture dominated by itself. For two
    tasks it is :math:`(\alpha_S, \alpha_D) = (0.9, 0.1)`, one of the initialisations studied in
    section 5 of Misra et al. (2016).

    >>> cross_stitch_init(3)
    tensor([[0.9000, 0.0500, 0.0500],
            [0.0500, 0.9000, 0.0500],
            [0.0500, 0.0500, 0.9000]])
    """
    if not 0.0 <= self_weight <= 1.0:
        raise ValueError(f"self_weight must lie in [0, 1], got {self_weight}")
    if num_tasks == 1:
        return torch.ones(1, 1)
    off = (1.0 - self_weight) / (num_tasks - 1)
    return torch.full((num_tasks, num_tasks), off) + (self_weight - off) * torch.eye(num_tasks)  # (T, T)


class CrossStitchModel(MultiTaskArchitecture):
    """One Transformer column per task, mixed after every block by learned T×T cross-stitch units.

    **The shared parameters θ_s are the cross-stitch units only**: ``num_layers × T²`` numbers
    (18 for two layers and three tasks). This matters for the aggregators, which act on θ_s alone:
    here they combine the task gradients of a few mixing weights, while every column takes the
    plain gradient of the weighted objective. ``task_parameters(t)`` (column t and head t) are
    *owned* by task t but not exclusive to it: through the off-diagonal α every task's loss
    reaches the embeddings and blocks of every column (that is the soft sharing); only the
    column's final layer norm and the head are t's alone, and the whole column is when α = I.

    A forward pass for one task runs all T columns on the same input, so it costs T times the
    hard-sharing forward. Differences from the paper, which stitches two AlexNets: the columns
    start from scratch (the paper starts from single-task networks) and the units train with the
    trainer's learning rate (the paper raises theirs); one scalar per column pair and layer, not
    per channel.

    Example::

        >>> model = CrossStitchModel(ModelConfig(), [SENTIMENT, SOURCE, GENERATION], vocab_size=4000)
        >>> model.parameter_counts()["shared"]
        18
    """

    def __init__(self, config: ModelConfig, tasks: Sequence[Task], vocab_size: int,
                 self_weight: float = 0.9) -> None:
        super().__init__(config, tasks, "cross_stitch")
        self.columns = nn.ModuleDict({task.name: TransformerTrunk(config, vocab_size) for task in tasks})
        self.heads = task_heads(config, tasks, vocab_size,
                                {name: column.embedding for name, column in self.columns.items()})
        initial = cross_stitch_init(len(tasks), self_weight)  # (T, T)
        self.cross_stitch = nn.ParameterList(nn.Parameter(initial.clone()) for _ in range(config.num_layers))

    def forward(self, task: str, input_ids: Tensor) -> Tensor:
        self.check_inputs(task, input_ids)
        columns = list(self.columns.values())
        hidden = torch.stack([embed(input_ids, c.embedding, c.position, c.dropout) for c in columns])  # (T, B, L, D)
        for layer, alpha in enumerate(self.cross_stitch):
            hidden = torch.stack([c.blocks[layer](hidden[s]) for s, c in enumerate(columns)])  # (T, B, L, D)
            hidden = torch.einsum("ts,sbld->tbld", alpha, hidden)  # (T, B, L, D): the cross-stitch
        t = self.task_names.index(task)
        return self.heads[task](columns[t].norm(hidden[t]), input_ids)

    def shared_parameters(self) -> list[nn.Parameter]:
        """θ_s: the cross-stitch units, one T×T matrix per block."""
        return list(self.cross_stitch)

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The last cross-stitch unit."""
        return [self.cross_stitch[-1]]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """Column ``task`` and its head (a tied generation head is the column's embedding)."""
        self.check_task(task)
        return exclude([*self.columns[task].parameters(), *self.heads[task].parameters()])
