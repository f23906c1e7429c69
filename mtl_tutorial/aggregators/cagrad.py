r"""CAGrad: the best worst-case improvement within a ball around the mean gradient (Liu et al., 2021)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mtl_tutorial.aggregators._solvers import (
    FEASIBILITY_TOL,
    HULL_TOL,
    RANK_TOL,
    cosine_gramian,
    faces,
    nonnegative_qp,
    origin_in_hull,
    solve_on_faces,
    unit_rows,
)
from mtl_tutorial.aggregators.base import Aggregator


def cagrad_direction(jacobians: Tensor, c: float) -> Tensor:
    """The exact dual solver for any number of tasks: ``(B, T, n)`` -> ``(B, n)``, in float64."""
    J = jacobians.to(torch.float64)  # (B, T, n)
    g0 = J.mean(dim=1)  # (B, n)
    norms, directions = unit_rows(J)  # (B, T), (B, T, n)
    B, T = norms.shape
    nonzero = norms > 0
    largest = norms.amax(dim=-1, keepdim=True)  # (B, 1)
    scale = torch.where(largest > 0, largest, torch.ones_like(largest))
    g0 = g0 / scale  # work with the largest row of norm 1; CAGrad is homogeneous
    relative = norms / scale  # (B, T) in [0, 1]
    C = cosine_gramian(directions)  # (B, T, T)
    alignment = (directions @ g0[..., None]).squeeze(-1)  # (B, T): u_i . g0
    sqrt_phi = c * g0.norm(dim=-1)  # (B,)
    # sum_i w_i = 1 reads h^T u = 1 with h_i proportional to 1 / ||g_i||, scaled into (0, 1]
    smallest = torch.where(nonzero, relative, torch.inf).amin(dim=-1, keepdim=True)
    h = torch.where(nonzero, smallest / relative.clamp(min=1e-300), 0.0)  # (B, T)

    # stationary point of F on each support S (zero rows stay out: they only relax sum w = 1)
    support = faces(T, J.device)  # (F, T)
    solution, valid = solve_on_faces(C, torch.stack([h, alignment], dim=-1), support)  # (B, F, T, 2)
    a, e = solution[..., 0], solution[..., 1]  # C_SS^-1 h_S, C_SS^-1 alignment_S
    A = (h[:, None] * a).sum(-1)  # (B, F)
    E = (h[:, None] * e).sum(-1)
    K = (alignment[:, None] * e).sum(-1)
    discriminant = E**2 - A * (K - sqrt_phi[:, None] ** 2)
    valid &= (discriminant > 0) & (A > 0)
    valid &= ~(support[None] & ~nonzero[:, None]).any(-1)
    root = discriminant.clamp(min=1e-300).sqrt()
    # u = (lambda a - e) / sqrt(disc) with lambda = (E + sqrt(disc)) / A, the root with ||g_w|| > 0
    u = a / A.clamp(min=1e-300)[..., None] + (E[..., None] * a / A.clamp(min=1e-300)[..., None] - e) / root[..., None]
    feasible = valid & torch.isfinite(u).all(-1)
    feasible &= (u >= -FEASIBILITY_TOL * u.abs().amax(-1, keepdim=True)).all(-1)
    norm_gw = torch.einsum("bfi,bij,bfj->bf", u, C, u).clamp(min=0).sqrt()  # (B, F)
    value = (alignment[:, None] * u).sum(-1) + sqrt_phi[:, None] * norm_gw  # F, up to a positive factor
    value = torch.where(feasible, value, torch.full_like(value, torch.inf))
    best_value, best = value.min(dim=-1)  # (B,)
    u = u[torch.arange(B, device=J.device), best].clamp(min=0)  # (B, T)
    gw = (u[:, None, :] @ directions).squeeze(1)  # (B, n), along g_w
    d = g0 + sqrt_phi[:, None] * gw / gw.norm(dim=-1, keepdim=True).clamp(min=1e-300)

    at_origin = ((~nonzero).any(-1) | origin_in_hull(C)) & ~(best_value < 0)  # (B,)
    return scale * _project_at_origin(d, at_origin, g0, C, alignment, directions) / (1 + c)


def cagrad_two_tasks(jacobians: Tensor, c: float) -> Tensor:
    r"""The same solution written out for two tasks: ``(B, 2, n)`` -> ``(B, n)``, in float64.

    The simplex is the segment $w = (1 - t, t)$; its faces are the two vertices ($g_w = g_1$
    or $g_2$) and the open edge, whose stationary point the quadratic formula of
    :func:`cagrad_direction` gives with the explicit inverse of the 2 x 2 cosine Gramian
    $\begin{pmatrix} 1 & \rho \\ \rho & 1 \end{pmatrix}$.
    """
    J = jacobians.to(torch.float64)  # (B, 2, n)
    norms, directions = unit_rows(J)  # (B, 2), (B, 2, n)
    scale = norms.amax(dim=-1)  # (B,)
    scale = torch.where(scale > 0, scale, 1.0)
    v1, v2 = norms[:, 0] / scale, norms[:, 1] / scale  # relative norms, the larger is 1
    rho = (directions[:, 0] * directions[:, 1]).sum(-1)  # (B,) cosine
    g0 = (v1[:, None] * directions[:, 0] + v2[:, None] * directions[:, 1]) / 2  # (B, n)
    sqrt_phi = c * ((v1**2 + v2**2 + 2 * rho * v1 * v2) / 4).clamp(min=0).sqrt()
    a1, a2 = (v1 + rho * v2) / 2, (rho * v1 + v2) / 2  # u_i . g0

    # vertices: g_w = g_i, F = ||g_i|| (u_i . g0 + sqrt(phi))
    inf = torch.full_like(v1, torch.inf)
    F1 = torch.where(v1 > 0, v1 * (a1 + sqrt_phi), inf)
    F2 = torch.where(v2 > 0, v2 * (a2 + sqrt_phi), inf)
    # the edge, in u coordinates with h = (v_min / v1, v_min / v2)
    both = (v1 > 0) & (v2 > 0)
    v_min = torch.minimum(v1, v2)
    h1, h2 = v_min / torch.where(both, v1, 1.0), v_min / torch.where(both, v2, 1.0)
    det = torch.where(1 - rho.abs() > RANK_TOL, 1 - rho**2, 1.0)
    p1, p2 = (h1 - rho * h2) / det, (h2 - rho * h1) / det  # C^-1 h
    e1, e2 = (a1 - rho * a2) / det, (a2 - rho * a1) / det  # C^-1 (u . g0)
    A, E, K = h1 * p1 + h2 * p2, h1 * e1 + h2 * e2, a1 * e1 + a2 * e2
    discriminant = E**2 - A * (K - sqrt_phi**2)
    root = discriminant.clamp(min=1e-300).sqrt()
    safe_A = torch.where(A > 0, A, 1.0)
    u1 = p1 / safe_A + (E * p1 / safe_A - e1) / root
    u2 = p2 / safe_A + (E * p2 / safe_A - e2) / root
    size = torch.maximum(u1.abs(), u2.abs())
    edge = both & (1 - rho.abs() > RANK_TOL) & (discriminant > 0) & (A > 0)
    edge &= (u1 >= -FEASIBILITY_TOL * size) & (u2 >= -FEASIBILITY_TOL * size)
    norm_gw = (u1**2 + u2**2 + 2 * rho * u1 * u2).clamp(min=0).sqrt()
    Fe = torch.where(edge, v_min * (a1 * u1 + a2 * u2 + sqrt_phi * norm_gw), inf)  # back to the units of F1, F2

    best_value, best = torch.stack([F1, F2, Fe], dim=-1).min(dim=-1)  # (B,)
    coefficients = torch.stack([
        torch.where(best == 0, 1.0, torch.where(best == 1, 0.0, u1.clamp(min=0))),
        torch.where(best == 1, 1.0, torch.where(best == 0, 0.0, u2.clamp(min=0))),
    ], dim=-1)  # (B, 2): g_w is along coefficients . u_hat
    gw = (coefficients[:, None, :] @ directions).squeeze(1)  # (B, n)
    d = g0 + sqrt_phi[:, None] * gw / gw.norm(dim=-1, keepdim=True).clamp(min=1e-300)
    at_origin = (~both | ((1 + rho) / 2 <= HULL_TOL)) & ~(best_value < 0)
    if at_origin.any():
        C = torch.stack([torch.stack([torch.ones_like(rho), rho], -1), torch.stack([rho, torch.ones_like(rho)], -1)], -2)
        d = _project_at_origin(d, at_origin, g0, C, torch.stack([a1, a2], dim=-1), directions)
    return scale[:, None] * d / (1 + c)


def _project_at_origin(d: Tensor, at_origin: Tensor, g0: Tensor, C: Tensor, alignment: Tensor, directions: Tensor) -> Tensor:
    """Where the dual optimum is g_w = 0 (F = 0 beats every face), use g0 projected onto {J x >= 0}."""
    if not at_origin.any():
        return d
    mu = nonnegative_qp(C, alignment[..., None])[..., 0]  # (B, T)
    projection = g0 + (mu[:, None, :] @ directions).squeeze(1)  # (B, n)
    return torch.where(at_origin[:, None], projection, d)


class CAGrad(Aggregator):
    r"""Conflict-averse gradient descent, Liu et al. (NeurIPS 2021).

    $\max_d \min_i g_i \cdot d$ subject to $\|d - g_0\| \le c \|g_0\|$, with $g_0 = \frac1T
    J^\top \mathbf 1$ the mean gradient. Its dual is
    $\min_{w \in \Delta_T} F(w) = g_w \cdot g_0 + \sqrt\phi \, \|g_w\|$, $g_w = J^\top w$,
    $\phi = c^2 \|g_0\|^2$, and the primal solution is $d = g_0 + \frac{\sqrt\phi}{\|g_w\|} g_w$.
    We return $d / (1 + c)$ (one of the three rescalings in use; it makes CAGrad return $g_0$
    when all rows are equal, and $g$ for a single task). $c = 0$ is the mean.

    The dual is solved exactly by enumerating the faces of the simplex: on a support $S$ the
    stationary point has a closed form (a quadratic equation in the multiplier of
    $\sum w = 1$), derived in unit-row coordinates $u_i = \|g_i\| w_i$ so that rows scaled by
    $10^{-8}$ or $10^{8}$ are solved as accurately as rows of norm 1. When the optimum is at
    $g_w = 0$ (0 in the hull of the rows and no face below $F = 0$), the primal solutions are
    the points of the ball that conflict with no task; we return the closest to $g_0$, the
    projection of $g_0$ onto $\{x : J x \ge 0\}$.

    CAGrad is invariant to the row order and positively homogeneous ($A(sJ) = s A(J)$), but,
    unlike MGDA, it may conflict with a task when the ball holds no direction that improves all
    of them: with $g_1 = (1, 0)$, $g_2 = (-2, 0.1)$ and $c = 0.5$, $g_1 \cdot d < 0$.

    Worked example: $g_1 = (1, 0)$, $g_2 = (0, 1)$, $c = 0.5$: by symmetry $w = (\frac12, \frac12)$,
    $g_w = g_0 = (\frac12, \frac12)$, so $d = g_0 (1 + c) / (1 + c) = (0.5, 0.5)$.

    >>> CAGrad(c=0.5)(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    tensor([0.5000, 0.5000])
    """

    def __init__(self, c: float = 0.5) -> None:
        if not 0 <= c < math.inf:  # NaN fails too; c = inf would divide inf by inf
            raise ValueError(f"CAGrad's radius c must be finite and >= 0, got {c}; the paper uses 0.4-0.5")
        self.c = float(c)

    def forward(self, jacobians: Tensor) -> Tensor:
        if self.c == 0:
            return jacobians.to(torch.float64).mean(dim=1)
        if jacobians.shape[1] == 2:
            return cagrad_two_tasks(jacobians, self.c)
        return cagrad_direction(jacobians, self.c)

    def extra_repr(self) -> str:
        return f"c={self.c}"
