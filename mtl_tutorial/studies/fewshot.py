r"""The WordNet few-shot benchmark: MAML, FOMAML, Reptile, pre-training + fine-tuning, and scratch.

    python -m mtl_tutorial.studies.fewshot [--shots 1 5] [--episodes 600] [--threads 1] [--out FILE]
        [--runs FOLDER] [--fresh] [--force]

Task: 5-way K-shot classification of WordNet definitions into lexicographer categories never seen
in training (:mod:`mtl_tutorial.meta.wordnet`: 25 meta-train, 10 meta-val, 10 meta-test categories,
split seed 0), K = 1 and 5, 15 query definitions per class. Every method uses one backbone,
hashed n-grams (2,048) -> ``Linear(2048, H)`` -> ReLU -> ``Linear(H, 5)``
(:func:`~mtl_tutorial.meta.transfer.fewshot_mlp`), and ends every test episode the same way:
$k$ SGD steps of size $\alpha$ on the support set from its own starting weights
(:func:`~mtl_tutorial.meta.evaluation.finetune_curve`). What differs is where the start comes from:

==========  ===================================================================================
maml        meta-learned by second-order MAML (Finn et al., 2017), ``inner_steps`` inner steps
fomaml      the same, first-order (Finn et al., 2017, §5.2)
reptile     meta-learned by Reptile (Nichol et al., 2018), its direction fed to Adam
pretrain    a 25-way classifier of the meta-train categories; head replaced per episode by the
            support-set class means (:mod:`~mtl_tutorial.meta.transfer`)
scratch     a fresh random initialisation per episode
==========  ===================================================================================

Model selection uses the 10 meta-val categories only (:class:`FewShotConfig` lists the grids):
each candidate is trained once, scored on ``val_episodes`` meta-val episodes, and the best
one on meta-val is the one scored on the meta-test episodes. Test episode ``i`` is a pure
function of ``(seed + 2, i)``, so every method is scored on the same episodes and compared
pairwise (:func:`~mtl_tutorial.meta.evaluation.paired_difference`). Each finished setting is
kept under ``book/results/runs/fewshot/`` so that an interrupted run resumes, and so that the
1-shot and 5-shot settings can run in two processes (``--shots 1`` and ``--shots 5``) and be
gathered by a last call. Each setting carries the provenance of the call that computed it (commit,
versions, threads, time), which a later call that reuses it keeps. The summary never shrinks: a
call merges its settings with the stored summary's; stored settings or a summary of another
config (e.g. another ``--episodes``) are refused before any work, unless ``--fresh`` (the
settings) or ``--force`` (the summary).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mtl_tutorial.meta import make_meta_learner, meta_train_step
from mtl_tutorial.meta.adaptation import Params
from mtl_tutorial.meta.episodes import Episode, EpisodeSampler
from mtl_tutorial.meta.evaluation import finetune_curve, mean_ci95, paired_difference
from mtl_tutorial.meta.features import HashedNgrams, PrecomputedTextFeatures
from mtl_tutorial.meta.transfer import (
    fewshot_mlp,
    pretrain_classifier,
    pretrained_initialisations,
    random_initialisations,
)
from mtl_tutorial.meta.wordnet import (
    CATEGORIES,
    CategorySplit,
    WordNetData,
    load_wordnet,
    split_categories,
)
from mtl_tutorial.studies import RESULTS
from mtl_tutorial.studies.cli import (
    StudyParser,
    UsageError,
    add_force,
    add_out,
    add_threads,
    apply_threads,
    int_at_least,
    output_folder,
    positive_int,
    run,
    study_parser,
)
from mtl_tutorial.studies.provenance import provenance, run_provenance
from mtl_tutorial.studies.store import (
    check_summary,
    config_differences,
    load_run,
    load_summary,
    refuse_other_config,
    same_json,
    save_run,
    save_summary,
)

METHODS = ("maml", "fomaml", "reptile", "pretrain", "scratch")
META_METHODS = ("maml", "fomaml", "reptile")

# Starting weights for a chunk of episodes: (episodes, their indices in the sampler) -> (B, ...) params
Initialiser = Callable[[Sequence[Episode], Sequence[int]], Params]


@dataclass
class FewShotConfig:
    """The whole benchmark: data, backbone, the searched grids (``*_grid``) and the fixed values."""

    text: str = "definition"  # what is classified: word, definition or both (wordnet.TEXT_KINDS)
    num_ways: int = 5
    shots: tuple[int, ...] = (1, 5)
    num_queries: int = 15  # per class, in meta-training, meta-val and meta-test episodes
    num_features: int = 2048  # hashed n-gram dimension
    hidden: int = 64  # H, fixed (not searched): H = 128 doubles the cost of a MAML step
    split_seed: int = 0
    # meta-learners: Adam on the meta-direction; each candidate is one full meta-training run
    meta_steps: int = 1000  # outer steps: 4,000 training episodes
    meta_batch_size: int = 4
    meta_lr: float = 1e-3
    inner_steps: int = 5  # during meta-training
    # alpha, also the fine-tuning step size at test; pilot on meta-val (1-shot MAML, 150 outer
    # steps): 0.5 -> 35% , 2.0 -> 38%, 8.0 diverges; two candidates around 2 fit the CPU budget
    inner_lr_grid: tuple[float, ...] = (1.0, 3.0)
    meta_test_steps_grid: tuple[int, ...] = (5, 10, 20)  # SGD steps at test (MAML: 10 at test)
    # pre-training: a 25-way classifier of the meta-train categories, fixed recipe
    pretrain_steps: int = 3000
    pretrain_batch_size: int = 64
    pretrain_lr: float = 1e-3
    # fine-tuning of the pre-trained network (0 steps: the class-mean head alone) and from scratch
    finetune_lr_grid: tuple[float, ...] = (0.1, 0.5, 2.0)
    pretrain_steps_grid: tuple[int, ...] = (0, 10, 25, 50)
    scratch_lr_grid: tuple[float, ...] = (0.5, 2.0, 8.0)
    scratch_steps_grid: tuple[int, ...] = (10, 25, 50, 100)
    val_episodes: int = 200
    test_episodes: int = 600
    seed: int = 0  # init and meta-train episodes; meta-val episodes use seed + 1, meta-test seed + 2

    def __post_init__(self) -> None:
        self.shots = tuple(self.shots)
        for name in ("inner_lr_grid", "meta_test_steps_grid", "finetune_lr_grid", "pretrain_steps_grid",
                     "scratch_lr_grid", "scratch_steps_grid"):
            grid = tuple(getattr(self, name))
            if not grid:
                raise ValueError(f"{name} is empty; give at least one value to search")
            setattr(self, name, grid)
        if self.test_episodes < 2 or self.val_episodes < 2:
            raise ValueError("val_episodes and test_episodes must be at least 2 (a confidence interval needs 2)")
        if min(self.shots, default=0) < 1:
            raise ValueError(f"shots must be positive numbers of support examples per class, got {self.shots}")


@dataclass
class FewShotData:
    """The corpus, the category split and the hashed features of every text (computed once)."""

    data: WordNetData
    split: CategorySplit
    features: PrecomputedTextFeatures

    def sampler(self, part: str, config: FewShotConfig, shots: int, seed: int) -> EpisodeSampler:
        """N-way ``shots``-shot episodes over the categories of ``part`` (train, val or test) only."""
        return EpisodeSampler(self.features, self.data.labels, config.num_ways, shots, config.num_queries,
                              classes=self.split[part], seed=seed, class_names=CATEGORIES)


def prepare(config: FewShotConfig) -> FewShotData:
    data = load_wordnet(config.text)
    features = PrecomputedTextFeatures(data.texts, HashedNgrams(config.num_features))
    return FewShotData(data, split_categories(num_val=10, num_test=10, seed=config.split_seed), features)


def shared_initialisation(model: nn.Module) -> Initialiser:
    """Every episode starts from ``model``'s weights (a meta-learned initialisation)."""
    return lambda episodes, indices: {n: p.detach().expand(len(episodes), *p.shape)
                                      for n, p in model.named_parameters()}


