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

Two runners of the same methods. :func:`run_toy` is the definition: one method from one start, its
module driven as a trainer drives it (``torch.optim.Adam``; autograd through a weighting's
objective). :func:`run_toy_many` is the fast equivalent for many methods from many starts, which
the tests check against it. There, on a few dozen numbers, a step costs the Python overhead of
its tensor operations, so it is written to need few of them: one tensor holds every
(method, start) pair and one Adam update, written out, moves them all; the Jacobians come in
closed form from :func:`toy_jacobian`; each aggregator is called once per step on its stack of
Jacobians (:meth:`Aggregator.batch`); and each learned weighting's update is its module's
equations written out for all starts at once (:mod:`mtl_tutorial.studies.toy_batched`), with no
module call and no autograd. :mod:`mtl_tutorial.studies.toy_record` runs the paper's setting on several
processes, records it for the book, and times it.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from mtl_tutorial.aggregators import AGGREGATORS, make_aggregator
from mtl_tutorial.studies.toy_batched import ElementwiseAdam, batched_weighting
from mtl_tutorial.weightings import WEIGHTINGS, Equal, Static, make_weighting

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
    a backward pass per step would cost more than every aggregator together. The toy calls
    this 100,000 times on a few dozen numbers, where an operation costs its Python overhead,
    so it is written with method calls and in-place updates (``x1.neg().add_(7)`` for
    ``7 - x1``); the arithmetic, and so every bit of the result, is that of the formulas.
    """
    x1, x2 = x.unbind(-1)
    t = x2.neg().tanh_()  # tanh(-x2)
    s = t.square().neg_().add_(1)  # 1 - tanh(-x2)^2 = -d tanh(-x2) / dx2
    u1 = x1.neg().sub_(7).mul_(0.5).sub_(t)  # 0.5 (-x1 - 7) - tanh(-x2)
    u2 = x1.neg().add_(3).mul_(0.5).add_(t).add_(2)  # 0.5 (-x1 + 3) + tanh(-x2) + 2
    a1, a2 = u1.abs(), u2.abs()
    f1 = a1.clamp_min(EPSILON).log_().add_(6)
    f2 = a2.clamp_min(EPSILON).log_().add_(6)
    df1 = torch.where(a1 >= EPSILON, u1.reciprocal(), 0.0)  # d f1 / d u1 (0 where the clamp is active)
    df2 = torch.where(a2 >= EPSILON, u2.reciprocal(), 0.0)
    shifted = x2.add(8)  # x2 + 8
    square = shifted.square().mul_(0.1)  # 0.1 (x2 + 8)^2
    g1 = x1.neg().add_(7).square_().add_(square).div_(10).sub_(20)  # ((7 - x1)^2 + square) / 10 - 20
    g2 = x1.add(7).square_().add_(square).div_(10).sub_(20)  # ((x1 + 7)^2 + square) / 10 - 20
    dg_x2 = shifted.mul_(0.02)  # d g1 / dx2 = d g2 / dx2 = 0.02 (x2 + 8)
    h = x2.div(2).tanh_()
    dh = h.square().neg_().add_(1).mul_(0.5)  # d tanh(x2 / 2) / dx2
    c1, c2 = h.clamp_min(0), h.neg().clamp_min_(0)
    dc1, dc2 = torch.where(h >= 0, dh, 0.0), torch.where(h <= 0, dh.neg(), 0.0)  # as torch.clamp, at 0 too
    p1, p2 = c1 * df1, c1 * df2  # c1 f1' and c1 f2'
    c2_dg = c2 * dg_x2
    losses = torch.stack([c1 * f1 + c2 * g1, c1 * f2 + c2 * g2], dim=-1)  # (..., 2)
    J = torch.stack([
        (p1 * -0.5).add_((c2 * x1.sub(7)).div_(5)),  # dL1/dx1 = -0.5 c1 f1' + c2 (x1 - 7) / 5
        (dc1 * f1).add_(p1 * s).add_(dc2 * g1).add_(c2_dg),  # dL1/dx2
        (p2 * -0.5).add_((c2 * x1.add(7)).div_(5)),  # dL2/dx1
        (dc2 * g2).add_(dc1 * f2).sub_(p2 * s).add_(c2_dg),  # dL2/dx2
    ], dim=-1).unflatten(-1, (2, 2))  # (..., 2 tasks, 2 coordinates)
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


def run_toy(method: str, start: Sequence[float] | Tensor, steps: int, lr: float = 1e-3, seed: int = 0,
            **options) -> Tensor:
    r"""The trajectory ``(steps + 1, 2)`` of Adam on ``method``'s update from ``start``, in float64.

    ``method`` is any aggregator or weighting name; ``options`` go to its constructor (e.g.
    ``run_toy("cagrad", (-8.5, 7.5), 100_000, c=0.4)``). An aggregator's update is
    ``aggregator(J)`` on the task Jacobian. A weighting's update is the gradient of its
    objective, $\sum_t w_t \nabla L_t$, by ``backward()``, and its own parameters train in the
    same Adam; it sees the losses plus :data:`LOSS_OFFSET`, and GradNorm's "last shared layer"
    is $x$ itself. Randomised methods draw from a generator seeded with ``seed`` and the
    method's name (and the start, for a weighting).
    """
    _check_methods([method])
    start = torch.as_tensor(start, dtype=torch.float64).reshape(2)
    x = torch.nn.Parameter(start.clone())
    if method in AGGREGATORS:
        aggregator, generator = make_aggregator(method, **options), _generator(seed, method)
        parameters = [x]
    else:
        kwargs = {**TOY_OPTIONS.get(method, {}), **options}
        if method == "gradnorm":
            kwargs["shared_parameters"] = [x]
        if method == "rlw":
            kwargs["generator"] = _generator(seed, method, *start.tolist())
        weighting = make_weighting(method, 2, **kwargs)
        parameters = [x, *weighting.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=lr)
    trajectory = torch.empty(steps + 1, 2, dtype=torch.float64)
    trajectory[0] = start
    for step in range(steps):
        optimizer.zero_grad()
        if method in AGGREGATORS:
            _, J = toy_jacobian(x.detach())  # (T=2, n=2)
            x.grad = aggregator(J, generator=generator)
        else:
            weighting(toy_losses(x) + LOSS_OFFSET).backward()
        optimizer.step()
        trajectory[step + 1] = x.detach()
    return trajectory


def run_toy_many(
    methods: Sequence[str],
    starts: Sequence[Sequence[float]] | Tensor = PAPER_STARTS,
    steps: int = 100_000,
    lr: float = 1e-3,
    options: Mapping[str, dict] | None = None,
    seed: int = 0,
) -> dict[str, Tensor]:
    r"""Trajectories ``{method: (steps + 1, S, 2)}`` of every method from every start, in float64.

    The runs of :func:`run_toy`, all at once: each step makes one call of :func:`toy_jacobian`
    for all (method, start) pairs, one ``aggregator.batch`` call per aggregator on its ``S``
    Jacobians, one call per learned weighting of its batched stand-in
    (:mod:`mtl_tutorial.studies.toy_batched`) for the weights ``(S, T)``, one product $w^\top J$ for all
    the weightings, and one Adam update of the ``(M, S, 2)`` tensor of positions.
    Randomised aggregators draw for all starts at once, so only a single-start run of one is
    the run of :func:`run_toy`; no run depends on the methods beside it.
    """
    _check_methods(methods)
    starts = torch.as_tensor(starts, dtype=torch.float64).reshape(-1, 2)  # (S, 2)
    S, options = starts.shape[0], dict(options or {})
    aggregated = [m for m in methods if m in AGGREGATORS]
    weighted = [m for m in methods if m in WEIGHTINGS]
    fixed = [m for m in weighted if issubclass(WEIGHTINGS[m], (Equal, Static))]  # weights that never change
    learned = [m for m in weighted if m not in fixed]
    order = [*aggregated, *fixed, *learned]  # the rows of x
    aggregators = [(make_aggregator(m, **options.get(m, {})), _generator(seed, m)) for m in aggregated]
    modules = {m: _make_toy_weighting(m, options.get(m, {})) for m in weighted}
    updates = [batched_weighting(modules[m], S, lr, [_generator(seed, m, *s) for s in starts.tolist()]) for m in learned]
    fixed_weights = torch.stack([modules[m].weights.double().expand(S, -1) for m in fixed]) if fixed else None  # (F, S, T)

    A, W = len(aggregated), len(aggregated) + len(fixed)  # rows A.. are weightings, rows W.. learned ones
    x = starts.expand(len(order), -1, -1).clone()  # (M, S, 2): every (method, start) pair
    adam = ElementwiseAdam(x, lr)  # elementwise, so the pairs stay independent
    trajectory = torch.empty(steps + 1, *x.shape, dtype=torch.float64)  # (steps + 1, M, S, 2)
    trajectory[0] = x
    with torch.inference_mode():  # no autograd bookkeeping: a quarter less time per operation
        for step in range(steps):
            losses, J = toy_jacobian(x)  # (M, S, T), (M, S, T, n)
            rows = J.unbind(0)  # M views (S, T, n): one operation instead of one per method
            parts = []
            if aggregators:
                parts.append(torch.stack([a.batch(rows[k], generator=g) for k, (a, g) in enumerate(aggregators)]))  # (A, S, n)
            if weighted:
                weights = [fixed_weights] if fixed else []  # (F, S, T)
                if learned:
                    seen = losses[W:].add(LOSS_OFFSET).unbind(0)  # L views (S, T): the losses a weighting sees
                    weights.append(torch.stack([u(seen[k], rows[W + k]) for k, u in enumerate(updates)]))  # (L, S, T)
                weights = torch.cat(weights) if len(weights) > 1 else weights[0]  # (F + L, S, T)
                parts.append((weights[..., None] * J[A:]).sum(-2))  # (F + L, S, n): sum_t w_t g_t
            adam.step(torch.cat(parts) if len(parts) > 1 else parts[0])  # (M, S, n)
            trajectory[step + 1] = x
    return {m: trajectory[:, order.index(m)] for m in methods}


def _check_methods(methods: Sequence[str]) -> None:
    unknown = [m for m in methods if m not in AGGREGATORS and m not in WEIGHTINGS]
    if unknown:
        raise KeyError(
            f"unknown toy method(s) {unknown}; valid methods are the aggregators "
            f"{', '.join(AGGREGATORS)} and the weightings {', '.join(WEIGHTINGS)}"
        )
    if len(set(methods)) != len(methods):
        raise ValueError(f"each method may appear once, got {list(methods)}")


def _generator(seed: int, *key: object) -> torch.Generator:
    """A generator of its own for each method (and start): ``seed`` and the key's checksum."""
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(repr(key).encode()))


def _make_toy_weighting(method: str, options: dict):
    """The module, with :data:`TOY_OPTIONS`; GradNorm gets a stand-in for x (the batched runner reads only its options)."""
    kwargs = {**TOY_OPTIONS.get(method, {}), **options}
    if method == "gradnorm":
        kwargs.setdefault("shared_parameters", [torch.zeros(2, dtype=torch.float64, requires_grad=True)])
    return make_weighting(method, 2, **kwargs)
