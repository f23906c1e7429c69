r"""What a method costs: one multi-task step with each aggregator and weighting, over the equal step.

    python -m mtl_tutorial.studies.bench --methods [--torchjd] [--robustness] [--rounds 5] [--steps 3] [--out FILE.json]

**Overhead ratio.** For a configuration $c$ (an aggregator of :mod:`mtl_tutorial.aggregators`
with equal weights, or a weighting of :mod:`mtl_tutorial.weightings` without aggregator), the
ratio is $r_c = \tilde t_c / \tilde t_{\text{equal}}$, with $\tilde t$ the median time of one
:func:`~mtl_tutorial.step.train_step` on the case-study model (forward, backward, aggregation,
clipping, AdamW update), on the same prepared batches. The configurations are run
*interleaved*: in each of ``rounds`` rounds every configuration takes ``steps`` steps, in a
seeded random order, and $r_c$ is the median over rounds of the ratio within a round, so a
change of machine load between rounds cancels out. Wall-clock and process CPU time are both
recorded; under load the CPU-time ratio is the steadier one.

**The torchjd equivalent** (``--torchjd``; ``pip install -e '.[bench]'``). torchjd (Quinton &
Rey, 2024, "Jacobian descent for multi-objective optimization", arXiv:2406.16232) does the
aggregated step with ``mtl_backward(losses, features)`` then ``jac_to_grad(shared, aggregator)``:
one backward pass per task from its loss to the *features* (the trunk's output) and the head,
then the $T$ feature gradients go through the trunk as one ``torch.vmap``-ed backward pass,
giving the Jacobian $J \in \mathbb R^{T \times n}$ of the shared parameters, which the aggregator
reduces to ``.grad``. In the case study each task has its own batch, so there is no single
shared forward pass. :func:`torchjd_step` keeps the forward passes of
:func:`~mtl_tutorial.step.train_step` (trunk then head, task by task, so both sides do the same
forward work and draw the same dropout masks) and hands torchjd the list of the $T$ trunk
outputs as ``features``: ``layout="per_task"``, the default and the one timed for every
aggregator. Every row of the vmapped backward then traverses all $T$ trunk graphs (zero
gradient outside its own task's graph), about $T$ times the arithmetic of one backward pass
through the trunk, where the loop of :func:`~mtl_tutorial.jacobian.task_jacobian` sends each
row through its own task's graph only. ``layout="concatenated"`` is the setting torchjd is made
for: one trunk forward pass on the concatenation of the $T$ batches (right-padded to the
longest; causal attention keeps every real position unchanged), each head on its slice; it is
timed for the mean aggregator as a check that the layout does not change the conclusion.
On CPU, torch 2.13 has no ``vmap`` batching rule for the backward of
``scaled_dot_product_attention`` (nor of the mkldnn LSTM): it warns of a "performance drop" and
loops over the rows for that operation, which is part of torchjd's cost on this model.

Two details make both sides compute the same update. (i) Our rows are the *weighted* task
gradients $w_t \nabla L_t$ with $w = \partial\,\mathrm{objective}/\partial L$
(:func:`~mtl_tutorial.step.train_step`); torchjd gets the same rows from
``grad_tensors = w``. (ii) The generation head's output matrix is the token embedding (tied),
a *shared* parameter used after the features; ``mtl_backward`` only reaches the shared
parameters through ``features``, so the head is called on a view of the embedding matrix
(``torch.func.functional_call``) and that view is one more feature. With the same aggregator,
the shared parameters' ``.grad`` then agree to float rounding
(``tests/test_bench_methods.py``).

**Robustness** (``--robustness``): :func:`robustness_table` runs MGDA and CAGrad, ours and
torchjd's, on seeded Jacobians with a row scaled by $10^{-8}$ (then the whole matrix by
$10^{-8}$ or $10^{8}$), and reports $\min_t (J d)_t$, the smallest cosine between $d$ and a
row, $\|d\|$, and how many directions conflict with a task or are exactly zero.
"""

from __future__ import annotations

