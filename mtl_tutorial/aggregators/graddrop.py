r"""GradDrop: keep, coordinate by coordinate, only the gradients of one sign (Chen et al., 2020)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl_tutorial.aggregators.base import Aggregator


class GradDrop(Aggregator):
    r"""Gradient sign dropout, Chen et al. (NeurIPS 2020), "Just pick a sign".

    For every coordinate $k$ the sign purity $P_k = \frac12\big(1 + \frac{\sum_i J_{ik}}
    {\sum_i |J_{ik}|}\big) \in [0, 1]$ is the probability of keeping the positive entries: draw
    $U_k \sim \mathcal U(0, 1)$ and keep $J_{ik}$ if $J_{ik} > 0$ and $P_k > U_k$, or if
    $J_{ik} < 0$ and $P_k < U_k$. Then $d_k = \sum_i \text{kept } J_{ik}$. A coordinate where all
    tasks agree in sign is always kept whole. Where every entry is zero, $P_k = \frac12$.

    The paper applies the mask to gradients with respect to activations, summed over the
    batch, and has a ``leak`` parameter; here it applies to the rows of the parameter Jacobian,
    without leak, as in the LibMTL and torchjd re-implementations. $U$ is drawn from
    ``generator``; the same generator state gives the same direction, whatever the row order.

    Worked example: $J = \begin{pmatrix} 1 & 2 \\ -3 & 2 \end{pmatrix}$: in the second column
    both entries are positive, $P_2 = 1$, and $d_2 = 4$ for every $U$; in the first
    $P_1 = \frac12 (1 - \frac24) = 0.25$, so $d_1 = 1$ with probability 0.25, else $-3$.
    """

    needs_generator = True

    def forward(self, jacobians: Tensor, generator: torch.Generator | None = None) -> Tensor:
        J = jacobians.to(torch.float64)  # (B, T, n)
        total = J.sum(dim=1)  # (B, n)
        magnitude = J.abs().sum(dim=1)  # (B, n)
        purity = torch.where(magnitude > 0, 0.5 * (1 + total / magnitude.clamp(min=1e-300)), 0.5)  # (B, n)
        draw = torch.rand(J.shape[0], J.shape[2], generator=generator, dtype=J.dtype, device=J.device)  # (B, n)
        keep_positive = (purity > draw)[:, None, :]  # (B, 1, n)
        keep = torch.where(J > 0, keep_positive, (J < 0) & ~keep_positive)  # (B, T, n)
        return (J * keep).sum(dim=1)  # (B, n)
