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

:func:`run_toy_many` runs many methods from many starts at once. One tensor holds every
(method, start) pair; each step computes the losses and the Jacobians of all of them in one pass
of :func:`toy_jacobian`, calls each aggregator once on its stack of Jacobians
(:meth:`Aggregator.batch`), computes the updates of the fixed-weight weightings in one product,
and applies one Adam update, written out, to the whole tensor (elementwise, so the pairs stay
independent). On a few dozen numbers the cost of a step is the Python overhead of each tensor
operation, so the loop runs in inference mode and the number of operations per step is what
counts. Reproducing the paper's setting (3 starts, 100,000 steps, all 14 methods) costs about
4.5 ms of CPU per step on a busy 2-core machine, split over two processes with ``processes=2``;
most of it is the learned weightings' own work (GradNorm's two backward passes per start
above all), called once per start as a trainer would.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import multiprocessing
import platform
import resource
import subprocess
import sys
import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from mtl_tutorial.aggregators import AGGREGATORS, Aggregator, make_aggregator
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
    the start, for a weighting), so a result does not depend on which methods run alongside.
    ``processes > 1`` splits the methods over that many worker processes (one thread each; they
    are *spawned*, so a script that calls this must do so under ``if __name__ == "__main__":``).
    """
    unknown = [m for m in methods if m not in AGGREGATORS and m not in WEIGHTINGS]
    if unknown:
        raise KeyError(
            f"unknown toy method(s) {unknown}; valid methods are the aggregators "
            f"{', '.join(AGGREGATORS)} and the weightings {', '.join(WEIGHTINGS)}"
        )
    if len(set(methods)) != len(methods):
        raise ValueError(f"each method may appear once, got {list(methods)}")
    starts = torch.as_tensor(starts, dtype=torch.float64).reshape(-1, 2)  # (S, 2)
    options = dict(options or {})
    if processes > 1 and len(methods) > 1:
        return _run_in_processes(list(methods), starts, steps, lr, options, seed, processes)

    rules = _update_rules(list(methods), starts.shape[0], lr, options, seed)
    order = [m for rule in rules for m in rule.methods]  # methods grouped by rule: each rule owns a slice
    bounds = [0]
    for rule in rules:
        bounds.append(bounds[-1] + len(rule.methods))
    x = starts.expand(len(order), -1, -1).clone()  # (M, S, 2): every (method, start) pair
    adam = _Adam(x, lr)  # elementwise, so the pairs stay independent
    trajectory = torch.empty(steps + 1, *x.shape, dtype=torch.float64)  # (steps + 1, M, S, 2)
    trajectory[0] = x
    with torch.inference_mode():  # no autograd bookkeeping: a quarter less time per operation
        for step in range(steps):
            losses, J = toy_jacobian(x)  # (M, S, 2), (M, S, 2, 2)
            direction = torch.cat([rule(losses[a:b], J[a:b]) for rule, a, b in zip(rules, bounds, bounds[1:])])
            adam.step(direction)
            trajectory[step + 1] = x
    return {m: trajectory[:, order.index(m)] for m in methods}


class _Adam:
    """``torch.optim.Adam`` (betas 0.9 and 0.999, eps 1e-8, no weight decay) on one tensor, written out.

    The operations of torch's single-tensor Adam in the same order, so a trajectory is bit for
    bit the one ``torch.optim.Adam`` gives, without the optimiser's per-step bookkeeping (which
    costs more than the arithmetic on a few dozen numbers).
    """

    def __init__(self, param: Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.param, self.lr, self.betas, self.eps = param, lr, betas, eps
        self.exp_avg = torch.zeros_like(param)
        self.exp_avg_sq = torch.zeros_like(param)
        self.steps = 0

    @torch.no_grad()
    def step(self, grad: Tensor) -> None:
        beta1, beta2 = self.betas
        self.steps += 1
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = self.lr / (1 - beta1**self.steps)
        denominator = (self.exp_avg_sq.sqrt() / (1 - beta2**self.steps) ** 0.5).add_(self.eps)
        self.param.addcdiv_(self.exp_avg, denominator, value=-step_size)


class _Aggregate:
    """One aggregator's updates for every start: ``aggregator.batch`` on its ``(S, 2, 2)`` Jacobians."""

    def __init__(self, method: str, aggregator: Aggregator, generator: torch.Generator) -> None:
        self.methods, self.aggregator, self.generator = [method], aggregator, generator

    def __call__(self, losses: Tensor, J: Tensor) -> Tensor:
        return self.aggregator.batch(J[0], generator=self.generator)[None]  # (1, S, 2)


