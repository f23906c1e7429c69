r"""UPGrad: the mean of the task gradients, each projected onto the dual cone (Quinton & Rey, 2024)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl_tutorial.aggregators._solvers import cosine_gramian, nonnegative_qp, unit_rows
from mtl_tutorial.aggregators.base import Aggregator


def upgrad_two_tasks(norms: Tensor, directions: Tensor, cosine: Tensor) -> Tensor:
    r"""The closed form for two tasks: ``norms (B, 2)``, ``directions (B, 2, n)``, ``cosine (B,)`` -> ``(B, n)``.

    With two rows the cone is the intersection of two half-spaces, and a row that violates
    the other's half-space is projected onto its boundary, which satisfies its own:
    $\pi_K(g_1) = g_1 - (g_1 \cdot u_2) u_2$ when $\cos(g_1, g_2) < 0$, else $g_1$. UPGrad for
    two tasks is therefore half of PCGrad.
    """
    conflict = (cosine < 0).to(norms.dtype)  # (B,)
    n1, n2 = norms[:, 0], norms[:, 1]
    weights = torch.stack([n1 - conflict * cosine * n2, n2 - conflict * cosine * n1], dim=-1) / 2  # (B, 2)
    return (weights[:, None, :] @ directions).squeeze(1)  # (B, n)


def upgrad_direction(jacobians: Tensor) -> Tensor:
    """The exact solver for any number of tasks: ``(B, T, n)`` -> ``(B, n)``, in float64."""
    norms, directions = unit_rows(jacobians)  # (B, T), (B, T, n)
    T = norms.shape[1]
    C = cosine_gramian(directions)  # (B, T, T)
    # column i of C is U u_i: the projection of u_i is u_i + U^T mu_i
    mu = nonnegative_qp(C, C)  # (B, T, T), column i = mu_i
    eye = torch.eye(T, dtype=C.dtype, device=C.device)
    weights = ((eye + mu) @ norms[..., None]).squeeze(-1) / T  # (B, T): sum_i ||g_i|| (e_i + mu_i) / T
    return (weights[:, None, :] @ directions).squeeze(1)  # (B, n)


class UPGrad(Aggregator):
    r"""$d = \frac1T \sum_i \pi_K(g_i)$, $K = \{x : J x \ge 0\}$ (Quinton & Rey, 2024, "Jacobian descent for multi-objective optimization").

    $\pi_K(g_i)$ is the point of the dual cone $K$ (the directions that conflict with no task)
    closest to $g_i$. Its dual is a non-negative least-squares problem: $\pi_K(g_i) = g_i +
    J^\top \mu$ with $\mu = \arg\min_{\mu \ge 0} \frac12 \|g_i + J^\top \mu\|^2$. The cone only
    depends on the row directions, so the problems are solved on the cosine Gramian by the exact
    :func:`~mtl_tutorial.aggregators._solvers.nonnegative_qp`, and the norms enter linearly.

    Properties: $J d \ge 0$ (a mean of points of a convex cone lies in the cone), invariance to
    the row order, and linearity under scaling: for positive $c$,
    $A(\mathrm{diag}(c) J) = \frac1T \sum_i c_i \pi_K(g_i)$. A zero row puts no constraint on the
    cone and contributes $\pi_K(0) = 0$.

    Worked example: $g_1 = (1, 0)$, $g_2 = (-1, 1)$. $K = \{x_1 \ge 0, x_2 \ge x_1\}$.
    $\pi_K(g_1)$: $g_1$ violates $g_2 \cdot x \ge 0$; projecting onto $x_2 = x_1$ gives
    $(0.5, 0.5)$. $\pi_K(g_2)$: $g_2$ violates $x_1 \ge 0$; projecting gives $(0, 1)$, in $K$.
    So $d = \frac12 (0.5, 1.5) = (0.25, 0.75)$.

    >>> UPGrad()(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]))
    tensor([0.2500, 0.7500])
    """

    def forward(self, jacobians: Tensor) -> Tensor:
        if jacobians.shape[1] == 2:
            norms, directions = unit_rows(jacobians)  # (B, 2), (B, 2, n)
            return upgrad_two_tasks(norms, directions, (directions[:, 0] * directions[:, 1]).sum(-1))
        return upgrad_direction(jacobians)
