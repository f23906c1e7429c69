r"""Sine-wave regression, the first experiment of the MAML paper (Finn et al., 2017, §5.1).

A task is a sine wave $y = A \sin(x - \varphi)$ with amplitude $A \sim U[0.1, 5]$ and phase
$\varphi \sim U[0, \pi]$; inputs are drawn from $x \sim U[-5, 5]$. A learner sees $K = 10$
points of a new wave and must predict the rest of it. The network is the paper's MLP with two
hidden ReLU layers of 40 units (1-40-40-1), the loss the mean squared error.

Predicting zero everywhere scores $\mathbb E[A^2]/2 \approx 4.25$. Joint training on all waves
learns about their mean, $\mathbb E[y \mid x] = -\frac{2\,\mathbb E[A]}{\pi} \cos x \approx
-1.62 \cos x$ (the phases only cover $[0, \pi]$), which scores about 3.0: a compromise that fits no
single wave, and from which a few small SGD steps on 10 points move little. MAML instead learns
weights from which one step already fits the wave. :func:`run_sine` measures both, as the
query MSE after 0, 1 and 10 fine-tuning steps.

The command line meta-trains every method with one config and stores the held-out curves, the
training losses, the trained weights (so a reader can adapt them to any wave) and the provenance:

    python -m mtl_tutorial.studies.sine [--methods maml fomaml reptile joint] [--meta-steps 3000]
        [--eval-tasks 600] [--threads 1] [--out FILE] [--force]

Each run carries the provenance of its training. A call with fewer methods merges its runs into
the stored summary (a run of the same method is replaced), so the summary never shrinks; stored
runs of another config (``--meta-steps``, ``--eval-tasks``) are refused before any training,
unless ``--force``. The book's runs used ``--meta-steps 20000``.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_tutorial.meta import META_LEARNERS, make_meta_learner
from mtl_tutorial.meta.adaptation import adaptation_curve
from mtl_tutorial.meta.episodes import Episode
from mtl_tutorial.meta.step import meta_train_step
from mtl_tutorial.studies import RESULTS
from mtl_tutorial.studies.cli import (
    StudyParser,
    add_force,
    add_out,
    add_threads,
    apply_threads,
    int_at_least,
    positive_int,
    run,
    study_parser,
)
from mtl_tutorial.studies.provenance import provenance, run_provenance
from mtl_tutorial.studies.store import (
    check_summary,
    load_summary,
    refuse_other_config,
    save_summary,
)

METHODS = tuple(META_LEARNERS)  # maml, fomaml, reptile, joint
# Inner SGD steps per method when SineConfig.inner_steps is None: MAML's one step (the paper's
# main setting); Reptile needs several, since with one step it is joint training (Nichol et al.,
# 2018, §5); joint training has no inner loop.
DEFAULT_INNER_STEPS = {"maml": 1, "fomaml": 1, "reptile": 5, "joint": 0}


@dataclass(frozen=True)
class SineTask:
    """One wave $y = A \\sin(x - \\varphi)$."""

    amplitude: float
    phase: float

    def __call__(self, x: Tensor) -> Tensor:
        return self.amplitude * torch.sin(x - self.phase)


class SineTaskSampler:
    """Draws sine-wave tasks and their episodes; task ``i`` is a pure function of ``(seed, i)``.

    >>> sampler = SineTaskSampler(num_shots=10, num_queries=5, seed=0)
    >>> e = sampler.episode(0)
    >>> tuple(e.support_x.shape), tuple(e.query_y.shape)
    ((10, 1), (5, 1))
    """

    def __init__(
        self,
        num_shots: int = 10,  # K, the support points; the paper's main setting
        num_queries: int = 10,
        seed: int = 0,
        amplitude: tuple[float, float] = (0.1, 5.0),
        phase: tuple[float, float] = (0.0, math.pi),
        x_range: tuple[float, float] = (-5.0, 5.0),
    ) -> None:
        if num_shots < 1 or num_queries < 1:
            raise ValueError(f"num_shots and num_queries must be at least 1, got {num_shots}, {num_queries}")
        self.num_shots = num_shots
        self.num_queries = num_queries
        self.seed = seed
        self.amplitude = amplitude
        self.phase = phase
        self.x_range = x_range

    def task(self, index: int) -> SineTask:
        return self._draw(index)[0]

    def episode(self, index: int) -> Episode:
        task, x = self._draw(index)
        xy = np.stack([x, task.amplitude * np.sin(x - task.phase)], axis=1)  # (K + Q, 2)
        xy = torch.from_numpy(xy).float()
        K = self.num_shots
        return Episode(xy[:K, :1], xy[:K, 1:], xy[K:, :1], xy[K:, 1:])  # x, y each (K, 1), (Q, 1)

    def _draw(self, index: int) -> tuple[SineTask, np.ndarray]:
        """One generator per task, seeded by ``(seed, index)``: amplitude, phase, then the inputs."""
        u = np.random.default_rng([self.seed, index]).random(2 + self.num_shots + self.num_queries)
        (a_low, a_high), (p_low, p_high), (x_low, x_high) = self.amplitude, self.phase, self.x_range
        task = SineTask(float(a_low + (a_high - a_low) * u[0]), float(p_low + (p_high - p_low) * u[1]))
        return task, x_low + (x_high - x_low) * u[2:]  # (K + Q,)

    def episodes(self, count: int, start: int = 0) -> list[Episode]:
        return [self.episode(i) for i in range(start, start + count)]

    def __repr__(self) -> str:
        return f"SineTaskSampler(K={self.num_shots}, queries={self.num_queries}, seed={self.seed})"


def sine_mlp(hidden: tuple[int, ...] = (40, 40), seed: int = 0) -> nn.Sequential:
    """The paper's regressor: 1 -> 40 -> ReLU -> 40 -> ReLU -> 1, seeded initialisation."""
    torch.manual_seed(seed)
    widths = (1, *hidden)
    layers: list[nn.Module] = []
    for width_in, width_out in itertools.pairwise(widths):
        layers += [nn.Linear(width_in, width_out), nn.ReLU()]
    layers.append(nn.Linear(widths[-1], 1))
    return nn.Sequential(*layers)


