r"""IMTL-G: the combination of the task gradients with equal projections on every task (Liu et al., 2021)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl_tutorial.aggregators._solvers import cosine_gramian, unit_rows
from mtl_tutorial.aggregators.base import Aggregator


def imtl_g_two_tasks(norms: Tensor, directions: Tensor) -> Tensor:
    r"""The closed form for two tasks: ``norms (B, 2)``, ``directions (B, 2, n)`` -> ``(B, n)``.

    $u_1 \cdot d = u_2 \cdot d$ with $d = \beta_1 u_1 + \beta_2 u_2$ reads
    $(1 - \cos)(\beta_1 - \beta_2) = 0$, so $\beta_1 = \beta_2 = \beta$, and $\sum \alpha = 1$
    gives $\beta = \frac{\|g_1\| \|g_2\|}{\|g_1\| + \|g_2\|}$: half the harmonic mean of the
    norms along $u_1 + u_2$. With a zero row the other row is the answer.
    """
    n1, n2 = norms[:, 0], norms[:, 1]
    both = (n1 > 0) & (n2 > 0)
    beta = torch.where(both, n1 * n2 / torch.where(both, n1 + n2, 1.0), 0.0)  # (B,)
    weights = torch.where(both[:, None], beta[:, None].expand(-1, 2), norms)  # (B, 2)
    return (weights[:, None, :] @ directions).squeeze(1)  # (B, n)


def imtl_g_direction(jacobians: Tensor) -> Tensor:
    """The bordered least-squares solve for any number of tasks: ``(B, T, n)`` -> ``(B, n)``."""
    norms, directions = unit_rows(jacobians)  # (B, T), (B, T, n)
    B, T = norms.shape
    nonzero = norms > 0
    largest = norms.amax(dim=-1, keepdim=True).clamp(min=1e-300)  # (B, 1)
    inverse = torch.where(nonzero, largest / norms.clamp(min=1e-300), 0.0)  # (B, T), >= 1
    border = inverse / inverse.amax(dim=-1, keepdim=True).clamp(min=1e-300)  # in [0, 1]
    C = cosine_gramian(directions)  # (B, T, T)
    C = torch.where(nonzero[..., None], C, torch.eye(T, dtype=C.dtype, device=C.device))  # zero rows: beta_i = 0
    M = torch.zeros(B, T + 1, T + 1, dtype=C.dtype, device=C.device)
    M[:, :T, :T] = C
    M[:, :T, T] = -nonzero.to(C.dtype)  # C beta - lambda 1 = 0 on the non-zero rows
    M[:, T, :T] = border
    rhs = torch.zeros(B, T + 1, 1, dtype=C.dtype, device=C.device)
    rhs[:, T, 0] = 1 / inverse.amax(dim=-1).clamp(min=1e-300)  # sum_i beta_i / ||g_i|| = 1, rescaled
    beta = torch.linalg.lstsq(M, rhs, driver="gelsd").solution[:, :T, 0]  # (B, T), in units of `largest`
    d = largest * (beta[:, None, :] @ directions).squeeze(1)  # (B, n)
    return torch.where(nonzero.any(-1, keepdim=True), d, 0.0)


class IMTLG(Aggregator):
    r"""Gradient balance of Impartial Multi-Task Learning, Liu et al. (ICLR 2021).

    Find $d = J^\top \alpha$ with $\sum_i \alpha_i = 1$ whose projection on every unit task
    gradient $u_i = g_i / \|g_i\|$ is the same: $u_i \cdot d = \lambda$ for all $i$. The paper's
    closed form is $\alpha_{2:T} = g_1 U^\top (D U^\top)^{-1}$, $\alpha_1 = 1 - \sum_{t \ge 2} \alpha_t$,
    with rows $u_1 - u_t$ in $U$ and $g_1 - g_t$ in $D$.

    Here the same conditions are written with $\beta_i = \alpha_i \|g_i\|$ on the cosine
    Gramian $C$: $C \beta = \lambda \mathbf 1$ and $\sum_i \beta_i / \|g_i\| = 1$, one bordered
    linear system whose entries are all of order one, so rows of any scale are handled. When
    the conditions have no unique solution (duplicated or dependent directions) the system is
    solved in the least-squares, minimum-norm sense. Zero rows have no direction; they get
    $\alpha_i = 0$. The direction is invariant to the row order.

    Worked example: $g_1 = (2, 0)$, $g_2 = (0, 1)$: $d = (2\alpha_1, 1 - \alpha_1)$ and
    $u_1 \cdot d = u_2 \cdot d$ gives $2\alpha_1 = 1 - \alpha_1$, $\alpha_1 = \frac13$,
    $d = (\frac23, \frac23)$.

    >>> IMTLG()(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
    tensor([0.6667, 0.6667])
    """

    def forward(self, jacobians: Tensor) -> Tensor:
        if jacobians.shape[1] == 2:
            return imtl_g_two_tasks(*unit_rows(jacobians))
        return imtl_g_direction(jacobians)
