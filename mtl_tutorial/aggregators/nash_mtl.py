r"""Nash-MTL: the Nash bargaining solution between the tasks (Navon et al., 2022)."""

from __future__ import annotations

from numbers import Integral

import torch
from torch import Tensor

from mtl_tutorial.aggregators._solvers import HULL_TOL, cosine_gramian, origin_in_hull, unit_rows
from mtl_tutorial.aggregators.base import Aggregator


def nash_weights(C: Tensor, max_iterations: int = 100) -> Tensor:
    r"""Solve $C \beta = 1 / \beta$, $\beta > 0$, by damped Newton: ``C (B, T, T)`` -> ``beta (B, T)``.

    The equations are the stationarity conditions of the strictly convex
    $f(\beta) = \frac12 \beta^\top C \beta - \sum_i \log \beta_i$, whose Hessian is
    $C + \mathrm{diag}(1 / \beta^2)$. Each step backtracks (Armijo) from the largest step that
    keeps $\beta > 0$; it stops when every $(C\beta)_i \beta_i$ is within $10^{-12}$ of 1. A
    solution exists when 0 is not in the convex hull of the rows; callers check that first.
    """
    _check_iterations(max_iterations)
    B, T = C.shape[:2]
    beta = torch.ones(B, T, dtype=C.dtype, device=C.device)
    halvings = 0.5 ** torch.arange(40, dtype=C.dtype, device=C.device)  # (K,)
    for _ in range(max_iterations):
        gradient = (C @ beta[..., None]).squeeze(-1) - 1 / beta  # (B, T)
        if (gradient * beta).abs().max() < 1e-12:
            break
        hessian = C + torch.diag_embed(1 / beta**2)  # (B, T, T)
        step = -torch.linalg.solve_ex(hessian, gradient)[0]  # (B, T); the Hessian is positive definite
        # largest step in (0, 1] keeping beta > 0 (stop at 99% of the way to the boundary)
        ratio = torch.where(step < 0, -beta / step.clamp(max=-1e-300), torch.inf)  # (B, T)
        longest = (0.99 * ratio.amin(-1)).clamp(max=1.0)  # (B,)
        sizes = longest[:, None] * halvings  # (B, K)
        candidates = beta[:, None, :] + sizes[..., None] * step[:, None, :]  # (B, K, T)
        values = 0.5 * ((candidates @ C) * candidates).sum(-1) - candidates.log().sum(-1)  # (B, K)
        current = 0.5 * ((beta[:, None, :] @ C).squeeze(1) * beta).sum(-1) - beta.log().sum(-1)  # (B,)
        slope = (gradient * step).sum(-1)  # (B,), negative
        accept = values <= current[:, None] + 1e-4 * sizes * slope[:, None]  # (B, K)
        accept[:, -1] = True  # fall back to the smallest step
        first = accept.to(torch.int8).argmax(dim=-1)  # (B,)
        beta = candidates[torch.arange(B, device=C.device), first]
    return beta


def _check_iterations(max_iterations: int) -> None:
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, Integral) or max_iterations < 1:
        raise ValueError(f"Nash-MTL's max_iterations (Newton steps) must be an integer >= 1, got "
                         f"{max_iterations!r}; 100 is ample (it stops once converged)")


class NashMTL(Aggregator):
    r"""$d = J^\top \alpha$ with $(G \alpha)_i = 1 / \alpha_i$, $\alpha > 0$ (Navon et al., ICML 2022).

    "Multi-task learning as a bargaining game": the Nash bargaining solution maximises
    $\sum_i \log(g_i \cdot d)$ over a ball; its first-order conditions give $d = J^\top \alpha$
    with $G \alpha = 1 / \alpha$ elementwise, $G = J J^\top$. The paper solves this with a
    sequence of convex programs (cvxpy); here it is solved to machine precision by Newton's
    method (:func:`nash_weights`), or in closed form for two tasks: with $\beta_i = \alpha_i
    \|g_i\|$ the equations read $C \beta = 1/\beta$ on the cosine Gramian, whose solution for
    $T = 2$ is symmetric, $\beta_1 = \beta_2 = 1 / \sqrt{1 + \cos(g_1, g_2)}$.

    The direction is invariant to the scale of each row ($\alpha_i \propto 1/\|g_i\|$), so it
    depends only on the row directions: $d = \sum_i \beta_i u_i$. A bargain exists only when
    some direction improves every task, i.e. 0 is not in the convex hull of the gradients
    (Gordan's theorem). When it does not (two opposite gradients, say), no agreement improves on
    the disagreement point and the direction is 0. Zero rows (tasks with nothing to gain) do
    not take part. The paper's optional cap on the update norm is left to gradient clipping.

    Worked example: $g_1 = (1, 0)$, $g_2 = (0, 3)$: $\cos = 0$, $\beta = (1, 1)$, so
    $d = u_1 + u_2 = (1, 1)$ and $\alpha = (1, \frac13)$: $(G\alpha)_1 = 1 = 1/\alpha_1$,
    $(G\alpha)_2 = 9 \cdot \frac13 = 3 = 1/\alpha_2$.

    >>> NashMTL()(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))
    tensor([1., 1.])
    """

    def __init__(self, max_iterations: int = 100) -> None:
        _check_iterations(max_iterations)
        self.max_iterations = max_iterations

    def forward(self, jacobians: Tensor) -> Tensor:
        norms, directions = unit_rows(jacobians)  # (B, T), (B, T, n)
        nonzero = norms > 0
        C = cosine_gramian(directions)  # (B, T, T); zero rows decouple with beta_i = 1
        T = C.shape[1]
        if T == 2:
            cosine = C[:, 0, 1]  # (B,)
            # the hull of u_1, u_2 is a segment whose closest point to 0 is at squared distance (1 + cos) / 2
            agreement = (1 + cosine) / 2 > HULL_TOL
            beta = (1 / (1 + cosine).clamp(min=HULL_TOL).sqrt())[:, None].expand(-1, 2)  # (B, 2)
        else:
            agreement = ~origin_in_hull(C)
            eye = torch.eye(T, dtype=C.dtype, device=C.device)
            beta = nash_weights(torch.where(agreement[:, None, None], C, eye), self.max_iterations)
        d = (beta[:, None, :] @ directions).squeeze(1)  # (B, n): zero rows have zero directions
        return torch.where(agreement[:, None] & nonzero.any(-1, keepdim=True), d, torch.zeros_like(d))

    def extra_repr(self) -> str:
        return f"max_iterations={self.max_iterations}"
