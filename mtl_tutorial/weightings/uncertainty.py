r"""Uncertainty weighting: learn one log-variance per task (Kendall, Gal & Cipolla, 2018)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mtl_tutorial.weightings.base import Weighting


class Uncertainty(Weighting):
    r"""$L = \sum_t \tfrac12 e^{-s_t} L_t + \tfrac12 s_t$, with $s_t = \log \sigma_t^2$ learned.

    Kendall, Gal & Cipolla (CVPR 2018), "Multi-task learning using uncertainty to weigh losses
    for scene geometry and semantics": the homoscedastic-noise likelihood of a Gaussian
    regression gives $L_t / (2\sigma_t^2) + \log \sigma_t$; learning $s_t = \log \sigma_t^2$
    keeps it stable. For fixed losses the minimum over $s_t$ is at $e^{s_t} = L_t$, where the
    weight is $w_t = \tfrac12 e^{-s_t} = 1 / (2 L_t)$ and the objective is
    $\sum_t \tfrac12 (1 + \log L_t)$: the method behaves like minimising $\sum_t \log L_t$, so
    every task's *relative* progress counts the same. It needs positive losses.

    A task that sat out the step (a zero loss, see :func:`~mtl_tutorial.step.train_step`) adds
    no $\tfrac12 s_t$ term, so its $s_t$ does not drift while it is absent.

    >>> Uncertainty(2)(torch.tensor([0.7, 8.9]))  # s = 0: (0.7 + 8.9) / 2
    tensor(4.8000, grad_fn=<SumBackward0>)
    """

    def __init__(self, num_tasks: int, initial_log_variance: float = 0.0) -> None:
        super().__init__(num_tasks)
        if not math.isfinite(initial_log_variance):
            raise ValueError(f"Uncertainty's initial_log_variance s_t = log σ_t² must be finite, got "
                             f"{initial_log_variance}; 0 (σ = 1) is the usual start")
        self.log_variances = nn.Parameter(torch.full((num_tasks,), float(initial_log_variance)))

    def forward(self, losses: Tensor) -> Tensor:
        s = self.log_variances.to(losses.dtype)  # (T,)
        present = (losses.detach() != 0).to(losses.dtype)
        return (0.5 * torch.exp(-s) * losses + 0.5 * s * present).sum()

    @property
    def weights(self) -> Tensor:
        return 0.5 * torch.exp(-self.log_variances.detach())
