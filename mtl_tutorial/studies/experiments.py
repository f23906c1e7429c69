"""Named experiments too long for a notebook; each writes a JSON result with its provenance.

    python -m mtl_tutorial.studies.experiments case_study      # multi-task vs single-task, 3 seeds
    python -m mtl_tutorial.studies.experiments article_lstm    # the article's LSTM recipe, 2 seeds
    python -m mtl_tutorial.studies.experiments methods         # every weighting and aggregator, 3 seeds
    python -m mtl_tutorial.studies.experiments --list

Two processes side by side: ``--seeds 0 --threads 1`` and ``--seeds 1,2 --threads 1`` (or
``--shard 0/2`` and ``--shard 1/2``) each train their share and write no summary; once both have
finished, the same command without ``--seeds``/``--shard`` collects every run into the summary.

Results go to ``book/results/NAME.json`` (override with ``--out``). Every finished run is also
kept under ``book/results/runs/NAME/`` so an interrupted experiment resumes where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from mtl_tutorial.baselines import KneserNeyLM, nb_logistic_regression, tfidf_logistic_regression
from mtl_tutorial.config import ExperimentConfig, ModelConfig, TokenizerConfig, TrainConfig
from mtl_tutorial.evaluation import delta_m, sample
from mtl_tutorial.studies import RESULTS, cli
from mtl_tutorial.studies.cli import UsageError, add_seeds, add_threads, study_parser
from mtl_tutorial.studies.pipeline import CaseStudyData, prepare_data, train_and_evaluate
from mtl_tutorial.studies.provenance import provenance, run_provenance
from mtl_tutorial.studies.store import check_summary, load_run, save_run, save_summary
from mtl_tutorial.tasks import TASKS

SEEDS = (0, 1, 2)


@dataclass
class Run:
    """One training run inside an experiment."""

    name: str  # e.g. "multitask/seed0"
    config: ExperimentConfig


# Chapter 5's weights for the multi-task model: the classifiers at a fifth of the language model.
# With the article's equal weights the classification gradients slow the shared language model down
# (chapter 5 measures it; seed 0: test perplexity 239 with equal weights, 153 with these, 148 for
# the language model alone); these weights were chosen on a 600-step trial, not tuned further.
CASE_STUDY_WEIGHTS = {"sentiment": 0.2, "source": 0.2, "generation": 1.0}


def case_study_config(tasks: tuple[str, ...], seed: int, weights: dict[str, float] | None = None) -> ExperimentConfig:
    """Chapter 5's recipe: the causal Transformer, BPE-4k, batch 32 per task, 3,000 steps at 3e-3."""
    return ExperimentConfig(
        train=TrainConfig(tasks=tasks, seed=seed, weights=weights, lr=3e-3, max_steps=3000, eval_every=200,
                          patience=4),
    )


def article_config(tasks: tuple[str, ...], seed: int) -> ExperimentConfig:
    """The article's hyper-parameters: word vocabulary of 10,000, Embedding(128) -> LSTM(128),
    batch 32, 10 epochs of the sentiment training set, equal weights on the task losses."""
    steps_per_epoch = 10_481 // 32  # sentiment training examples on split 0 / batch size
    return ExperimentConfig(
        tokenizer=TokenizerConfig.article(),
        model=ModelConfig.article(),
        train=TrainConfig(tasks=tasks, seed=seed, max_steps=10 * steps_per_epoch, eval_every=steps_per_epoch,
                          patience=0, warmup_steps=0, lr=1e-3, weight_decay=0.0),
    )


def case_study_runs() -> list[Run]:
    """Per seed: the multi-task model and one single-task model per task. The article's equal
    weights are run for seed 0 only (one more 3,000-step run per seed was beyond our budget)."""
    all_tasks = ("sentiment", "source", "generation")
    runs = []
    for seed in SEEDS:
        runs.append(Run(f"multitask/seed{seed}", case_study_config(all_tasks, seed, CASE_STUDY_WEIGHTS)))
        for task in TASKS:
            runs.append(Run(f"single-{task}/seed{seed}", case_study_config((task,), seed)))
    runs.append(Run("multitask-equal/seed0", case_study_config(all_tasks, 0)))
    return runs


