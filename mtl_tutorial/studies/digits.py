r"""Vision: handwritten digits with an auxiliary shape task on a shared trunk.

The data is scikit-learn's copy of the UCI optical digits test set (Alpaydin & Kaynak, 1998):
1,797 greyscale images of 8 × 8 pixels (values 0–16), digits 0–9, bundled with scikit-learn,
so nothing is downloaded. Each image carries two labels:

* ``digit``: the digit's identity, 10 classes, the task we care about;
* an auxiliary binary property of the digit (``AUXILIARY_TASKS``). The default, ``loop``, asks
  whether the digit is written with a closed loop (0, 6, 8, 9). It is a *visual* property shared
  across classes, so the features that detect it (a hole in the ink) are features the identity
  task needs too. ``parity`` and ``ge5`` are there for contrast: they group digits by arithmetic,
  not by shape.

Every auxiliary label is a function of the digit label, so the auxiliary task brings no new
information about an image; it can only change what the shared trunk is pushed to represent.
The multi-task model minimises a weighting of the two mean cross-entropies (by default the
article's equal weights, $L = \tfrac12 (L_\text{digit} + L_\text{aux})$), the single-task model the
digit loss alone, with the same trunk, the same data and the same number of steps.

The command line runs the sweep of chapter 3.1 (720 runs) into
``book/results/domains_digits.json``::

    python -m mtl_tutorial.studies.digits [--sizes 20 50 100 200 400 1198] [--seeds 0-19]
        [--auxiliary loop parity ge5] [--threads 1] [--out FILE] [--force]

A call with fewer seeds, sizes or auxiliary tasks merges its runs into the stored summary when
both have the same config (a run of the same auxiliary task, size, seed and model is replaced),
so the summary never shrinks; a summary of another config is refused unless ``--force``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_tutorial.studies import RESULTS
from mtl_tutorial.studies.cli import (
    StudyParser,
    UsageError,
    add_force,
    add_out,
    add_seeds,
    add_threads,
    apply_threads,
    positive_int,
    run,
    seeds_text,
    study_parser,
)
from mtl_tutorial.studies.paired import paired_difference
from mtl_tutorial.studies.provenance import provenance, run_provenance
from mtl_tutorial.studies.store import (
    check_summary,
    load_summary,
    merge_runs,
    refuse_other_config,
    save_summary,
)
from mtl_tutorial.weightings import make_weighting

# A class-level convention, not a per-image annotation: 4 is written open in most of these
# images and counts as open; 2 with a curl at the bottom also counts as open.
AUXILIARY_TASKS: dict[str, frozenset[int]] = {
    "loop": frozenset({0, 6, 8, 9}),  # a closed loop of ink
    "parity": frozenset({1, 3, 5, 7, 9}),  # odd
    "ge5": frozenset({5, 6, 7, 8, 9}),  # the digit is at least 5
}
TASK_NAMES = ("digit", *AUXILIARY_TASKS)
NUM_CLASSES = {"digit": 10, **{name: 2 for name in AUXILIARY_TASKS}}


def check_tasks(tasks: Sequence[str]) -> tuple[str, ...]:
    """The task names as a tuple; an unknown or repeated name raises an error listing the valid ones."""
    tasks = tuple(tasks)
    unknown = [t for t in tasks if t not in TASK_NAMES]
    if unknown:
        raise KeyError(f"unknown digits task(s) {', '.join(map(repr, unknown))}; valid tasks are: {', '.join(TASK_NAMES)}")
    if not tasks or len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks must be a non-empty list of distinct names from {', '.join(TASK_NAMES)}, got {tasks}")
    return tasks


@dataclass(frozen=True)
class DigitsConfig:
    """One training run: which tasks, how much data, which network, which seed."""

    tasks: tuple[str, ...] = ("digit", "loop")  # ("digit",) is the single-task baseline
    train_size: int | None = None  # images drawn from the training pool; None: all of it (1,198)
    test_fraction: float = 1 / 3  # 599 test images, the same for every train_size of a seed
    hidden: int = 64  # width of both hidden layers of the trunk
    steps: int = 300  # full-batch Adam steps, the same for every model and size
    lr: float = 3e-3
    weighting: str = "equal"  # a name from mtl_tutorial.weightings (multi-task runs only)
    seed: int = 0  # the split, the subset, the initialisation

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", check_tasks(self.tasks))
        if self.train_size is not None and self.train_size < 10:
            raise ValueError(f"train_size must be at least 10 (one image per digit) or None, got {self.train_size}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must lie in (0, 1), got {self.test_fraction}")
        if self.hidden < 1 or self.steps < 1 or self.lr <= 0:
            raise ValueError(f"hidden, steps and lr must be positive, got {self.hidden}, {self.steps}, {self.lr}")


@cache
def load_digits_data() -> tuple[Tensor, Tensor]:
    """``(images (1797, 64) in [0, 1], digits (1797,))`` from scikit-learn's bundled copy."""
    from sklearn.datasets import load_digits  # a file inside the scikit-learn wheel: no download

    bunch = load_digits()
    images = torch.tensor(bunch.data, dtype=torch.float32) / 16.0  # (N, 64); pixels were 0..16
    return images, torch.tensor(bunch.target, dtype=torch.long)


