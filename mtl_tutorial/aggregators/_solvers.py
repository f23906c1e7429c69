r"""Exact solvers for the small problems that aggregators pose on the Gramian.

Every problem here lives in "unit-row coordinates". Write each task gradient as
$g_i = \|g_i\|\,\hat u_i$ with $\hat u_i$ a unit vector, and let $C = \hat U \hat U^\top$ be the
cosine Gramian (ones on the diagonal, entries in $[-1, 1]$). Gradients whose norms differ by twenty
orders of magnitude then give a matrix whose entries are all of order one, and the norms enter only
through vectors of weights. This is what keeps the answers right on rows scaled from $10^{-10}$
to $10^{10}$ (a Gramian $G = J J^\top$ of such rows has entries from $10^{-20}$ to $10^{20}$,
where a linear solve loses the small rows entirely).

The problems are solved exactly by enumerating the faces of the feasible set: for a convex
problem the optimum lies in the relative interior of some face (a support set $S$), where it is
the stationary point of the problem restricted to the affine hull of $S$, i.e. the solution of a
small linear system. Solving that system for all $2^T - 1$ supports at once (a batched
``torch.linalg.solve``) and keeping the feasible candidate with the smallest objective gives the
optimum, with no iterations, no step sizes and no tolerance on convergence. The same input
always gives the same answer. The cost grows as $2^T$, which is fine up to
:data:`MAX_TASKS` tasks (4,095 systems of size 13).

Why not a solver package? ``quadprog`` (Goldfarb–Idnani) needs a strictly positive definite
matrix and so cannot take the singular Gramians of duplicated or rank-one Jacobians without a
regularisation that changes the answer; ``qpsolvers`` back-ends are iterative and stop at a
tolerance. Face enumeration handles singular matrices, is exact, batches over many Jacobians
(the toy problem solves thousands per second) and needs no dependency.
"""

from __future__ import annotations

from functools import cache

import torch
from torch import Tensor

MAX_TASKS = 12
"""Face enumeration solves 2^T - 1 small systems; beyond 12 tasks that becomes slow."""

FEASIBILITY_TOL = 1e-9
"""How negative a weight may come out of a solve and still count as zero (rounding)."""

RANK_TOL = 1e-10
"""Smallest eigenvalue of a cosine Gramian block below which its rows count as dependent."""


def unit_rows(jacobians: Tensor) -> tuple[Tensor, Tensor]:
    r"""Split each row into its norm and its direction, in float64.

    ``jacobians (B, T, n)`` -> ``norms (B, T)``, ``directions (B, T, n)``; a zero row gets
    norm 0 and direction 0.
    """
    J = jacobians.to(torch.float64)  # (B, T, n)
    if jacobians.dtype == torch.float64:
        # scale each row by its largest entry first, so that squaring cannot overflow (1e200^2)
        peak = J.abs().amax(dim=-1, keepdim=True)  # (B, T, 1)
        J = J / torch.where(peak > 0, peak, 1.0)
        norms = J.norm(dim=-1)  # (B, T)
        directions = J / torch.where(norms > 0, norms, 1.0)[..., None]
        return norms * peak.squeeze(-1), directions
    # float32 or narrower: squares of its values are well inside float64's range
    norms = J.norm(dim=-1)  # (B, T)
    return norms, J / torch.where(norms > 0, norms, 1.0)[..., None]  # (B, T), (B, T, n)


def cosine_gramian(directions: Tensor) -> Tensor:
    r"""$C = \hat U \hat U^\top$ ``(B, T, T)``, with a 1 on the diagonal of zero rows too.

    The 1 makes a zero row behave as a unit vector orthogonal to all others, which keeps $C$
    invertible on those rows; the solvers give them zero weight separately.
    """
    C = directions @ directions.mT  # (B, T, T)
    C.diagonal(dim1=-2, dim2=-1).fill_(1.0)  # also removes rounding (1 - 1e-16) on the others
    return C


@cache
def _faces_cpu(num_tasks: int, include_empty: bool) -> Tensor:
    codes = torch.arange(0 if include_empty else 1, 2**num_tasks)  # (F,)
    bits = 2 ** torch.arange(num_tasks)  # (T,)
    return (codes[:, None] & bits) > 0  # (F, T) bool