ARTICLE_SEEDS = (0, 1)  # the article's LSTM is slow on the CPU (its untied 10k-word output layer)


def article_runs() -> list[Run]:
    runs = []
    for seed in ARTICLE_SEEDS:
        runs.append(Run(f"multitask/seed{seed}", article_config(("sentiment", "generation"), seed)))
        for task in ("sentiment", "generation"):
            runs.append(Run(f"single-{task}/seed{seed}", article_config((task,), seed)))
    return runs


# Chapter 4's comparison: every loss weighting and gradient aggregator on the case study. 39
# multi-task runs at chapter 5's 3,000 steps would take about 8 CPU-hours, so the comparison uses a
# 500-step budget (the same recipe otherwise), with single-task runs of the same budget for Δm.
METHOD_STEPS = 500
ONES = {"sentiment": 1.0, "source": 1.0, "generation": 1.0}  # the raw task Jacobian for aggregators
METHODS: dict[str, dict] = {
    # weightings: one backward pass of the weighted loss
    "static": {"weights": CASE_STUDY_WEIGHTS},
    "uncertainty": {"weighting": "uncertainty"},
    "dwa": {"weighting": "dwa", "weighting_options": {"steps_per_epoch": 50}},
    "gradnorm": {"weighting": "gradnorm", "weighting_options": {"alpha": 1.5}},
    "rlw": {"weighting": "rlw"},
    # aggregators on the raw task Jacobian; "equal" is mean_t ∇L_t, the gradient of equal weights,
    # taken through the Jacobian so that its Gramian is recorded too
    "equal": {"weights": ONES, "aggregator": "mean"},
    "mgda": {"weights": ONES, "aggregator": "mgda"},
    "pcgrad": {"weights": ONES, "aggregator": "pcgrad"},
    "graddrop": {"weights": ONES, "aggregator": "graddrop"},
    "cagrad": {"weights": ONES, "aggregator": "cagrad", "aggregator_options": {"c": 0.4}},
    "imtl_g": {"weights": ONES, "aggregator": "imtl_g"},
    "nash_mtl": {"weights": ONES, "aggregator": "nash_mtl"},
    "upgrad": {"weights": ONES, "aggregator": "upgrad"},
}


def methods_config(tasks: tuple[str, ...], seed: int, method: dict | None = None) -> ExperimentConfig:
    """Chapter 5's recipe at ``METHOD_STEPS`` steps, evaluated every 100, no early stopping."""
    return ExperimentConfig(
        train=TrainConfig(tasks=tasks, seed=seed, lr=3e-3, max_steps=METHOD_STEPS, eval_every=100, patience=0,
                          **(method or {})),
    )


def runs_per_seed(make_config: Callable[..., ExperimentConfig], variants: dict[str, dict]) -> list[Run]:
    """Per seed: one single-task run per task, then one multi-task run per variant,
    ``make_config(tasks, seed[, variant])`` building each configuration."""
    all_tasks = ("sentiment", "source", "generation")
    runs = []
    for seed in SEEDS:
        for task in TASKS:
            runs.append(Run(f"single-{task}/seed{seed}", make_config((task,), seed)))
        for name, variant in variants.items():
            runs.append(Run(f"multitask-{name}/seed{seed}", make_config(all_tasks, seed, variant)))
    return runs


def methods_runs() -> list[Run]:
    """Per seed: one single-task run per task, then one multi-task run per method."""
    return runs_per_seed(methods_config, METHODS)