def task_labels(digits: Tensor, task: str) -> Tensor:
    """The labels of ``task`` for these digit labels: the digits themselves, or 0/1 for a property."""
    check_tasks([task])
    if task == "digit":
        return digits
    members = torch.tensor(sorted(AUXILIARY_TASKS[task]))
    return torch.isin(digits, members).long()


def split_digits(digits: Tensor, seed: int, test_fraction: float = 1 / 3) -> tuple[Tensor, Tensor]:
    """A stratified split ``(train_indices, test_indices)``, disjoint and fixed by ``seed``.

    Each class is shuffled and its first ``round(test_fraction · n_class)`` images go to the test
    set. The training indices come in round-robin order over the classes (one image of each digit,
    then a second of each, ...), so that their first ``n`` form a class-balanced subset and the
    subsets for growing ``n`` are nested.
    """
    generator = torch.Generator().manual_seed(seed)
    test, train_per_class = [], []
    for c in range(10):
        members = torch.nonzero(digits == c).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        k = round(test_fraction * len(members))
        test.append(members[:k])
        train_per_class.append(members[k:])
    rounds = max(len(m) for m in train_per_class)
    train = [m[r] for r in range(rounds) for m in train_per_class if r < len(m)]
    return torch.stack(train), torch.cat(test).sort().values


class DigitsNet(nn.Module):
    """A shared MLP trunk 64 → hidden → hidden and one linear head per task.

    ``model(images (B, 64))`` -> ``{task: logits (B, classes)}``.

    >>> DigitsNet(("digit", "loop"), hidden=8)(torch.zeros(3, 64))["loop"].shape
    torch.Size([3, 2])
    """

    def __init__(self, tasks: Sequence[str], hidden: int = 64) -> None:
        super().__init__()
        self.tasks = check_tasks(tasks)
        self.trunk = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.heads = nn.ModuleDict({t: nn.Linear(hidden, NUM_CLASSES[t]) for t in self.tasks})

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        if images.dim() != 2 or images.shape[1] != 64:
            raise ValueError(f"images must have shape (B, 64) (flattened 8x8), got {tuple(images.shape)}")
        features = self.trunk(images)  # (B, hidden)
        return {t: head(features) for t, head in self.heads.items()}  # each (B, classes)

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.trunk.parameters())


def task_losses(model: DigitsNet, images: Tensor, labels: dict[str, Tensor]) -> Tensor:
    """The mean cross-entropy of each of the model's tasks, a vector ``(T,)`` in ``model.tasks`` order."""
    logits = model(images)
    return torch.stack([F.cross_entropy(logits[t], labels[t]) for t in model.tasks])  # (T,)


@dataclass
class DigitsResult:
    config: DigitsConfig
    test_accuracy: dict[str, float]  # per trained task
    train_accuracy: dict[str, float]
    final_losses: dict[str, float]  # training losses at the last step
    parameters: int
    train_size: int
    seconds: float