class _ConstantWeights:
    r"""Weightings whose weights never change (equal, static): $w^\top J$ for all of them in one product."""

    def __init__(self, methods: list[str], weights: Tensor) -> None:
        self.methods, self.weights = methods, weights.to(torch.float64)[:, None, :, None]  # (K, 1, T, 1)

    def __call__(self, losses: Tensor, J: Tensor) -> Tensor:
        return (self.weights * J).sum(-2)  # (K, S, 2)


class _LearnedWeightings:
    r"""Weightings with state or parameters: one module per (method, start), as a trainer would hold.

    The update is $\sum_t (\partial \text{objective} / \partial L_t) \nabla L_t$, as in
    :func:`~mtl_tutorial.step.train_step`; each module's own parameters train with Adam. A
    module sees the losses plus :data:`LOSS_OFFSET`. GradNorm also needs the gradients of the
    losses with respect to its "last shared layer": for it the losses are written
    $L + J p$ with a probe $p = 0$ of its own, which has the right value and, with respect to
    $p$, the right gradients.
    """

    def __init__(self, methods: list[str], num_starts: int, lr: float, options: Mapping[str, dict], key) -> None:
        self.methods = methods
        self.modules, self.probes = [], []  # in (method, start) order
        for m in methods:
            kwargs = {**TOY_OPTIONS.get(m, {}), **options.get(m, {})}
            for s in range(num_starts):
                probe = None
                if m == "gradnorm":
                    probe = torch.zeros(2, dtype=torch.float64, requires_grad=True)
                    kwargs["shared_parameters"] = [probe]
                elif m == "rlw":
                    kwargs["generator"] = key(m, s)
                self.modules.append(make_weighting(m, 2, **kwargs))
                self.probes.append(probe)
        self.parameters = [p for w in self.modules for p in w.parameters()]
        self.adams = [_Adam(p.data, lr) for p in self.parameters]

    def __call__(self, losses: Tensor, J: Tensor) -> Tensor:
        K, S = losses.shape[:2]
        with torch.inference_mode(False), torch.enable_grad():
            # outside inference mode, on copies: autograd may save them for the backward pass
            losses, J = losses.reshape(K * S, 2).clone(), J.reshape(K * S, 2, 2).clone()  # in the order of self.modules
            seen = [
                losses[k].add(LOSS_OFFSET).requires_grad_() if p is None else (losses[k] + J[k] @ p).add_(LOSS_OFFSET)
                for k, p in enumerate(self.probes)
            ]  # K * S tensors (2,)
            objective = torch.stack([w(v) for w, v in zip(self.modules, seen)]).sum()
            grads = torch.autograd.grad(objective, [*seen, *self.parameters], allow_unused=True)
            for adam, grad in zip(self.adams, grads[len(seen):]):
                if grad is not None:  # as torch.optim.Adam, which skips a parameter without a gradient
                    adam.step(grad)
            weights = torch.stack(grads[: len(seen)])  # (K * S, 2): d objective / d L_t
            return (weights[..., None] * J).sum(-2).view(K, S, 2)  # sum_t w_t g_t


CONSTANT_WEIGHTINGS = (Equal, Static)
"""Weightings whose weights are fixed at construction: their updates need no module call per step."""


def _update_rules(methods: list[str], num_starts: int, lr: float, options: Mapping[str, dict], seed: int) -> list:
    def generator(*key: object) -> torch.Generator:
        return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(repr(key).encode()))

    rules: list = []
    constant, learned = [], []
    for m in methods:
        if m in AGGREGATORS:
            rules.append(_Aggregate(m, make_aggregator(m, **options.get(m, {})), generator(m)))
        elif issubclass(WEIGHTINGS[m], CONSTANT_WEIGHTINGS):
            constant.append(m)
        else:
            learned.append(m)
    if constant:
        weightings = [make_weighting(m, 2, **{**TOY_OPTIONS.get(m, {}), **options.get(m, {})}) for m in constant]
        rules.append(_ConstantWeights(constant, torch.stack([w.weights for w in weightings])))
    if learned:
        rules.append(_LearnedWeightings(learned, num_starts, lr, options, generator))
    return rules


BOOK_RUNS: dict[str, dict] = {
    "paper": {"methods": [*AGGREGATORS, *WEIGHTINGS]},  # every method, the paper's starts, steps and c
    "cagrad c=0.2": {"methods": ["cagrad"], "options": {"cagrad": {"c": 0.2}}},
    "cagrad c=0.8": {"methods": ["cagrad"], "options": {"cagrad": {"c": 0.8}}},
}
"""The runs behind chapter 4's toy figures: keyword arguments of :func:`run_toy_many`."""