@dataclass
class SineConfig:
    """One sine-wave run. The defaults are a short version of the paper's recipe (70,000 steps of
    25 tasks there), sized to finish in seconds on one CPU core."""

    method: str = "maml"  # maml, fomaml, reptile or joint
    meta_steps: int = 3000
    meta_batch_size: int = 10  # tasks per outer step (the paper: 25)
    num_shots: int = 10  # K support points per task
    num_queries: int = 10  # query points per task during meta-training
    inner_steps: int | None = None  # inner SGD steps; None: DEFAULT_INNER_STEPS[method]
    inner_lr: float = 0.01  # alpha, the paper's value
    outer_lr: float = 1e-3  # Adam's learning rate, the paper's beta
    eval_tasks: int = 200  # held-out waves, never seen in meta-training
    eval_queries: int = 100  # points per held-out wave on which the MSE is measured
    eval_steps: tuple[int, ...] = (0, 1, 10)
    eval_lr: float = 0.01  # fine-tuning step size at test time, the same for every method
    seed: int = 0  # initialisation and meta-training tasks; held-out tasks use seed + 10_000

    def __post_init__(self) -> None:
        self.eval_steps = tuple(self.eval_steps)
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; valid methods are: {', '.join(METHODS)}")
        if self.inner_steps is None:
            self.inner_steps = DEFAULT_INNER_STEPS[self.method]
        if self.inner_steps < 0:
            raise ValueError(f"inner_steps must be non-negative, got {self.inner_steps}")
        if min(self.meta_steps, self.meta_batch_size, self.eval_tasks, self.eval_queries) < 1:
            raise ValueError("meta_steps, meta_batch_size, eval_tasks and eval_queries must be positive")


@dataclass
class SineResult:
    """Held-out query MSE after each number of fine-tuning steps: mean and 95% half-width.

    ``per_task[k]`` holds the MSE of every held-out wave after ``k`` steps, ``(eval_tasks,)``;
    ``model`` is the meta-trained network (for figures: adapt it with
    :func:`~mtl_tutorial.meta.adaptation.adapt` and plot its predictions).
    """

    config: SineConfig
    mse: dict[int, float]
    ci95: dict[int, float]  # 1.96 standard errors over the held-out tasks
    per_task: dict[int, Tensor] = field(repr=False)
    train_losses: list[float] = field(repr=False)
    seconds: float = 0.0  # meta-training and evaluation, wall clock
    model: nn.Module | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict:
        """JSON-ready: the config, the numbers and the training curve (not the model)."""
        return {
            "config": asdict(self.config),
            "mse": self.mse,
            "ci95": self.ci95,
            "per_task": {k: v.tolist() for k, v in self.per_task.items()},
            "train_losses": self.train_losses,
            "seconds": self.seconds,
        }


