r"""The two-task toy problem of the CAGrad paper (Liu et al., NeurIPS 2021), used again by Nash-MTL.

$x = (x_1, x_2) \in \mathbb R^2$ plays the shared parameters; the two losses are built so that
plain averaging of the gradients crawls along a valley, and the trade-off between the tasks is
visible in the plane. With $\varepsilon = 5 \cdot 10^{-6}$:

$f_1 = \log\max(|0.5(-x_1 - 7) - \tanh(-x_2)|, \varepsilon) + 6$,
$f_2 = \log\max(|0.5(-x_1 + 3) + \tanh(-x_2) + 2|, \varepsilon) + 6$,
$g_1 = ((-x_1 + 7)^2 + 0.1(-x_2 - 8)^2) / 10 - 20$,
$g_2 = ((-x_1 - 7)^2 + 0.1(-x_2 - 8)^2) / 10 - 20$,
$c_1 = \max(\tanh(x_2 / 2), 0)$, $c_2 = \max(\tanh(-x_2 / 2), 0)$,
$L_1 = c_1 f_1 + c_2 g_1$, $L_2 = c_1 f_2 + c_2 g_2$.

The Pareto set is an arc near $x_2 \approx -8.36$ for $x_1 \in [-7, 7]$ (:func:`pareto_set`); the
minimum of the average loss is at $(0, -8.3552)$. The paper runs Adam (lr $10^{-3}$) for
100,000 steps from $(-8.5, 7.5)$, $(-8.5, -5)$ and $(9, 9)$, with CAGrad's $c = 0.5$.

:func:`run_toy_many` runs many methods from many starts at once: one tensor holds every
(method, start) pair, the losses and the Jacobian are computed for all of them together, each
aggregator is called once per step on its stack of Jacobians (:meth:`Aggregator.batch`), and
one Adam (elementwise, so the pairs stay independent) updates them all.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import zlib
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from mtl_tutorial.aggregators import AGGREGATORS, make_aggregator
from mtl_tutorial.weightings import WEIGHTINGS, make_weighting

EPSILON = 5e-6
PAPER_STARTS = ((-8.5, 7.5), (-8.5, -5.0), (9.0, 9.0))
"""The three starting points of the CAGrad paper's figure."""
AVERAGE_OPTIMUM = (0.0, -8.3552)
"""The minimum of (L_1 + L_2) / 2."""
LOSS_OFFSET = 21.0
"""Added to the losses a *weighting* sees. The toy losses go down to -20, and uncertainty
weighting, DWA and GradNorm work with logs or ratios of losses, which need positive values; a
constant changes no gradient of the losses themselves. Aggregators see the plain gradients."""
TOY_OPTIONS: dict[str, dict] = {
    "static": {"weights": [0.5, 0.5]},  # equal weights written as static ones
    "dwa": {"steps_per_epoch": 100},  # an "epoch" of 100 steps: 1,000 epochs in the paper's run
    "gradnorm": {"alpha": 0.12},  # the paper's value for its synthetic problem
}
"""Options each weighting needs on the toy, unless ``options`` says otherwise."""


def toy_losses(x: Tensor) -> Tensor:
    """``x (..., 2)`` -> the two task losses ``(..., 2)``, differentiable."""
    x1, x2 = x[..., 0], x[..., 1]
    f1 = torch.clamp((0.5 * (-x1 - 7) - torch.tanh(-x2)).abs(), min=EPSILON).log() + 6
    f2 = torch.clamp((0.5 * (-x1 + 3) + torch.tanh(-x2) + 2).abs(), min=EPSILON).log() + 6
    g1 = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    g2 = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    c1 = torch.clamp(torch.tanh(x2 / 2), min=0)
    c2 = torch.clamp(torch.tanh(-x2 / 2), min=0)
    return torch.stack([c1 * f1 + c2 * g1, c1 * f2 + c2 * g2], dim=-1)  # (..., 2)