def faces(num_tasks: int, device: torch.device, include_empty: bool = False) -> Tensor:
    """All supports ``S ⊆ {0..T-1}`` as a boolean ``(F, T)`` table, F = 2^T - 1 (or 2^T)."""
    if num_tasks > MAX_TASKS:
        raise ValueError(
            f"the exact solver enumerates 2^T faces and supports at most {MAX_TASKS} tasks, got "
            f"{num_tasks}; group tasks, or use an aggregator without a QP (mean, pcgrad, graddrop)"
        )
    return _faces_cpu(num_tasks, include_empty).to(device)


def restrict(C: Tensor, support: Tensor) -> Tensor:
    """``C (B, T, T)``, ``support (F, T)`` -> ``(B, F, T, T)``: C on S x S, the identity elsewhere."""
    s = support.to(C.dtype)  # (F, T)
    inside = s[:, :, None] * s[:, None, :]  # (F, T, T)
    eye = torch.eye(C.shape[-1], dtype=C.dtype, device=C.device)
    return C[:, None] * inside + eye * (1 - s)[:, :, None]  # (B, F, T, T)


def solve_on_faces(C: Tensor, rhs: Tensor, support: Tensor) -> tuple[Tensor, Tensor]:
    """Solve ``C_SS x_S = rhs_S`` (``x = 0`` off S) on every support, skipping dependent rows.

    ``C (B, T, T)``, ``rhs (B, T, K)``, ``support (F, T)`` -> ``x (B, F, T, K)`` and
    ``valid (B, F)``: the rows of S are linearly independent (smallest eigenvalue of
    ``C_SS`` above :data:`RANK_TOL`). Two tasks use the explicit 2 x 2 inverse.
    """
    s = support.to(C.dtype)  # (F, T)
    masked = rhs[:, None] * s[None, :, :, None]  # (B, F, T, K)
    if C.shape[1] <= 2:
        if C.shape[1] == 1:  # C = [1]
            return masked, torch.ones(masked.shape[:2], dtype=torch.bool, device=C.device)
        off = C[:, 0, 1, None] * (s[:, 0] * s[:, 1])  # (B, F): the off-diagonal of C_SS
        det = 1 - off**2  # (B, F)
        valid = 1 - off.abs() > RANK_TOL  # the eigenvalues of [[1, off], [off, 1]] are 1 +- off
        r0, r1 = masked[:, :, 0], masked[:, :, 1]  # (B, F, K)
        safe = torch.where(valid, det, 1.0)[..., None]
        x = torch.stack([(r0 - off[..., None] * r1) / safe, (r1 - off[..., None] * r0) / safe], dim=2)
        return x, valid  # (B, F, T, K)
    blocks = restrict(C, support)  # (B, F, T, T)
    x, info = torch.linalg.solve_ex(blocks, masked)  # (B, F, T, K)
    valid = (info == 0) & (torch.linalg.eigvalsh(blocks)[..., 0] > RANK_TOL)
    return x * s[None, :, :, None], valid