import datetime
import os
import platform
import random
import statistics
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_tutorial.aggregators import AGGREGATORS, Aggregator, make_aggregator
from mtl_tutorial.batching import Batch
from mtl_tutorial.step import train_step
from mtl_tutorial.studies.pipeline import case_study_setup
from mtl_tutorial.studies.provenance import git_state, versions
from mtl_tutorial.tasks import Task
from mtl_tutorial.weightings import WEIGHTINGS, Equal, Weighting, make_weighting

# our registry name -> the class name in torchjd.aggregation (0.18); all eight exist there
TORCHJD_NAMES: dict[str, str] = {
    "mean": "Mean",
    "mgda": "MGDA",
    "pcgrad": "PCGrad",
    "graddrop": "GradDrop",
    "cagrad": "CAGrad",
    "imtl_g": "IMTLG",
    "nash_mtl": "NashMTL",
    "upgrad": "UPGrad",
}
LAYOUTS = ("per_task", "concatenated")
STATIC_WEIGHTS = (0.2, 0.2, 1.0)  # sentiment, source, generation
DWA_STEPS_PER_EPOCH = 50
BASELINE = "equal"
INSTALL_HINT = "install the benchmark extra: pip install -e '.[bench]' (torchjd 0.18 with cvxpy)"


def bench_provenance(command: str) -> dict:
    """What every benchmark record carries: the command, date, git commit and whether the package
    differs from it, package versions, torch threads, and the machine (CPUs, load at the start)."""
    commit, modified = git_state()
    return {
        "command": command,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git_commit": commit,
        "package_modified_since_commit": modified,
        "versions": versions(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
    }


def require_torchjd():
    """Import torchjd, or fail with the command that installs it."""
    try:
        import torchjd
    except ImportError as error:
        raise ImportError(f"the torchjd comparison needs torchjd; {INSTALL_HINT}") from error
    return torchjd


def torchjd_version() -> str:
    """The installed torchjd's version (torchjd has no ``__version__``)."""
    from importlib.metadata import version

    require_torchjd()
    return version("torchjd")


def make_torchjd_aggregator(name: str, num_tasks: int) -> torch.nn.Module:
    """torchjd's aggregator for our registry ``name``, with our defaults where both have the option.

    CAGrad's radius is ours (``c = 0.5``; torchjd returns $(1 + c)$ times our direction, which
    divides by $1 + c$); Nash-MTL needs the number of tasks. CAGrad and Nash-MTL need cvxpy.
    """
    require_torchjd()
    from torchjd import aggregation

    if name not in TORCHJD_NAMES:
        raise KeyError(f"torchjd has no counterpart for {name!r} here; the compared aggregators are: "
                       f"{', '.join(TORCHJD_NAMES)}")
    cls = getattr(aggregation, TORCHJD_NAMES[name])
    if name == "cagrad":
        return cls(c=make_aggregator("cagrad").c)
    if name == "nash_mtl":
        return cls(n_tasks=num_tasks)
    return cls()


def _tied_views(model: nn.Module) -> tuple[dict[str, dict[str, Tensor]], list[Tensor]]:
    """For each head, the shared parameters it uses (a tied embedding), replaced by one view each.

    Returns ``{task: {parameter name in the head: view}}`` and the list of views (extra features).
    """
    shared = {id(p): p for p in model.shared_parameters()}
    views: dict[int, Tensor] = {}
    per_head: dict[str, dict[str, Tensor]] = {}
    for task, head in model.heads.items():
        replaced = {}
        for name, p in head.named_parameters(remove_duplicate=False):
            if id(p) in shared:
                if id(p) not in views:
                    views[id(p)] = p.view_as(p)  # a non-leaf alias: its gradient is the head's path only
                replaced[name] = views[id(p)]
        per_head[task] = replaced
    return per_head, list(views.values())


def _head(model: nn.Module, task: str, hidden: Tensor, inputs: Tensor, tied: dict[str, dict[str, Tensor]]) -> Tensor:
    head = model.heads[task]
    if tied[task]:
        return torch.func.functional_call(head, tied[task], (hidden, inputs), strict=False)
    return head(hidden, inputs)


def torchjd_step(
    model: nn.Module,
    batches: Mapping[str, Batch],
    optimizer: torch.optim.Optimizer,
    weighting: Weighting,
    tasks: Sequence[Task],
    aggregator: torch.nn.Module,
    grad_clip: float | None = 1.0,
    layout: str = "per_task",
) -> list[float]:
    """The step of :func:`~mtl_tutorial.step.train_step` with ``aggregator``, done by torchjd.

    ``mtl_backward(losses, features, grad_tensors=w)`` puts $J_{t,:} = w_t \\nabla_{\\theta_s} L_t$
    in the shared parameters' ``.jac`` and $\\nabla_{\\theta_t} w_t L_t$ in each head's ``.grad``;
    ``jac_to_grad(θ_s, aggregator)`` sets ``θ_s.grad`` to the aggregation. Needs a
    :class:`~mtl_tutorial.models.MultiTaskModel` (a trunk and heads), every task with a batch,
    and a weighting without parameters (the objective's parameters would need their own
    backward pass). ``layout``: see the module docstring. Returns the task losses.
    """
    require_torchjd()
    from torchjd.autojac import jac_to_grad, mtl_backward

    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid layouts are: {', '.join(LAYOUTS)}")
    missing = [t.name for t in tasks if t.name not in batches]
    if missing:
        raise ValueError(f"torchjd_step needs a batch for every task; missing: {', '.join(missing)}")
    if any(p.requires_grad for p in weighting.parameters()):
        raise ValueError(f"torchjd_step takes weightings without parameters; {weighting!r} has some")
    model.train()
    optimizer.zero_grad(set_to_none=True)
    device = next(model.parameters()).device
    tied, views = _tied_views(model)
    batches = {t.name: batches[t.name].to(device) for t in tasks}
    losses, features = [], []
    if layout == "per_task":
        for task in tasks:  # the forward passes of train_step, in the same order
            batch = batches[task.name]
            hidden = model.trunk(batch.inputs)  # (B_t, L_t, D)
            losses.append(task.loss(_head(model, task.name, hidden, batch.inputs, tied), batch.targets))
            features.append(hidden)
    else:
        length = max(batches[t.name].inputs.shape[1] for t in tasks)
        inputs = torch.cat([F.pad(batches[t.name].inputs, (0, length - batches[t.name].inputs.shape[1]))
                            for t in tasks])  # (sum_t B_t, L_max), right-padded with <pad> = 0
        hidden_all = model.trunk(inputs)  # (sum_t B_t, L_max, D)
        start = 0
        for task in tasks:
            batch = batches[task.name]
            B, L = batch.inputs.shape
            hidden = hidden_all[start:start + B, :L]  # (B_t, L_t, D): causal, so the real positions are exact
            losses.append(task.loss(_head(model, task.name, hidden, batch.inputs, tied), batch.targets))
            start += B
        features.append(hidden_all)
    loss_vector = torch.stack(losses)  # (T,)
    objective = weighting(loss_vector)
    (weights,) = torch.autograd.grad(objective, loss_vector, retain_graph=True)  # (T,): ∂objective/∂L_t
    shared = list(model.shared_parameters())
    mtl_backward(losses, features=features + views, grad_tensors=list(weights),
                 tasks_params=[model.task_parameters(t.name) for t in tasks], shared_params=shared)
    jac_to_grad(shared, aggregator)
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss_vector.tolist()


@dataclass
class Configuration:
    """One timed step: ``run(batches)`` does it; ``kind`` is baseline, aggregator or weighting."""

    name: str
    kind: str
    implementation: str  # "ours" or "torchjd"
    method: str
    run: Callable[[Mapping[str, Batch]], object]
    layout: str = "per_task"


def method_configurations(
    model: nn.Module,
    tasks: Sequence[Task],
    optimizer: torch.optim.Optimizer,
    torchjd: bool = False,
    aggregators: Sequence[str] | None = None,
    weightings: Sequence[str] | None = None,
) -> tuple[list[Configuration], list[str]]:
    """The equal step, each aggregator (equal weights), each weighting, and torchjd's aggregators.

    Weightings with parameters (uncertainty, GradNorm) get them added to ``optimizer``. GradNorm
    reads ``model.last_shared_parameters()``, DWA averages over ``steps_per_epoch = 50``, static
    uses the weights 0.2 / 0.2 / 1 of the case study. Returns the configurations and notes on
    what was skipped.
    """
    T = len(tasks)
    aggregators = list(AGGREGATORS) if aggregators is None else list(aggregators)
    weightings = [w for w in WEIGHTINGS if w != "equal"] if weightings is None else list(weightings)
    equal = Equal(T)

    def ours(aggregator: Aggregator | None, weighting: Weighting) -> Callable:
        return lambda batches: train_step(model, batches, optimizer, weighting, tasks, aggregator=aggregator)

    configs = [Configuration(BASELINE, "baseline", "ours", "equal", ours(None, equal))]
    configs += [Configuration(f"ours {a}", "aggregator", "ours", a, ours(make_aggregator(a), equal))
                for a in aggregators]
    for w in weightings:
        if w == "static":
            options = {"weights": list(STATIC_WEIGHTS[:T]) if T == len(STATIC_WEIGHTS) else [1.0] * T}
        elif w == "gradnorm":
            options = {"shared_parameters": model.last_shared_parameters()}
        elif w == "dwa":
            options = {"steps_per_epoch": DWA_STEPS_PER_EPOCH}
        else:
            options = {}
        weighting = make_weighting(w, T, **options)
        if list(weighting.parameters()):
            optimizer.add_param_group({"params": list(weighting.parameters()), "weight_decay": 0.0})
        configs.append(Configuration(f"weighting {w}", "weighting", "ours", w, ours(None, weighting)))
    notes = []
    if torchjd:
        require_torchjd()
        for a in aggregators:
            if a not in TORCHJD_NAMES:
                notes.append(f"torchjd: no counterpart for {a!r}")
                continue
            try:
                aggregator = make_torchjd_aggregator(a, T)
            except ImportError as error:  # CAGrad and Nash-MTL import cvxpy when built
                notes.append(f"torchjd {a} skipped: {error}; {INSTALL_HINT}")
                continue
            configs.append(Configuration(f"torchjd {a}", "aggregator", "torchjd", a, _torchjd_run(
                model, tasks, optimizer, equal, aggregator, "per_task")))
        if "mean" in aggregators:
            configs.append(Configuration("torchjd mean (concatenated batch)", "aggregator", "torchjd", "mean",
                                         _torchjd_run(model, tasks, optimizer, equal,
                                                      make_torchjd_aggregator("mean", T), "concatenated"),
                                         layout="concatenated"))
    return configs, notes


def _torchjd_run(model, tasks, optimizer, weighting, aggregator, layout) -> Callable:
    def run(batches: Mapping[str, Batch]) -> list[float]:
        with warnings.catch_warnings():  # cvxpy's "not DPP" warning on every Nash-MTL solve
            warnings.simplefilter("ignore", UserWarning)
            return torchjd_step(model, batches, optimizer, weighting, tasks, aggregator, layout=layout)
    return run


@dataclass
class Timings:
    """Seconds per step, ``wall[name][round]`` and ``cpu[name][round]`` (lists of ``steps``)."""

    wall: dict[str, list[list[float]]] = field(default_factory=dict)
    cpu: dict[str, list[list[float]]] = field(default_factory=dict)


def interleaved_timings(
    configs: Sequence[Configuration],
    batches: Sequence[Mapping[str, Batch]],
    rounds: int = 5,
    steps: int = 3,
    warmup: int = 2,
    seed: int = 0,
) -> Timings:
    """Time every configuration, ``steps`` steps at a time, in ``rounds`` seeded random orders.

    Each configuration walks the same list of prepared ``batches`` in the same order; the first
    ``warmup`` steps of each are not timed.
    """
    if rounds < 1 or steps < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1, steps >= 1 and warmup >= 0, got {rounds}, {steps}, {warmup}")
    if not batches:
        raise ValueError("no prepared batches to time the steps on")
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ValueError(f"configuration names must be unique, got {names}")
    position = dict.fromkeys(names, 0)
    timings = Timings({n: [] for n in names}, {n: [] for n in names})
    order = list(configs)
    shuffle = random.Random(seed)

    def one(config: Configuration) -> tuple[float, float]:
        b = batches[position[config.name] % len(batches)]
        position[config.name] += 1
        wall, cpu = time.perf_counter(), time.process_time()
        config.run(b)
        return time.perf_counter() - wall, time.process_time() - cpu

    for config in configs:
        for _ in range(warmup):
            one(config)
    for _ in range(rounds):
        shuffle.shuffle(order)
        for config in order:
            measured = [one(config) for _ in range(steps)]
            timings.wall[config.name].append([w for w, _ in measured])
            timings.cpu[config.name].append([c for _, c in measured])
    return timings


def overhead_rows(configs: Sequence[Configuration], timings: Timings) -> dict[str, dict]:
    """Per configuration: median ms (wall, CPU) and the ratios to the equal step (median over rounds)."""
    rows = {}
    for config in configs:
        row = {"kind": config.kind, "implementation": config.implementation, "method": config.method,
               "layout": config.layout}
        for clock, table in (("wall", timings.wall), ("cpu", timings.cpu)):
            mine, base = table[config.name], table[BASELINE]
            row[f"{clock}_ms"] = 1e3 * statistics.median(t for r in mine for t in r)
            per_round = [statistics.median(m) / statistics.median(b) for m, b in zip(mine, base)]
            row[f"{clock}_ratio"] = statistics.median(per_round)
            row[f"{clock}_ratio_per_round"] = per_round
        rows[config.name] = row
    return rows


def run_methods_benchmark(
    trunk: str = "transformer",
    batch_size: int = 32,
    rounds: int = 5,
    steps: int = 3,
    warmup: int = 2,
    torchjd: bool = False,
) -> tuple[dict[str, dict], list[str]]:
    """The case-study model and data (seed 0), 20 prepared batch dicts, every configuration timed.

    Returns :func:`overhead_rows` and the notes of :func:`method_configurations`.
    """
    model, tasks, prepared = case_study_setup(trunk, batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    configs, notes = method_configurations(model, tasks, optimizer, torchjd=torchjd)
    torch.manual_seed(0)
    timings = interleaved_timings(configs, prepared, rounds=rounds, steps=steps, warmup=warmup)
    return overhead_rows(configs, timings), notes


# ------------------------------------------------------------------ robustness
def robustness_jacobians(trials: int = 20, seed: int = 7) -> list[tuple[Tensor, int]]:
    """Seeded ``(3, 50)`` Gaussian Jacobians (float32), each with a random row index to rescale."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(trials):
        J = torch.randn(3, 50, generator=g)
        out.append((J, int(torch.randint(3, (1,), generator=g))))
    return out


def conflicting(J: Tensor, d: Tensor) -> bool:
    """``(J d)_t`` below rounding for some t: ``< -||g_t|| (1e-6 ||d|| + 1e-13 max_j ||g_j||)``."""
    J, d = J.double(), d.double()
    norms = J.norm(dim=1)
    return bool(((J @ d) < -norms * (1e-6 * d.norm() + 1e-13 * norms.max())).any())


# (method, label, factor of one row, factor of the whole matrix)
ROBUSTNESS_FAMILIES = (
    ("mgda", "MGDA, a row x 1e-8", 1e-8, 1.0),
    ("cagrad", "CAGrad, no row scaled", 1.0, 1.0),
    ("cagrad", "CAGrad, a row x 1e-8", 1e-8, 1.0),
    ("cagrad", "CAGrad, a row x 1e-8, all x 1e-8", 1e-8, 1e-8),
    ("cagrad", "CAGrad, a row x 1e-8, all x 1e8", 1e-8, 1e8),
    ("cagrad", "CAGrad, a row x 1e8", 1e8, 1.0),
)


def robustness_table(trials: int = 20, seed: int = 7) -> list[dict]:
    """MGDA and CAGrad, ours and torchjd's, on the Jacobians of :func:`robustness_jacobians`.

    Per family of :data:`ROBUSTNESS_FAMILIES` and implementation: the worst $\\min_t (J d)_t$
    and $\\min_t \\cos(g_t, d)$ over the trials, the median $\\|d\\|$, how many directions
    conflict with a task or are exactly zero, and the median relative distance to our direction,
    $\\|k d - d_{ours}\\| / \\|d_{ours}\\|$ (``k = 1 / (1 + c)`` for torchjd's CAGrad, which does not
    rescale, 1 otherwise). The true answers never conflict (MGDA: $g_t \\cdot d \\ge \\|d\\|^2$)
    and are not zero here (0 is in no hull of three Gaussian rows in $\\mathbb R^{50}$); a rescaled
    matrix $sJ$ has the answer $s A(J)$.
    """
    require_torchjd()
    jacobians = robustness_jacobians(trials, seed)
    rows = []
    for method, family, row_factor, scale in ROBUSTNESS_FAMILIES:
        ours = make_aggregator(method)
        implementations = {"ours": (ours, 1.0), "torchjd": (make_torchjd_aggregator(method, 3),
                                                            1 / (1 + ours.c) if method == "cagrad" else 1.0)}
        for implementation, (aggregator, k) in implementations.items():
            stats = []
            for base, index in jacobians:
                J = base.clone()
                J[index] *= row_factor
                J = scale * J
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    d = aggregator(J)
                reference = ours(J).double()
                Jd = J.double() @ d.double()  # (T,)
                norm = d.double().norm()
                cosine = (Jd / (J.double().norm(dim=1) * norm)).min().item() if norm > 0 else float("nan")
                distance = ((k * d.double() - reference).norm() / reference.norm()).item()
                stats.append((Jd.min().item(), cosine, norm.item(), conflicting(J, d), bool(norm == 0), distance))
            cosines = [s[1] for s in stats if s[1] == s[1]]
            rows.append({
                "family": family, "method": method, "implementation": implementation, "trials": trials,
                "min_Jd": min(s[0] for s in stats),
                "min_cosine": min(cosines) if cosines else float("nan"),
                "median_norm_d": statistics.median(s[2] for s in stats),
                "conflicting": sum(s[3] for s in stats),
                "zero": sum(s[4] for s in stats),
                "median_distance_to_ours": statistics.median(s[5] for s in stats),
            })
    return rows


def print_robustness(rows: Sequence[dict]) -> None:
    print(f"{'seeded Jacobians, T=3, n=50':33s} {'impl.':8s} {'min_t (Jd)_t':>13s} {'min cos':>9s} "
          f"{'median |d|':>11s} {'conflict':>8s} {'zero':>6s} {'vs ours':>8s}")
    for r in rows:
        print(f"{r['family']:33s} {r['implementation']:8s} {r['min_Jd']:13.3e} {r['min_cosine']:9.2e} "
              f"{r['median_norm_d']:11.3e} {r['conflicting']:>4d}/{r['trials']:<3d} {r['zero']:>3d}/{r['trials']:<2d}"
              f" {r['median_distance_to_ours']:8.1e}")
    print("min cos: smallest cosine between d and a task gradient; conflict: directions with some (J d)_t < 0 "
          "beyond rounding;\nvs ours: median |k d - d_ours| / |d_ours| (k = 1/(1+c) for torchjd's CAGrad, "
          "which does not rescale by 1/(1+c))")


def print_overhead(rows: Mapping[str, dict]) -> None:
    print(f"{'configuration':34s} {'ms/step':>8s} {'CPU ms':>8s} {'ratio':>6s} {'CPU ratio':>9s}")
    for name, r in rows.items():
        print(f"{name:34s} {r['wall_ms']:8.1f} {r['cpu_ms']:8.1f} {r['wall_ratio']:6.2f} {r['cpu_ratio']:9.2f}")
    compared = [r["method"] for r in rows.values()
                if r["implementation"] == "torchjd" and r["layout"] == "per_task"]
    if compared:
        print(f"\n{'aggregator':12s} {'ours':>6s} {'torchjd':>8s} {'torchjd/ours':>13s}   (ratios to the equal step, wall; CPU)")
        for m in compared:
            a, b = rows[f"ours {m}"], rows[f"torchjd {m}"]
            print(f"{m:12s} {a['wall_ratio']:6.2f} {b['wall_ratio']:8.2f} {b['wall_ratio'] / a['wall_ratio']:13.2f}"
                  f"   {a['cpu_ratio']:.2f} {b['cpu_ratio']:.2f}")