def toy_jacobian(x: Tensor) -> tuple[Tensor, Tensor]:
    """``x (..., 2)`` -> losses ``(..., 2)`` and Jacobians ``(..., 2 tasks, 2 coordinates)``.

    The derivatives of :func:`toy_losses` written out (the tests check them against autograd):
    a backward pass per step would cost more than every aggregator together.
    """
    x1, x2 = x[..., 0], x[..., 1]
    t = torch.tanh(-x2)
    dt = -(1 - t**2)  # d tanh(-x2) / dx2
    u1 = 0.5 * (-x1 - 7) - t
    u2 = 0.5 * (-x1 + 3) + t + 2
    f1 = torch.clamp(u1.abs(), min=EPSILON).log() + 6
    f2 = torch.clamp(u2.abs(), min=EPSILON).log() + 6
    df1 = torch.where(u1.abs() >= EPSILON, 1 / u1, 0.0)  # d f1 / d u1 (0 where the clamp is active)
    df2 = torch.where(u2.abs() >= EPSILON, 1 / u2, 0.0)
    square = 0.1 * (x2 + 8) ** 2
    g1 = ((7 - x1) ** 2 + square) / 10 - 20
    g2 = ((x1 + 7) ** 2 + square) / 10 - 20
    dg_x2 = 0.02 * (x2 + 8)
    h = torch.tanh(x2 / 2)
    dh = 0.5 * (1 - h**2)
    c1, c2 = h.clamp(min=0), (-h).clamp(min=0)
    dc1, dc2 = torch.where(h >= 0, dh, 0.0), torch.where(h <= 0, -dh, 0.0)  # as torch.clamp, at 0 too
    losses = torch.stack([c1 * f1 + c2 * g1, c1 * f2 + c2 * g2], dim=-1)  # (..., 2)
    J = torch.stack([
        torch.stack([c1 * df1 * -0.5 + c2 * (x1 - 7) / 5, dc1 * f1 + c1 * df1 * -dt + dc2 * g1 + c2 * dg_x2], dim=-1),
        torch.stack([c1 * df2 * -0.5 + c2 * (x1 + 7) / 5, dc2 * g2 + dc1 * f2 + c1 * df2 * dt + c2 * dg_x2], dim=-1),
    ], dim=-2)  # (..., 2 tasks, 2 coordinates)
    return losses, J


def pareto_set(num_points: int = 201, dtype: torch.dtype = torch.float64) -> Tensor:
    r"""Points of the Pareto set ``(num_points, 2)``, for $x_1$ from -7 to 7.

    Below $x_2 = 0$ only the $g$ terms count, and a point is Pareto-stationary when
    $\lambda \nabla L_1 + (1 - \lambda) \nabla L_2 = 0$ for some $\lambda \in [0, 1]$. The first
    coordinate gives $\lambda = (x_1 + 7) / 14$, and then the second reads
    $\frac{d}{dx_2}\big[c_2(x_2) (A + 0.01 (x_2 + 8)^2 - 20)\big] = 0$ with
    $A = (49 - x_1^2) / 10$, solved here by bisection on $[-9, -8]$.
    """
    x1 = torch.linspace(-7, 7, num_points, dtype=dtype)
    A = (49 - x1**2) / 10

    def slope(x2: Tensor) -> Tensor:
        c2 = torch.tanh(-x2 / 2)
        return -0.5 * (1 - c2**2) * (A + 0.01 * (x2 + 8) ** 2 - 20) + c2 * 0.02 * (x2 + 8)

    low, high = torch.full_like(x1, -9.0), torch.full_like(x1, -8.0)  # slope < 0 at -9, > 0 at -8
    for _ in range(60):
        middle = (low + high) / 2
        negative = slope(middle) < 0
        low, high = torch.where(negative, middle, low), torch.where(negative, high, middle)
    return torch.stack([x1, (low + high) / 2], dim=-1)


def pareto_distance(x: Tensor) -> Tensor:
    """Euclidean distance from points ``(..., 2)`` to the Pareto set (to within 0.004): ``(...)``."""
    curve = pareto_set(2001, dtype=torch.float64)  # spacing 0.007
    return torch.cdist(x.reshape(-1, 2).double(), curve).amin(-1).reshape(x.shape[:-1])


def run_toy(method: str, start: Sequence[float] | Tensor, steps: int, lr: float = 1e-3, **options) -> Tensor:
    """The trajectory ``(steps + 1, 2)`` of Adam on ``method``'s update from ``start``.

    ``method`` is any aggregator or weighting name; ``options`` go to its constructor (e.g.
    ``run_toy("cagrad", (-8.5, 7.5), 100_000, c=0.4)``).
    """
    starts = torch.as_tensor(start, dtype=torch.float64).reshape(1, 2)
    return run_toy_many([method], starts, steps, lr, options={method: options})[method][:, 0]