def train_digits(config: DigitsConfig) -> DigitsResult:
    r"""Train ``DigitsNet`` on ``config.tasks`` with full-batch Adam; evaluate on the held-out split.

    The objective is the weighting of the task losses, $L = \sum_t w_t L_t$ (a single task: its loss).
    The trunk is initialised from ``config.seed`` before the heads, so a multi-task and a
    single-task run of the same seed start from the same trunk and see the same images.
    """
    started = time.perf_counter()
    images, digits = load_digits_data()
    train_idx, test_idx = split_digits(digits, config.seed, config.test_fraction)
    if config.train_size is not None:
        if config.train_size > len(train_idx):
            raise ValueError(f"train_size {config.train_size} exceeds the training pool of {len(train_idx)} images")
        train_idx = train_idx[: config.train_size]
    labels = {t: task_labels(digits, t) for t in config.tasks}
    torch.manual_seed(config.seed)
    model = DigitsNet(config.tasks, config.hidden)
    weighting = make_weighting(config.weighting, len(config.tasks))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    x, y = images[train_idx], {t: v[train_idx] for t, v in labels.items()}  # (n, 64), (n,)
    for _ in range(config.steps):
        losses = task_losses(model, x, y)  # (T,)
        optimizer.zero_grad()
        weighting(losses).backward()
        optimizer.step()

    def accuracy(idx: Tensor) -> dict[str, float]:
        with torch.no_grad():
            logits = model(images[idx])
        return {t: (logits[t].argmax(1) == labels[t][idx]).float().mean().item() for t in config.tasks}

    return DigitsResult(
        config=config,
        test_accuracy=accuracy(test_idx),
        train_accuracy=accuracy(train_idx),
        final_losses=dict(zip(config.tasks, losses.tolist())),
        parameters=sum(p.numel() for p in model.parameters()),
        train_size=len(train_idx),
        seconds=time.perf_counter() - started,
    )


def digits_sweep(sizes: Sequence[int | None], seeds: Sequence[int], auxiliary: str = "loop", **options) -> list[dict]:
    """Multi-task (digit + ``auxiliary``) and single-task (digit) runs for every size and seed.

    ``options`` go to :class:`DigitsConfig`. Returns one record per run with its test accuracies.
    """
    if auxiliary not in AUXILIARY_TASKS:
        raise KeyError(f"unknown auxiliary task {auxiliary!r}; valid ones are: {', '.join(AUXILIARY_TASKS)}")
    records = []
    for size in sizes:
        for seed in seeds:
            for model, tasks in (("multitask", ("digit", auxiliary)), ("single", ("digit",))):
                result = train_digits(DigitsConfig(tasks=tasks, train_size=size, seed=seed, **options))
                records.append({"model": model, "auxiliary": auxiliary, "train_size": result.train_size,
                                "seed": seed, "test_accuracy": result.test_accuracy,
                                "train_accuracy": result.train_accuracy, "seconds": round(result.seconds, 3)})
    return records


def summarise_sweep(records: Sequence[dict]) -> list[dict]:
    """Per (auxiliary, size): digit accuracy of both models and their seed-paired difference."""
    rows = []
    keys = sorted({(r["auxiliary"], r["train_size"]) for r in records})
    for aux, size in keys:
        runs = {m: {r["seed"]: r["test_accuracy"]["digit"] for r in records
                    if r["auxiliary"] == aux and r["train_size"] == size and r["model"] == m}
                for m in ("multitask", "single")}
        seeds = sorted(set(runs["multitask"]) & set(runs["single"]))
        diff = paired_difference([runs["multitask"][s] for s in seeds], [runs["single"][s] for s in seeds])
        rows.append({"auxiliary": aux, "train_size": size, "seeds": seeds, **diff})
    return rows


MODELS = ("multitask", "single")
SIZES = (20, 50, 100, 200, 400, 1198)  # 1198: the whole training pool
COMMAND = "python -m mtl_tutorial.studies.digits"


def run_key(record: dict) -> tuple[int, int, int, int]:
    """Where a run sits in the summary: (auxiliary task, training size, seed, model), in that order."""
    return (list(AUXILIARY_TASKS).index(record["auxiliary"]), record["train_size"], record["seed"],
            MODELS.index(record["model"]))


def training_pool_size(test_fraction: float = DigitsConfig.test_fraction) -> int:
    """How many images the training pool holds (the same for every seed): 1,198 by default."""
    return len(split_digits(load_digits_data()[1], 0, test_fraction)[0])


def mergeable_summary(out: Path, config: dict) -> dict | None:
    """The summary stored at ``out`` (None if there is none); one of another config is refused."""
    stored = load_summary(out)
    if stored is not None:
        refuse_other_config(out, len(stored.get("runs", [])), stored.get("config"), config)
    return stored


