r"""CAGrad: the best worst-case improvement within a ball around the mean gradient (Liu et al., 2021)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl_tutorial.aggregators._solvers import (
    FEASIBILITY_TOL,
    cosine_gramian,
    faces,
    nonnegative_qp,
    origin_in_hull,
    solve_on_faces,
    unit_rows,
)
from mtl_tutorial.aggregators.base import Aggregator


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
        if not c >= 0:
            raise ValueError(f"CAGrad's radius c must be non-negative, got {c}; the paper uses 0.4-0.5")
        self.c = float(c)

    def forward(self, jacobians: Tensor) -> Tensor:
        J = jacobians.to(torch.float64)  # (B, T, n)
        g0 = J.mean(dim=1)  # (B, n)
        if self.c == 0:
            return g0
        norms, directions = unit_rows(J)  # (B, T), (B, T, n)
        B, T = norms.shape
        nonzero = norms > 0
        largest = norms.amax(dim=-1, keepdim=True)  # (B, 1)
        scale = torch.where(largest > 0, largest, torch.ones_like(largest))
        g0 = g0 / scale  # work with the largest row of norm 1; CAGrad is homogeneous
        relative = norms / scale  # (B, T) in [0, 1]
        C = cosine_gramian(directions)  # (B, T, T)
        alignment = (directions @ g0[..., None]).squeeze(-1)  # (B, T): u_i . g0
        sqrt_phi = self.c * g0.norm(dim=-1)  # (B,)
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

        # F = 0 at g_w = 0 beats every face when 0 is in the hull and no face goes below 0
        at_origin = ((~nonzero).any(-1) | origin_in_hull(C)) & ~(best_value < 0)  # (B,)
        if at_origin.any():
            mu = nonnegative_qp(C, alignment[..., None])[..., 0]  # (B, T)
            projection = g0 + (mu[:, None, :] @ directions).squeeze(1)  # g0 projected onto {J x >= 0}
            d = torch.where(at_origin[:, None], projection, d)
        return scale * d / (1 + self.c)

    def extra_repr(self) -> str:
        return f"c={self.c}"