def run_toy_many(
    methods: Sequence[str],
    starts: Sequence[Sequence[float]] | Tensor = PAPER_STARTS,
    steps: int = 100_000,
    lr: float = 1e-3,
    options: Mapping[str, dict] | None = None,
    seed: int = 0,
    processes: int = 1,
) -> dict[str, Tensor]:
    r"""Trajectories ``{method: (steps + 1, S, 2)}`` of every method from every start, in float64.

    An aggregator's update is ``aggregator(J)`` on the plain task Jacobian. A weighting's
    update is the gradient of its objective, $\sum_t w_t \nabla L_t$ (the weighting sees the
    losses plus :data:`LOSS_OFFSET`, and its own parameters train with Adam at the same ``lr``).
    Randomised methods draw from generators seeded with ``seed`` and the method's name (and
    the start, for a weighting), so a result does not depend on which methods run alongside. ``processes > 1`` splits
    the methods over that many worker processes (one thread each; they are *spawned*, so a
    script that calls this must do so under ``if __name__ == "__main__":``).
    """
    unknown = [m for m in methods if m not in AGGREGATORS and m not in WEIGHTINGS]
    if unknown:
        raise KeyError(
            f"unknown toy method(s) {unknown}; valid methods are the aggregators "
            f"{', '.join(AGGREGATORS)} and the weightings {', '.join(WEIGHTINGS)}"
        )
    starts = torch.as_tensor(starts, dtype=torch.float64).reshape(-1, 2)  # (S, 2)
    options = dict(options or {})
    if processes > 1 and len(methods) > 1:
        return _run_in_processes(list(methods), starts, steps, lr, options, seed, processes)

    M, S = len(methods), starts.shape[0]
    x = torch.nn.Parameter(starts.expand(M, S, 2).clone())  # (M, S, 2): every (method, start) pair
    optimizer = torch.optim.Adam([x], lr=lr)
    def generator(*key: object) -> torch.Generator:
        return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(repr(key).encode()))

    aggregators = {i: make_aggregator(m, **options.get(m, {})) for i, m in enumerate(methods) if m in AGGREGATORS}
    generators = {i: generator(methods[i]) for i in aggregators}
    weightings = {}
    for i, m in enumerate(methods):
        if m in WEIGHTINGS:
            kwargs = {**TOY_OPTIONS.get(m, {}), **options.get(m, {})}
            if m == "gradnorm":
                kwargs["shared_parameters"] = [x]  # its "last shared layer" is x itself
            weightings[i] = [
                make_weighting(m, 2, **({"generator": generator(m, s), **kwargs} if m == "rlw" else kwargs))
                for s in range(S)
            ]
    weighting_parameters = [p for group in weightings.values() for w in group for p in w.parameters()]
    weighting_optimizer = torch.optim.Adam(weighting_parameters, lr=lr) if weighting_parameters else None

    trajectory = torch.empty(steps + 1, M, S, 2, dtype=torch.float64)
    trajectory[0] = x.detach()
    for step in range(steps):
        losses, J = toy_jacobian(x.detach())  # (M, S, 2), (M, S, 2, 2), constants
        direction = torch.empty_like(x)  # (M, S, 2)
        with torch.no_grad():
            for i, aggregator in aggregators.items():
                direction[i] = aggregator.batch(J[i], generator=generators[i])
        if weightings:
            # the losses as a function of x with the right value and gradient at x, so that a
            # weighting (GradNorm included) sees real gradients without a second pass of toy_losses
            seen = losses + (J @ (x - x.detach())[..., None]).squeeze(-1) + LOSS_OFFSET  # (M, S, 2)
            objective = sum(w(seen[i, s]) for i, group in weightings.items() for s, w in enumerate(group))
            # as in train_step: the update is sum_t (dObjective / dL_t) grad L_t; the weighting's
            # own parameters get the objective's gradient
            grads = torch.autograd.grad(objective, [seen, *weighting_parameters], allow_unused=True)
            for i in weightings:
                direction[i] = (grads[0][i, :, :, None] * J[i]).sum(-2)  # (S, 2)
            if weighting_optimizer is not None:
                for p, g in zip(weighting_parameters, grads[1:]):
                    p.grad = g
                weighting_optimizer.step()
        x.grad = direction
        optimizer.step()
        trajectory[step + 1] = x.detach()
    return {m: trajectory[:, i] for i, m in enumerate(methods)}


def _run_group(methods, starts, steps, lr, options, seed):
    torch.set_num_threads(1)
    return run_toy_many(methods, starts, steps, lr, options, seed, processes=1)


def _run_in_processes(methods, starts, steps, lr, options, seed, processes):
    # weightings cost more per step (one module call per start): deal them out first
    ordered = sorted(methods, key=lambda m: m in AGGREGATORS)
    groups = [ordered[k::processes] for k in range(processes)]
    context = multiprocessing.get_context("spawn")  # no fork of a process that already runs torch threads
    with concurrent.futures.ProcessPoolExecutor(len(groups), mp_context=context) as pool:
        futures = [pool.submit(_run_group, g, starts, steps, lr, options, seed) for g in groups if g]
        results = {}
        for future in futures:
            results.update(future.result())
    return {m: results[m] for m in methods}
