r"""MGDA: the minimum-norm point of the convex hull of the task gradients (Sener & Koltun, 2018)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl_tutorial.aggregators._solvers import cosine_gramian, min_norm_point, unit_rows
from mtl_tutorial.aggregators.base import Aggregator


def mgda_two_tasks(jacobians: Tensor) -> Tensor:
    r"""The closed form for two tasks: ``(B, 2, n)`` -> ``(B, n)``, in float64.

    $\gamma^* = \mathrm{clip}\big(\frac{(g_2 - g_1) \cdot g_2}{\|g_1 - g_2\|^2}, 0, 1\big)$,
    $d = \gamma^* g_1 + (1 - \gamma^*) g_2$ (the point of the segment $[g_1, g_2]$ closest to 0).
    Equal rows make the segment a point: then $\gamma^* = \frac12$, and $d = g_1 = g_2$.
    """
    J = jacobians.to(torch.float64)  # (B, 2, n)
    G = J @ J.mT  # (B, 2, 2)
    numerator = G[:, 1, 1] - G[:, 0, 1]  # (g2 - g1) . g2
    denominator = G[:, 0, 0] + G[:, 1, 1] - 2 * G[:, 0, 1]  # ||g1 - g2||^2
    gamma = torch.where(denominator > 0, numerator / torch.where(denominator > 0, denominator, 1.0), 0.5)
    gamma = gamma.clamp(0, 1)[:, None]  # (B, 1)
    return gamma * J[:, 0] + (1 - gamma) * J[:, 1]  # (B, n)


def mgda_direction(jacobians: Tensor) -> Tensor:
    r"""The exact solver for any number of tasks: ``(B, T, n)`` -> ``(B, n)``, in float64.

    $\min_{w \in \Delta} \|J^\top w\|^2$ in unit-row coordinates $u_i = \|g_i\| w_i$:
    $\min u^\top C u$ s.t. $\sum_i u_i / \|g_i\| = 1$, $u \ge 0$, then
    $d = \sum_i u_i \hat u_i$. A zero row puts 0 in the hull: then $d = 0$.
    """
    norms, directions = unit_rows(jacobians)  # (B, T), (B, T, n)
    nonzero = norms > 0
    largest = norms.amax(dim=-1, keepdim=True).clamp(min=1e-300)  # (B, 1)
    relative = torch.where(nonzero, norms / largest, 1.0)  # in (0, 1]
    u = min_norm_point(cosine_gramian(directions), 1 / relative)  # (B, T), relative to `largest`
    d = largest * (u[:, None, :] @ directions).squeeze(1)  # (B, n): sum_i w_i g_i = sum_i u_i u_hat_i
    return torch.where(nonzero.all(-1, keepdim=True), d, 0.0)


class MGDA(Aggregator):
    r"""$d = J^\top w^*$, $w^* = \arg\min_{w \in \Delta_T} \|J^\top w\|^2$ (Sener & Koltun, NeurIPS 2018).

    The multiple-gradient descent algorithm (Désidéri, 2012) as used for multi-task learning by
    Sener & Koltun: the shortest vector in the convex hull of the task gradients. Its KKT
    conditions give $g_i \cdot d \ge \|d\|^2$ for every task, so $d$ conflicts with no task, and
    $d = 0$ exactly when the point is Pareto-stationary (0 is in the hull, e.g. a zero row or two
    opposite rows). Two tasks use the closed form :func:`mgda_two_tasks`; more tasks the exact
    face-enumeration solver :func:`~mtl_tutorial.aggregators._solvers.min_norm_point` on the
    cosine Gramian, which is what makes rows scaled by $10^{-8}$ still get a non-conflicting
    answer. No normalisation of the gradients is applied (Sener & Koltun also try a few).

    Worked example: $g_1 = (1, 0)$, $g_2 = (0, 2)$. $\gamma^* = (g_2 - g_1)\cdot g_2 /
    \|g_1 - g_2\|^2 = 4 / 5$, so $d = (0.8, 0.4)$, and $g_1 \cdot d = g_2 \cdot d = 0.8 = \|d\|^2$.

    >>> MGDA()(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    tensor([0.8000, 0.4000])
    """

    def forward(self, jacobians: Tensor) -> Tensor:
        T = jacobians.shape[1]
        if T == 1:
            return jacobians[:, 0].to(torch.float64)
        if T == 2:
            return mgda_two_tasks(jacobians)
        return mgda_direction(jacobians)
