"""Equal weights: L = (1/T) Σ_t L_t, the article's ½(L_cls + L_gen) when T = 2."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl_tutorial.weightings.base import Weighting


class Equal(Weighting):
    r"""$L = \frac{1}{T}\sum_t L_t$.

    >>> Equal(2)(torch.tensor([0.7, 8.9]))
    tensor(4.8000)
    """

    def forward(self, losses: Tensor) -> Tensor:
        return losses.mean()

    @property
    def weights(self) -> Tensor:
        return torch.full((self.num_tasks,), 1.0 / self.num_tasks)