def run_sine(config: SineConfig | None = None, model: nn.Module | None = None) -> SineResult:
    """Meta-train ``config.method`` on sine waves, then score it on held-out waves.

    Every method sees the same tasks in the same order and ends with the same test-time recipe:
    ``k`` SGD steps of size ``eval_lr`` on the K support points of a held-out wave, for each
    ``k`` in ``eval_steps``. Pass ``model`` to start from other weights (default :func:`sine_mlp`).
    """
    config = config or SineConfig()
    start = time.perf_counter()
    model = sine_mlp(seed=config.seed) if model is None else model
    learner = make_meta_learner(
        config.method, F.mse_loss, inner_steps=config.inner_steps, inner_lr=config.inner_lr
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=config.outer_lr)
    train = SineTaskSampler(config.num_shots, config.num_queries, seed=config.seed)
    losses = []
    for step in range(config.meta_steps):
        batch = train.episodes(config.meta_batch_size, start=step * config.meta_batch_size)
        losses.append(meta_train_step(model, batch, learner, optimizer))
    held_out = SineTaskSampler(config.num_shots, config.eval_queries, seed=config.seed + 10_000)
    curve = adaptation_curve(
        model, held_out.episodes(config.eval_tasks), F.mse_loss, config.eval_lr, config.eval_steps
    )
    mse = {k: v.mean().item() for k, v in curve.items()}
    ci95 = {k: 1.96 * v.std().item() / math.sqrt(len(v)) for k, v in curve.items()}
    return SineResult(config, mse, ci95, curve, losses, time.perf_counter() - start, model)


def weights_to_json(model: nn.Module) -> dict[str, list]:
    """``{name: nested list}`` of the float32 weights; exact, since a float32 fits a JSON double."""
    return {name: p.detach().float().tolist() for name, p in model.state_dict().items()}


def model_from_json(weights: dict[str, list], hidden: tuple[int, ...] = (40, 40)) -> nn.Sequential:
    """The :func:`sine_mlp` holding weights stored by :func:`weights_to_json`, bit for bit."""
    model = sine_mlp(hidden)
    expected = set(model.state_dict())
    if set(weights) != expected:
        raise ValueError(f"stored weights have parameters {sorted(weights)} but a sine_mlp{hidden} has "
                         f"{sorted(expected)}; pass the hidden sizes the weights were trained with")
    model.load_state_dict({name: torch.tensor(value, dtype=torch.float32) for name, value in weights.items()})
    return model


def _compact(text: str) -> str:
    """JSON with every list of plain numbers on one line (weights would otherwise take 7,000 lines)."""
    return re.sub(r"\[[-+0-9.eE,\s]*\]", lambda m: re.sub(r"\s+", "", m.group(0)), text)


COMMAND = "python -m mtl_tutorial.studies.sine"


def study_config(method: str, meta_steps: int = SineConfig.meta_steps, eval_tasks: int = 600) -> SineConfig:
    """The config of the stored run of ``method``: 0 to 10 fine-tuning steps scored on ``eval_tasks`` waves."""
    return SineConfig(method=method, meta_steps=meta_steps, eval_tasks=eval_tasks, eval_steps=tuple(range(11)))


def mergeable_runs(out: Path, configs: dict[str, SineConfig]) -> dict[str, dict]:
    """The runs stored at ``out``, each with the provenance of its training (a run stored before runs
    carried one gets the stored summary's, never this call's); a run of another config is refused."""
    stored = load_summary(out) or {}
    runs = stored.get("runs", {})
    for method, stored_run in runs.items():
        refuse_other_config(out, len(runs), stored_run.get("config"),
                            asdict(configs[method]) if method in configs else None)
    return {method: r if "provenance" in r else r | {"provenance": stored.get("provenance", {})}
            for method, r in runs.items()}