def score(config: FewShotConfig, initialise: Initialiser, sampler: EpisodeSampler, count: int, lr: float,
          steps: Sequence[int], chunk: int = 100) -> dict[int, torch.Tensor]:
    """Query accuracy ``{k: (count,)}`` of episodes ``0..count-1`` after ``k`` fine-tuning steps."""
    skeleton = fewshot_mlp(config.num_features, config.hidden, config.num_ways)  # structure only
    parts: dict[int, list[torch.Tensor]] = {k: [] for k in steps}
    for start in range(0, count, chunk):
        indices = list(range(start, min(start + chunk, count)))
        episodes = [sampler.episode(i) for i in indices]
        for k, accuracies in finetune_curve(skeleton, initialise(episodes, indices), episodes, lr, steps).items():
            parts[k].append(accuracies)
    return {k: torch.cat(v) for k, v in parts.items()}


def meta_train(config: FewShotConfig, method: str, sampler: EpisodeSampler, inner_lr: float) -> tuple[nn.Module, list[float]]:
    """``config.meta_steps`` outer Adam steps of ``method`` on meta-train episodes, from the seeded init."""
    model = fewshot_mlp(config.num_features, config.hidden, config.num_ways, config.seed)
    learner = make_meta_learner(method, F.cross_entropy, inner_steps=config.inner_steps, inner_lr=inner_lr)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.meta_lr)
    batch = config.meta_batch_size
    losses = [meta_train_step(model, sampler.episodes(batch, start=step * batch), learner, optimizer)
              for step in range(config.meta_steps)]
    return model, losses