# Chapter 2's comparison of sharing architectures, on the budget and recipe of the methods
# comparison, with chapter 5's static weights. The text-to-text model is trained twice: on every
# task each step, and with T5's temperature mixing (one task per step, so three times the steps for
# the same number of batches per task).
ARCHITECTURE_VARIANTS: dict[str, dict] = {
    "hard": {"architecture": "hard"},
    "cross_stitch": {"architecture": "cross_stitch"},
    "mmoe": {"architecture": "mmoe"},
    "adapters": {"architecture": "adapters"},
    "text_to_text": {"architecture": "text_to_text"},
    "text_to_text_t5mix": {"architecture": "text_to_text", "mixing": "temperature", "steps": 3 * METHOD_STEPS},
}


def architecture_config(tasks: tuple[str, ...], seed: int, variant: dict | None = None) -> ExperimentConfig:
    """``methods_config`` with a model architecture, chapter 5's static weights for the multi-task runs."""
    variant = dict(variant or {})
    config = methods_config(tasks, seed, {"weights": CASE_STUDY_WEIGHTS} if len(tasks) > 1 else None)
    config.model = dataclasses.replace(config.model, architecture=variant.pop("architecture", "hard"))
    if "mixing" in variant:
        config.train = dataclasses.replace(config.train, mixing=variant.pop("mixing"))
    if "steps" in variant:
        steps = variant.pop("steps")
        config.train = dataclasses.replace(config.train, max_steps=steps, eval_every=steps // 5)
    return config


def architecture_runs() -> list[Run]:
    """Per seed: the single-task runs of the methods comparison (same configs), then every variant,
    then the text-to-text model trained on generation alone: the baseline that separates what the
    text-to-text form itself does to the language model from what the other tasks add."""
    runs = runs_per_seed(architecture_config, ARCHITECTURE_VARIANTS)
    for seed in SEEDS:
        config = architecture_config(("generation",), seed, {"architecture": "text_to_text"})
        runs.append(Run(f"text_to_text-single-generation/seed{seed}", config))
    return runs


# Chapter 5's two confounds, measured on its own recipe (issue: label prefixes and clustered
# batches). Half the generation examples start with their label token, so the language-model loss
# also trains the trunk on the sentiment labels: "no_prefix" runs use prefix_dropout = 1.0 (no
# label prefixes at all). Length pools put most plots of the source task into a few batches:
# "by_class" runs draw classification batches with the class mix of uniform sampling. The runs
# with prefixes and length pools are those of `case_study` (same configs).
ABLATION_VARIANTS: dict[str, dict] = {
    "no_prefix": {"prefix_dropout": 1.0},
    "by_class": {"batch_sampling": "length_pools_by_class"},
    "by_class-no_prefix": {"batch_sampling": "length_pools_by_class", "prefix_dropout": 1.0},
}


def ablation_runs() -> list[Run]:
    """Per seed: the multi-task model under each variant, and the single-task models a variant
    changes (the classifiers under by_class, the generator without prefixes)."""
    all_tasks = ("sentiment", "source", "generation")
    runs = []
    for seed in SEEDS:
        for name, variant in ABLATION_VARIANTS.items():
            config = case_study_config(all_tasks, seed, CASE_STUDY_WEIGHTS)
            config.train = dataclasses.replace(config.train, **variant)
            runs.append(Run(f"multitask-{name}/seed{seed}", config))
        for task, variant in (("sentiment", "by_class"), ("source", "by_class"), ("generation", "no_prefix")):
            config = case_study_config((task,), seed)
            config.train = dataclasses.replace(config.train, **ABLATION_VARIANTS[variant])
            runs.append(Run(f"single-{task}-{variant}/seed{seed}", config))
    return runs


EXPERIMENTS: dict[str, Callable[[], list[Run]]] = {
    "case_study": case_study_runs, "article_lstm": article_runs, "methods": methods_runs,
    "architectures": architecture_runs, "prefix_ablation": ablation_runs,
}


def run_one(run: Run, data: CaseStudyData) -> dict:
    """Train one configuration, return a JSON-able record (no weights)."""
    result = train_and_evaluate(run.config, data)
    record = {
        "name": run.name,
        "config": dataclasses.asdict(run.config),
        "test": result.test,
        "best_step": result.history.best_step,
        "steps": result.steps,
        "stopped_early": result.history.stopped_early,
        "seconds": round(result.seconds, 1),
        "seconds_per_step": round(result.seconds / result.steps, 4),
        "parameters": result.parameters,
        "history": {"eval_steps": result.history.eval_steps, "val": result.history.val,
                    **_trace(result.history)},
    }
    if "generation" in run.config.train.tasks:
        model = result.trainer.best_model("generation")
        record["samples"] = {
            label: sample(model, data.tokenizer, label, num_samples=3, temperature=0.9, top_k=40,
                          seed=run.config.train.seed)
            for label in ("fresh", "rotten", "plot")
        }
    return record


def _trace(history, points: int = 100) -> dict:
    """Every k-th step's training losses, weights and Gramian (about ``points`` of them), 4 digits."""
    stride = max(1, len(history.steps) // points)
    keep = list(range(stride - 1, len(history.steps), stride))

    def rounded(x):
        return [rounded(v) for v in x] if isinstance(x, list) else float(f"{x:.4g}")

    trace = {
        "trace_steps": [history.steps[i] for i in keep],
        "train_loss": {t: rounded([v[i] for i in keep]) for t, v in history.train_loss.items()},
        "weights": rounded([history.weights[i] for i in keep]),
    }
    if history.gramian:
        trace["gramian"] = rounded([history.gramian[i] for i in keep])
    return trace


def same_config(stored: dict, current: dict) -> bool:
    """Is a stored run's config (``asdict`` of an :class:`ExperimentConfig`) the current one?

    A field the stored record lacks (added to the config since) counts with its default value, so
    runs recorded before a new field existed stay reusable while the field is left at its default.
    """
    defaults = json.loads(json.dumps(dataclasses.asdict(ExperimentConfig())))
    if set(stored) != set(current):
        return False
    for section, values in current.items():
        filled = {**defaults.get(section, {}), **stored[section]}
        if filled != values:
            return False
    return True


def baselines(data: CaseStudyData) -> dict:
    """The classical baselines: TF-IDF + LR and NB-LR for the classifiers, Kneser-Ney for perplexity.

    Keys: ``tfidf_{task}`` and ``nblr_{task}`` for sentiment and source; ``kneser_ney_3gram``,
    ``kneser_ney_4gram`` and ``modified_kneser_ney_4gram`` (Chen & Goodman's three discounts).
    """
    out = {}
    splits = data.splits
    for name in ("sentiment", "source"):
        r = tfidf_logistic_regression(TASKS[name], splits.train, splits.val, splits.test)
        out[f"tfidf_{name}"] = {"C": r.C, "val_accuracy": r.val_accuracy, "test": r.test}
        nb = nb_logistic_regression(TASKS[name], splits.train, splits.val, splits.test)
        out[f"nblr_{name}"] = {"C": nb.C, "alpha": nb.alpha, "val_accuracy": nb.val_accuracy, "test": nb.test}
    train_ids, test_ids = data.encoded["train"]["generation"].ids, data.encoded["test"]["generation"].ids
    for key, order, modified in (("kneser_ney_3gram", 3, False), ("kneser_ney_4gram", 4, False),
                                 ("modified_kneser_ney_4gram", 4, True)):
        lm = KneserNeyLM(order=order, vocab_size=data.tokenizer.vocab_size, modified=modified).fit(train_ids)
        ppl, tokens = lm.perplexity(test_ids)
        discounts = [list(d) for d in lm.discounts[1:]] if modified else lm.discount[1:]
        out[key] = {"test": {"perplexity": ppl}, "tokens": tokens, "discounts": discounts}
    return out


def summarise(records: list[dict]) -> dict:
    """Per group of runs (``multitask``, ``single-sentiment``, ...): mean, standard deviation and
    per-seed values of every test metric, and for multi-task groups Δm against the single-task runs
    of the same seed."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r["name"].split("/")[0], []).append(r)
    summary = {}
    for group, rs in groups.items():
        summary[group] = {}
        for task in rs[0]["test"]:
            for metric in rs[0]["test"][task]:
                values = [r["test"][task][metric] for r in rs]
                summary[group][f"{task}.{metric}"] = {
                    "mean": statistics.fmean(values),
                    "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                    "values": values,
                }
        summary[group]["seconds_per_step"] = statistics.fmean(r["seconds_per_step"] for r in rs)
    for group, rs in groups.items():  # Δm of every multi-task group against the single-task runs
        if not group.startswith("multitask"):
            continue
        deltas = []
        names = {x["name"]: x for x in records}
        for r in rs:
            seed = r["name"].split("/")[1]
            if any(f"single-{t}/{seed}" not in names for t in r["test"]):
                continue  # this seed's single-task runs are not among the records: no Δm for it
            singles = {t: names[f"single-{t}/{seed}"] for t in r["test"]}
            multi = {t: r["test"][t][TASKS[t].metric] for t in r["test"]}
            single = {t: singles[t]["test"][t][TASKS[t].metric] for t in r["test"]}
            deltas.append(delta_m(multi, single, {t: TASKS[t].lower_is_better for t in r["test"]}))
        if not deltas:
            continue
        summary[group]["delta_m"] = {"mean": statistics.fmean(deltas),
                                     "std": statistics.stdev(deltas) if len(deltas) > 1 else 0.0, "values": deltas}
    return summary


def command_for(name: str) -> str:
    """The command that trains (or collects) every run of experiment ``name``."""
    return f"python -m mtl_tutorial.studies.experiments {name}"


def select_runs(name: str, seeds: list[int] | None = None, shard: tuple[int, int] | None = None) -> list[Run]:
    """The runs of experiment ``name``, restricted to ``seeds`` and to share ``shard=(k, n)``."""
    if name not in EXPERIMENTS:
        raise UsageError(f"unknown experiment {name!r}; valid experiments are: {', '.join(EXPERIMENTS)}")
    runs = EXPERIMENTS[name]()
    if seeds is not None:
        valid = sorted({r.config.train.seed for r in runs})
        unknown = sorted(set(seeds) - set(valid))
        if unknown:
            raise UsageError(f"experiment {name!r} has no seeds {unknown}; its seeds are {valid}")
        runs = [r for r in runs if r.config.train.seed in seeds]
    if shard is not None:
        k, n = shard
        if not 0 <= k < n:
            raise UsageError(f"--shard K/N needs 0 <= K < N, got {k}/{n}")
        if k >= len(runs):
            raise UsageError(f"--shard {k}/{n} selects no run: {name!r} has {len(runs)} runs here, so K must be "
                             f"below {min(n, len(runs))}")
        runs = runs[k::n]
    return runs


def run_experiment(name: str, out: Path | None = None, fresh: bool = False, threads: int | None = None,
                   seeds: list[int] | None = None, shard: tuple[int, int] | None = None,
                   force: bool = False) -> dict:
    """Run (or resume) the experiment ``name``; ``threads`` sets ``torch.set_num_threads``.

    Every finished run is saved at once, atomically, under ``runs/NAME/`` beside ``out``, with its
    provenance (commit, versions, threads, time) from when it was trained. ``seeds`` restricts the
    runs to those seeds, ``shard=(k, n)`` to every n-th run starting at run k, e.g. to train in
    two processes side by side: such a call trains its share and writes no summary. A last call
    without either reuses every finished run and writes the summary, which never shrinks: one that
    would hold fewer runs than the stored summary is refused unless ``force``.
    """
    if threads is not None:
        if threads < 1:
            raise UsageError(f"threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    started = time.perf_counter()
    runs = select_runs(name, seeds, shard)
    out = Path(out or RESULTS / f"{name}.json")
    run_dir = out.parent / "runs" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    share = seeds is not None or shard is not None
    if not share:  # refuse a summary that would shrink before hours of training, not after
        check_summary(out, len(runs), force, rerun=f"`{command_for(name)}`")
    prov = provenance(name, started, threads, seeds)  # the commit the runs start from
    paths = {run.name: run_dir / (run.name.replace("/", "_") + ".json") for run in runs}
    stored = {}  # every stored record is checked before any work: a broken or foreign one stops the call
    for run in runs:
        path = paths[run.name]
        if path.exists() and not fresh:
            record = load_run(path, command_for(name))
            if not same_config(record["config"], json.loads(json.dumps(dataclasses.asdict(run.config)))):
                raise UsageError(f"{path} holds {run.name} trained with another configuration; to keep it, write "
                                 f"elsewhere with --out; to retrain and replace it, pass --fresh")
            stored[run.name] = record
    data = prepare_data(runs[0].config)
    records = []
    for run in runs:
        if run.name in stored:
            print(f"[{name}] {run.name}: reusing {paths[run.name]}", flush=True)
            records.append(stored[run.name])
            continue
        print(f"[{name}] {run.name}: training", flush=True)
        record = run_one(run, data)
        record["provenance"] = run_provenance()
        save_run(paths[run.name], record)
        print(f"[{name}] {run.name}: {record['steps']} steps, {record['seconds']} s, test {record['test']}", flush=True)
        records.append(record)
    if share:  # a share of the runs: the summary needs them all
        print(f"[{name}] {len(records)} runs of this share done; when every share has finished, collect every "
              f"run and write {out} with: {command_for(name)}", flush=True)
        return {"runs": records}
    result = {
        "provenance": prov,
        "splits": data.splits.counts(),
        "cleaning": dataclasses.asdict(data.splits.report),
        "baselines": baselines(data),
        "summary": summarise(records),
        "runs": records,
    }
    result["provenance"]["wall_time_s"] = round(time.perf_counter() - started, 1)  # this call only
    result["provenance"]["training_time_s"] = round(sum(r["seconds"] for r in records), 1)  # all runs
    result["provenance"]["run_commits"] = sorted({r.get("provenance", {}).get("git_commit", "not recorded")
                                                  for r in records})
    save_summary(out, result, force=force, rerun=f"`{command_for(name)}`")
    print(f"wrote {out}")
    return result


def shard_spec(text: str) -> tuple[int, int]:
    """argparse type: ``"K/N"`` -> ``(K, N)`` with 0 <= K < N."""
    k, slash, n = text.partition("/")
    if not slash or not k.isdigit() or not n.isdigit():
        raise argparse.ArgumentTypeError(f"expected K/N such as 0/2 (run every N-th run from run K), got {text!r}")
    if not int(k) < int(n):
        raise argparse.ArgumentTypeError(f"K/N needs 0 <= K < N, got {text!r}")
    return int(k), int(n)


def main(argv: list[str] | None = None) -> int:
    parser = study_parser("experiments", __doc__)
    parser.add_argument("name", nargs="?", choices=list(EXPERIMENTS), metavar="NAME",
                        help=f"one of: {', '.join(EXPERIMENTS)}")
    parser.add_argument("--list", action="store_true", help="list the experiments")
    parser.add_argument("--out", type=Path, help="where to write the JSON summary (default: book/results/NAME.json)")
    parser.add_argument("--fresh", action="store_true",
                        help="retrain runs even if their results exist (and replace them)")
    parser.add_argument("--force", action="store_true",
                        help="replace the stored summary even if it holds more runs than this call")
    add_seeds(parser, default=None, help="train only these seeds (no summary is written)")
    parser.add_argument("--shard", type=shard_spec,
                        help="K/N: train only every N-th run starting at run K, for N processes side by side "
                             "(no summary is written)")
    add_threads(parser)
    args = parser.parse_args(argv)
    if args.list:
        for key, make in EXPERIMENTS.items():
            print(f"{key}: {len(make())} runs")
        return 0
    if not args.name:
        parser.error(f"name an experiment: {', '.join(EXPERIMENTS)} (or --list)")
    run_experiment(args.name, args.out, args.fresh, args.threads, args.seeds, args.shard, args.force)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