def sine_study(methods: Sequence[str] = METHODS, meta_steps: int = SineConfig.meta_steps, eval_tasks: int = 600,
               out: str | Path = RESULTS / "sine.json", threads: int | None = 1, force: bool = False) -> dict:
    """Meta-train every method of ``methods`` on the same waves; write their curves and weights to ``out``.

    Each run carries :func:`~mtl_tutorial.studies.provenance.run_provenance` from its training.
    The stored summary's runs of other methods are kept (so ``--methods maml`` re-trains MAML
    alone); stored runs of another config than this call would give them are refused before any
    training, unless ``force``, which replaces the stored summary with this call's runs.
    """
    methods = list(dict.fromkeys(methods))
    configs = {m: study_config(m, meta_steps, eval_tasks) for m in METHODS}  # validates before any work
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown method(s) {unknown or 'none given'}; valid methods are: {', '.join(METHODS)}")
    out = Path(out)
    kept = {} if force else mergeable_runs(out, configs)
    rerun = f"`{COMMAND}` with every method and the stored --meta-steps and --eval-tasks"
    check_summary(out, len(kept.keys() | set(methods)), force, rerun=rerun)
    apply_threads(threads)
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    trained = {}
    for method in methods:
        cpu = time.process_time()
        training = run_provenance()
        result = run_sine(configs[method])
        losses = result.train_losses
        trained[method] = {
            "config": asdict(configs[method]),
            "mse": {str(k): round(v, 5) for k, v in result.mse.items()},  # str keys, as JSON stores them
            "ci95": {str(k): round(v, 5) for k, v in result.ci95.items()},
            "train_loss_per_100_steps": [round(sum(losses[i : i + 100]) / len(losses[i : i + 100]), 4)
                                         for i in range(0, len(losses), 100)],
            "cpu_s": round(time.process_time() - cpu, 1),
            "weights": weights_to_json(result.model),
            "provenance": training,
        }
        print(f"{method:8s} query MSE after 0/1/10 steps: {result.mse[0]:.3f} / {result.mse[1]:.3f} / "
              f"{result.mse[10]:.3f} ({trained[method]['cpu_s']} CPU-s)", flush=True)
    kept = {} if force else mergeable_runs(out, configs)  # again: another call may have written since
    runs = {m: (kept | trained)[m] for m in METHODS if m in kept or m in trained}  # this call's replace stored
    command = (f"{COMMAND} --meta-steps {meta_steps} --eval-tasks {eval_tasks}" + (f" --threads {threads}" if threads else "")
               + ("" if methods == list(METHODS) else " --methods " + " ".join(methods)))
    prov = provenance("sine", started_wall, threads, [SineConfig.seed], command)
    prov["cpu_time_s"] = round(sum(r["cpu_s"] for r in runs.values()), 1)  # every run the summary holds
    prov["call_cpu_time_s"] = round(time.process_time() - started_cpu, 1)  # this call only
    prov["run_commits"] = sorted({r["provenance"].get("git_commit", "not recorded") for r in runs.values()})
    record = {
        "benchmark": "sine-wave regression of Finn et al. (2017, §5.1): K = 10 support points, held-out waves "
                     "use seed + 10000",
        "runs": runs,
        "provenance": prov,
    }
    save_summary(out, record, force, rerun=rerun, serialise=lambda r: _compact(json.dumps(r, indent=1)) + "\n")
    return record


def make_parser() -> StudyParser:
    parser = study_parser("sine", __doc__)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS,
                        help="methods to meta-train (default: all)")
    parser.add_argument("--meta-steps", type=positive_int, default=SineConfig.meta_steps,
                        help="outer steps per method (default: %(default)s)")
    parser.add_argument("--eval-tasks", type=int_at_least(2), default=600,
                        help="held-out waves for the stored curves, at least 2 (default: %(default)s)")
    add_threads(parser, default=1)
    add_out(parser, "sine.json")
    add_force(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Meta-train every method of ``--methods`` on the same waves; write their curves and weights."""
    args = make_parser().parse_args(argv)
    record = sine_study(args.methods, args.meta_steps, args.eval_tasks, args.out, args.threads, args.force)
    print(f"wrote {args.out}: {', '.join(record['runs'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