def select(candidates: list[dict]) -> dict:
    """The candidate with the best meta-val accuracy; ties go to the first in grid order."""
    return max(candidates, key=lambda c: c["val_accuracy"])  # max keeps the first of equal keys


def candidate(hyper: dict, val: torch.Tensor) -> dict:
    mean, ci = mean_ci95(val)
    return {**hyper, "val_accuracy": round(mean, 4), "val_ci95": round(ci, 4)}


def run_setting(config: FewShotConfig, bench: FewShotData, shots: int, pretrained: nn.Module) -> dict:
    """Search on meta-val, then score the chosen candidate of every method on the meta-test episodes."""
    train = bench.sampler("train", config, shots, config.seed)
    val = bench.sampler("val", config, shots, config.seed + 1)
    test = bench.sampler("test", config, shots, config.seed + 2)
    methods: dict[str, dict] = {}
    initialisers: dict[str, Initialiser] = {
        "pretrain": lambda e, i: pretrained_initialisations(pretrained, e, config.num_ways),
        "scratch": lambda e, i: random_initialisations(config.num_features, config.hidden, config.num_ways,
                                                        config.seed + 3, i),
    }
    for method in METHODS:
        started = time.process_time()
        candidates, models = [], {}
        if method in META_METHODS:
            for lr in config.inner_lr_grid:
                model, losses = meta_train(config, method, train, lr)
                models[lr] = (model, losses)
                curve = score(config, shared_initialisation(model), val, config.val_episodes, lr,
                              config.meta_test_steps_grid)
                candidates += [candidate({"lr": lr, "steps": k}, v) for k, v in curve.items()]
        else:
            lrs = config.finetune_lr_grid if method == "pretrain" else config.scratch_lr_grid
            steps = config.pretrain_steps_grid if method == "pretrain" else config.scratch_steps_grid
            for lr in lrs:
                curve = score(config, initialisers[method], val, config.val_episodes, lr, steps)
                candidates += [candidate({"lr": lr, "steps": k}, v) for k, v in curve.items()]
        chosen = select(candidates)
        record: dict = {"chosen": {"lr": chosen["lr"], "steps": chosen["steps"]}, "candidates": candidates}
        if method in META_METHODS:
            model, losses = models[chosen["lr"]]
            initialisers[method] = shared_initialisation(model)
            record["meta_train_loss"] = [round(sum(losses[i : i + 50]) / len(losses[i : i + 50]), 4)
                                         for i in range(0, len(losses), 50)]  # means over 50 steps
        accuracies = score(config, initialisers[method], test, config.test_episodes, chosen["lr"],
                           (chosen["steps"],))[chosen["steps"]]
        mean, ci = mean_ci95(accuracies)
        record |= {"test_accuracy": round(mean, 4), "test_ci95": round(ci, 4),
                   "per_episode": [round(a, 4) for a in accuracies.tolist()],
                   "cpu_s": round(time.process_time() - started, 1)}
        methods[method] = record
        print(f"{shots}-shot {method:8s} chosen {record['chosen']} val {chosen['val_accuracy']:.3f} "
              f"test {mean:.3f} ± {ci:.3f} ({record['cpu_s']} CPU-s)", flush=True)
    paired = {}
    for a, b in itertools.combinations(METHODS, 2):
        mean, ci = paired_difference(methods[a]["per_episode"], methods[b]["per_episode"])
        paired[f"{a} - {b}"] = {"mean": round(mean, 4), "ci95": round(ci, 4)}
    return {"shots": shots, "methods": methods, "paired": paired}