def min_norm_point(C: Tensor, h: Tensor) -> Tensor:
    r"""$u^* = \arg\min_u u^\top C u$ s.t. $h^\top u = 1$, $u \ge 0$ (the MGDA problem).

    With $u_i = \|g_i\| w_i$ and $h_i = 1/\|g_i\|$ this is $\min_{w \in \Delta} \|J^\top w\|^2$.
    ``C (B, T, T)`` a cosine Gramian, ``h (B, T)`` positive -> ``u (B, T)``.

    On a support $S$ the KKT conditions are the bordered system
    $\begin{pmatrix} C_{SS} & h_S \\ h_S^\top & 0 \end{pmatrix}
    \begin{pmatrix} u_S \\ -\mu \end{pmatrix} = \begin{pmatrix} 0 \\ 1 \end{pmatrix}$, which is
    invertible whenever the rows of $S$ are affinely independent (two opposite rows included, the
    case where the minimum norm is 0), and an optimal support of that kind always exists.
    """
    B, T = h.shape
    support = faces(T, C.device)  # (F, T)
    s = support.to(C.dtype)
    scale = h.amax(dim=-1, keepdim=True)  # (B, 1); h / scale <= 1 equilibrates the border
    border = (h / scale)[:, None, :] * s  # (B, F, T)
    F = support.shape[0]
    M = torch.zeros(B, F, T + 1, T + 1, dtype=C.dtype, device=C.device)
    M[..., :T, :T] = restrict(C, support)
    M[..., :T, T] = border
    M[..., T, :T] = border
    rhs = torch.zeros(B, F, T + 1, dtype=C.dtype, device=C.device)
    rhs[..., T] = 1.0
    solution, info = torch.linalg.solve_ex(M, rhs)  # (B, F, T + 1)
    u = solution[..., :T] * s  # (B, F, T), on (h / scale)^T u = 1; rescaled at the end
    # u_i is row i's share of d = sum_i u_i u_hat_i, the scale on which "negative" is judged
    # (the weights w_i = h_i u_i of rows of very different norms differ by orders of magnitude)
    feasible = (info == 0) & torch.isfinite(u).all(-1) & (u >= -FEASIBILITY_TOL * u.abs().amax(-1, keepdim=True)).all(-1)
    objective = torch.einsum("bfi,bij,bfj->bf", u, C, u)  # (B, F)
    objective = torch.where(feasible, objective, torch.full_like(objective, torch.inf))
    best = objective.argmin(dim=-1)  # (B,)
    u = u[torch.arange(B, device=C.device), best].clamp(min=0)  # (B, T)
    return u / (h * u).sum(-1, keepdim=True)  # exactly on h^T u = 1


def nonnegative_qp(C: Tensor, Q: Tensor) -> Tensor:
    r"""$\mu^*_k = \arg\min_{\mu \ge 0} \tfrac12 \mu^\top C \mu + q_k^\top \mu$ for each column $q_k$.

    ``C (B, T, T)`` a cosine Gramian, ``Q (B, T, K)`` -> ``M (B, T, K)``. With
    $q_k = \hat U v$ this is the dual of projecting $v$ onto the cone $\{x : \hat U x \ge 0\}$:
    the projection is $v + \hat U^\top \mu^*$.

    The objective depends on $\mu$ only through $\hat U^\top \mu$, so an optimal support with
    linearly independent rows always exists; supports without that property are skipped, which
    keeps every candidate bounded. The empty support ($\mu = 0$) is always a candidate.
    """
    B, T = C.shape[:2]
    support = faces(T, C.device, include_empty=True)  # (F, T)
    mu, valid = solve_on_faces(C, -Q, support)  # (B, F, T, K), (B, F)
    feasible = valid[..., None] & torch.isfinite(mu).all(-2) & (mu >= -FEASIBILITY_TOL).all(-2)  # (B, F, K)
    objective = 0.5 * torch.einsum("bfik,bij,bfjk->bfk", mu, C, mu) + (Q[:, None] * mu).sum(-2)  # (B, F, K)
    objective = torch.where(feasible, objective, torch.full_like(objective, torch.inf))
    best = objective.argmin(dim=1)  # (B, K)
    index = best[:, None, None, :].expand(B, 1, T, Q.shape[-1])  # (B, 1, T, K)
    return mu.gather(1, index).squeeze(1).clamp(min=0)  # (B, T, K)


HULL_TOL = 1e-12
"""Squared distance from 0 to the hull of the unit rows below which 0 counts as in the hull."""


def origin_in_hull(C: Tensor) -> Tensor:
    r"""Whether 0 is in the convex hull of the unit rows behind the cosine Gramian ``C (B, T, T)``.

    True exactly when no direction improves every task (Gordan's theorem): the point is
    Pareto-stationary. Rows scaled by positive factors have the same answer, so the test runs
    on unit rows, where the tolerance :data:`HULL_TOL` has a fixed meaning. The unit diagonal
    that :func:`cosine_gramian` gives zero rows makes them orthogonal to everything, which
    leaves the answer unchanged.
    """
    if C.shape[1] == 1:
        return torch.zeros(C.shape[0], dtype=torch.bool, device=C.device)
    if C.shape[1] == 2:  # the closest point of the segment [u_1, u_2] is its midpoint
        return (1 + C[:, 0, 1]) / 2 <= HULL_TOL
    u = min_norm_point(C, torch.ones(C.shape[:2], dtype=C.dtype, device=C.device))  # (B, T)
    return torch.einsum("bi,bij,bj->b", u, C, u) <= HULL_TOL  # (B,)
