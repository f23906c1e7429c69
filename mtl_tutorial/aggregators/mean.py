r"""The mean of the task gradients: what a backward pass on the equally weighted loss computes."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl_tutorial.aggregators.base import Aggregator


class Mean(Aggregator):
    r"""$d = \frac{1}{T} \sum_i g_i = \frac{1}{T} J^\top \mathbf{1}$.

    The baseline every other aggregator is compared with: gradient descent on
    $\frac1T \sum_t L_t$. It is invariant to the order of the rows and linear under scaling
    ($A(\mathrm{diag}(c) J) = \frac1T J^\top c$), but it can conflict with a task: with
    $g_1 = (1, 0)$ and $g_2 = (-3, 1)$ it gives $(-1, 0.5)$, and $g_1 \cdot d = -1 < 0$.

    >>> Mean()(torch.tensor([[1.0, 0.0], [-3.0, 1.0]]))
    tensor([-1.0000,  0.5000])
    """

    def forward(self, jacobians: Tensor) -> Tensor:
        return jacobians.to(torch.float64).mean(dim=-2)  # (B, n)