def table(settings: dict[str, dict], methods: Sequence[str] = METHODS) -> str:
    """Markdown table: method x setting, test accuracy ± 95% half-width, in percent."""
    header = "| method | " + " | ".join(settings) + " |\n|---|" + "---|" * len(settings)
    rows = [f"| {m} | " + " | ".join(f"{100 * s['methods'][m]['test_accuracy']:.1f} ± "
                                      f"{100 * s['methods'][m]['test_ci95']:.1f}" for s in settings.values()) + " |"
            for m in methods]
    return "\n".join([header, *rows])


COMMAND = "python -m mtl_tutorial.studies.fewshot"


def count_settings(result: dict) -> int:
    """The number of settings (e.g. 1-shot, 5-shot) a summary holds."""
    return len(result.get("settings", {}))


def _command(shots: Sequence[int] | None, episodes: int, threads: int | None) -> str:
    return (COMMAND + (f" --shots {' '.join(map(str, shots))}" if shots is not None else "")
            + f" --episodes {episodes}" + (f" --threads {threads}" if threads else ""))


def mergeable_settings(out: Path, shared: dict) -> dict[str, dict]:
    """The settings of the summary stored at ``out``, as they are stored; one of another config is refused."""
    settings = (load_summary(out) or {}).get("settings", {})
    for setting in settings.values():
        refuse_other_config(out, len(settings), setting.get("config"), shared)
    return settings


def stored_setting(path: Path, shared: dict, command: str) -> dict | None:
    """The finished setting stored at ``path`` (None if there is none); one of another config is refused."""
    if not path.exists():
        return None
    record = load_run(path, command)
    if not same_json(record.get("config"), shared):
        raise UsageError(f"{path} holds a setting of another config ({config_differences(record.get('config'), shared)}"
                         "); pass --fresh to recompute and replace it, or choose another --runs folder")
    return record