def digits_study(sizes: Sequence[int] = SIZES, seeds: Sequence[int] = range(20),
                 auxiliary: Sequence[str] = tuple(AUXILIARY_TASKS), out: str | Path = RESULTS / "domains_digits.json",
                 steps: int = DigitsConfig.steps, threads: int | None = 1, force: bool = False) -> dict:
    """Run :func:`digits_sweep` for every auxiliary task and write the summary to ``out``; return it.

    The summary never shrinks: when ``out`` holds a summary of the same config, its runs and
    this call's are merged (this call's replace those of the same :func:`run_key`) and the
    summary is recomputed from all of them; a summary of another config is refused before any
    training, unless ``force``, which replaces the stored summary with this call's runs.
    Every run names the call that trained it (``run["trained"]``, a key of ``"trainings"``).
    """
    sizes, seeds, auxiliary = list(dict.fromkeys(sizes)), sorted(set(seeds)), list(dict.fromkeys(auxiliary))
    pool = training_pool_size()
    bad = [n for n in sizes if not 10 <= n <= pool]
    if bad:
        raise UsageError(f"--sizes must lie between 10 (one image per digit) and {pool} (the training pool), "
                         f"got {' '.join(map(str, bad))}")
    unknown = [a for a in auxiliary if a not in AUXILIARY_TASKS]
    if unknown or not auxiliary or not seeds:
        raise UsageError(f"give seeds and auxiliary tasks from: {', '.join(AUXILIARY_TASKS)}; got {unknown or 'none'}")
    out = Path(out)
    config = asdict(DigitsConfig(steps=steps))
    command = (f"{COMMAND} --sizes {' '.join(map(str, sizes))} --seeds {seeds_text(seeds)} --auxiliary "
               f"{' '.join(auxiliary)}" + (f" --steps {steps}" if steps != DigitsConfig.steps else "")
               + (f" --threads {threads}" if threads else ""))
    stored = None if force else mergeable_summary(out, config)
    this_call = {(a, n, s, m) for a in auxiliary for n in sizes for s in seeds for m in MODELS}
    kept = {(r["auxiliary"], r["train_size"], r["seed"], r["model"]) for r in (stored or {}).get("runs", [])}
    check_summary(out, len(kept | this_call), force, rerun=f"`{COMMAND}` with every seed")
    apply_threads(threads)
    started = time.perf_counter()
    training = run_provenance() | {"command": command}
    records = [r for aux in auxiliary for r in digits_sweep(sizes, seeds, aux, steps=steps)]
    stored = None if force else mergeable_summary(out, config)  # again: another call may have written since
    runs, trainings = merge_runs(stored, records, run_key, training)
    runs.sort(key=run_key)
    prov = provenance("domains_digits", started, threads, sorted({r["seed"] for r in runs}), command)
    prov["training_time_s"] = round(sum(r["seconds"] for r in runs), 1)  # every run the summary holds
    prov["run_commits"] = sorted({t.get("git_commit", "not recorded") for t in trainings.values()})
    result = {"provenance": prov, "config": config, "summary": summarise_sweep(runs), "runs": runs,
              "trainings": trainings}
    save_summary(out, result, force, rerun=f"`{COMMAND}` with every seed")
    return result


def _spread(row: dict) -> str:
    if row["ci95"] is None:
        return f"paired difference {100 * row['mean']:+.2f} points (one seed: no spread, no interval)"
    return (f"paired difference {100 * row['mean']:+.2f} ± {100 * row['std']:.2f} points (95% CI "
            f"{100 * row['ci95'][0]:+.2f} .. {100 * row['ci95'][1]:+.2f})")


def make_parser() -> StudyParser:
    parser = study_parser("digits", __doc__)
    parser.add_argument("--sizes", type=positive_int, nargs="+", default=list(SIZES),
                        help="training images per run, 10 to 1198 (default: %(default)s)")
    add_seeds(parser, default=range(20))
    parser.add_argument("--auxiliary", nargs="+", default=list(AUXILIARY_TASKS), choices=list(AUXILIARY_TASKS),
                        help="auxiliary tasks, one sweep each (default: all)")
    parser.add_argument("--steps", type=positive_int, default=DigitsConfig.steps,
                        help="full-batch Adam steps per run (default: %(default)s; fewer for a quick try)")
    add_threads(parser, default=1)
    add_out(parser, "domains_digits.json")
    add_force(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    result = digits_study(args.sizes, args.seeds, args.auxiliary, args.out, args.steps, args.threads, args.force)
    for row in result["summary"]:
        print(f"{row['auxiliary']:7s} n={row['train_size']:5d}, {len(row['seeds'])} seeds: multi-task "
              f"{100 * row['mean_a']:.1f}%, single {100 * row['mean_b']:.1f}%, {_spread(row)}")
    print(f"wrote {args.out}: {len(result['runs'])} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