def record_toy_runs(path: str | Path, runs: Mapping[str, dict] = BOOK_RUNS, stride: int = 250, processes: int = 2) -> dict:
    """Run each named configuration of :func:`run_toy_many` and save it to ``path`` with its provenance.

    The file (``torch.save``, loadable with ``weights_only=True``) holds, for each run, its
    arguments, the end points ``{method: (S, 2)}`` and the trajectories every ``stride`` steps
    ``{method: (steps / stride + 1, S, 2)}``, all float64; and the git commit, versions and CPU
    and wall time of the recording. ``python -m mtl_tutorial.toy record PATH`` records
    :data:`BOOK_RUNS`.
    """
    stored = {}
    for name, kwargs in runs.items():
        kwargs = {"starts": PAPER_STARTS, "steps": 100_000, "lr": 1e-3, "options": {}, "seed": 0, **kwargs}
        cpu, wall = _cpu_seconds(), time.perf_counter()
        out = run_toy_many(**kwargs, processes=processes)
        kept = list(range(0, kwargs["steps"] + 1, stride))
        stored[name] = {
            "arguments": {**kwargs, "starts": [list(map(float, s)) for s in kwargs["starts"]], "methods": list(kwargs["methods"])},
            "stored_steps": kept,
            "trajectories": {m: t[kept].clone() for m, t in out.items()},
            "end": {m: t[-1].clone() for m, t in out.items()},
            "cpu_s": round(_cpu_seconds() - cpu, 1),
            "wall_s": round(time.perf_counter() - wall, 1),
        }
    record = {"provenance": _provenance(processes), "runs": stored}
    torch.save(record, path)
    return record


def load_toy_runs(path: str | Path) -> dict:
    """What :func:`record_toy_runs` saved: ``{"provenance": {...}, "runs": {name: {...}}}``."""
    return torch.load(path, weights_only=True)


def _cpu_seconds() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def _provenance(processes: int) -> dict:
    root = Path(__file__).parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], check=False, capture_output=True, text=True, cwd=root).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "mtl_tutorial"], check=False, capture_output=True,
                                    text=True, cwd=root).stdout.strip())
    except OSError:
        commit, dirty = "unknown", True
    return {
        "command": "python -m mtl_tutorial.toy record PATH",
        "git_commit": commit,
        "package_modified_since_commit": dirty,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processes": processes,
        "recorded": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


_COST = {
    "gradnorm": 2.2, "dwa": 0.53, "uncertainty": 0.48, "cagrad": 0.44, "rlw": 0.31, "pcgrad": 0.14,
    "nash_mtl": 0.13, "upgrad": 0.1, "imtl_g": 0.1, "mgda": 0.09, "graddrop": 0.06,
}
"""CPU milliseconds per step of each method from three starts (measured on a loaded 2-core machine),
to balance the processes; a process adds about 0.23 ms for the losses, the Jacobians and Adam."""


def _run_group(methods, starts, steps, lr, options, seed):
    torch.set_num_threads(1)
    return run_toy_many(methods, starts, steps, lr, options, seed, processes=1)


def _run_in_processes(methods, starts, steps, lr, options, seed, processes):
    groups: list[list[str]] = [[] for _ in range(min(processes, len(methods)))]
    loads = [0.0] * len(groups)
    for m in sorted(methods, key=lambda m: -_COST.get(m, 0.02)):  # the costliest first, to the least loaded
        k = loads.index(min(loads))
        groups[k].append(m)
        loads[k] += _COST.get(m, 0.02)
    context = multiprocessing.get_context("spawn")  # no fork of a process that already runs torch threads
    with concurrent.futures.ProcessPoolExecutor(len(groups), mp_context=context) as pool:
        futures = [pool.submit(_run_group, g, starts, steps, lr, options, seed) for g in groups]
        results = {}
        for future in futures:
            results.update(future.result())
    return {m: results[m] for m in methods}


def main(argv: list[str] | None = None) -> int:
    """``python -m mtl_tutorial.toy record PATH``: record :data:`BOOK_RUNS` (about 4 CPU-minutes)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "record":
        print("usage: python -m mtl_tutorial.toy record PATH", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    record = record_toy_runs(args[1])
    for name, run in record["runs"].items():
        print(f"{name}: {run['cpu_s']} CPU s, {run['wall_s']} s wall")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