def fewshot_study(shots: Sequence[int] = (1, 5), episodes: int = 600, out: str | Path = RESULTS / "fewshot.json",
                  runs: str | Path = RESULTS / "runs" / "fewshot", fresh: bool = False, force: bool = False,
                  threads: int | None = 1) -> dict:
    """Compute (or reuse) each setting of ``shots`` under ``runs``; write the summary to ``out``; return it.

    A setting stored under ``runs`` is reused with the provenance it was computed with
    (``fresh`` recomputes it; one of another config is refused without ``fresh``); a newly
    computed one is saved there at once with
    :func:`~mtl_tutorial.studies.provenance.run_provenance`. The summary holds this call's
    settings and the stored summary's other settings; a stored summary of another config is
    refused before any work, unless ``force``, which replaces it with this call's settings.
    """
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    config = FewShotConfig(shots=tuple(dict.fromkeys(shots)), test_episodes=episodes)
    out, runs = Path(out), Path(runs)
    shared = {k: v for k, v in asdict(config).items() if k != "shots"}
    kept = {} if force else mergeable_settings(out, shared)
    names = {f"{k}-shot" for k in config.shots}
    rerun = f"`{COMMAND}` with every --shots and the stored --episodes"
    check_summary(out, len(kept.keys() | names), force, count_settings, rerun=rerun)
    settings, cpu = {}, {}
    for shots_k in config.shots:  # every stored setting is checked before any work
        path = runs / f"{config.num_ways}way{shots_k}shot.json"
        record = None if fresh else stored_setting(path, shared, _command([shots_k], episodes, threads))
        if record is not None:
            print(f"reusing {path}")
            settings[f"{shots_k}-shot"] = record  # with the provenance it was computed with
    apply_threads(threads)
    bench = pretrained = None
    for shots_k in config.shots:
        if f"{shots_k}-shot" in settings:
            continue
        path = runs / f"{config.num_ways}way{shots_k}shot.json"
        command = _command([shots_k], episodes, threads)
        if bench is None:
            t = time.process_time()
            bench = prepare(config)
            cpu["featurise_s"] = round(time.process_time() - t, 1)
            t = time.process_time()
            pretrained, losses = pretrain_classifier(
                bench.features, bench.data.labels, bench.split.train, config.hidden, config.pretrain_steps,
                config.pretrain_batch_size, config.pretrain_lr, config.seed)
            cpu["pretrain_s"] = round(time.process_time() - t, 1)
            print(f"featurised in {cpu['featurise_s']} CPU-s; pre-trained in {cpu['pretrain_s']} CPU-s, "
                  f"last loss {sum(losses[-100:]) / 100:.3f}", flush=True)
        t, wall = time.process_time(), time.perf_counter()
        training = run_provenance() | {"command": command}
        record = run_setting(config, bench, shots_k, pretrained)
        # featurising and pre-training are charged to the first setting this process computes
        record |= {"config": shared, "process_cpu_s": cpu | {"setting_s": round(time.process_time() - t, 1)},
                   "provenance": training | {"wall_time_s": round(time.perf_counter() - wall, 1)}}
        save_run(path, record)
        settings[f"{shots_k}-shot"] = record
        cpu = {}
    kept = {} if force else mergeable_settings(out, shared)  # again: another call may have written since
    settings = dict(sorted((kept | settings).items(), key=lambda item: int(item[0].split("-")[0])))
    prov = provenance("fewshot", started_wall, threads, [config.seed], _command(config.shots, episodes, threads))
    prov["cpu_time_s"] = round(time.process_time() - started_cpu, 1)  # this call only
    prov["run_commits"] = sorted({s.get("provenance", {}).get("git_commit", "not recorded") for s in settings.values()})
    result = {
        "benchmark": f"WordNet lexicographer categories, {config.num_ways}-way, {config.num_queries} queries per "
                     f"class, {episodes} meta-test episodes per setting",
        "split": {part: split_categories(num_val=10, num_test=10, seed=config.split_seed).names(part)
                  for part in ("train", "val", "test")},
        "table": table(settings),
        "cpu_s_total": round(sum(sum(s["process_cpu_s"].values()) for s in settings.values()), 1),
        "settings": settings,
        "provenance": prov,
    }
    save_summary(out, result, force, count_settings, rerun=rerun)
    return result


def make_parser() -> StudyParser:
    parser = study_parser("fewshot", __doc__)
    parser.add_argument("--shots", type=positive_int, nargs="+", default=[1, 5],
                        help="support examples per class, one setting each (default: 1 5)")
    parser.add_argument("--episodes", type=int_at_least(2), default=600,
                        help="meta-test episodes per setting, at least 2 (default: %(default)s)")
    add_threads(parser, default=1)
    add_out(parser, "fewshot.json")
    parser.add_argument("--runs", type=output_folder, default=RESULTS / "runs" / "fewshot",
                        help="folder of finished settings, reused when their config matches "
                             "(default: book/results/runs/fewshot)")
    parser.add_argument("--fresh", action="store_true", help="recompute settings already stored under --runs")
    add_force(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    result = fewshot_study(args.shots, args.episodes, args.out, args.runs, args.fresh, args.force, args.threads)
    print(result["table"])
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
