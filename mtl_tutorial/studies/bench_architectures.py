r"""What an architecture costs: one training step of each sharing architecture, over hard sharing.

    python -m mtl_tutorial.studies.bench --architectures [--rounds 5] [--steps 2] [--threads N] [--out FILE.json]

**Time per step.** For every architecture $a$ of
:data:`~mtl_tutorial.architectures.ARCHITECTURES`, $\tilde t_a$ is the median time of one
:func:`~mtl_tutorial.step.train_step` (forward and backward of the three tasks' losses with the
case study's static weights 0.2 / 0.2 / 1, gradient clipping, AdamW update) on the case-study
batches: 32 snippets per task, the model of ``case_study_config`` built with that architecture
(seed 0). ``text_to_text (one task per step)`` is the step of T5's mixing
(``TrainConfig.mixing="temperature"``), one task's batch per step: it is timed as a call of T
such steps, one per task, divided by T (the mean over the tasks, whose steps differ in cost). The
ratio is $r_a = \tilde t_a / \tilde t_{\text{hard}}$.

The architectures are timed *interleaved*, with the harness of the method benchmark
(:func:`mtl_tutorial.studies.bench_methods.interleaved_timings`): in each of ``rounds`` rounds every
architecture takes ``steps`` steps, in a seeded random order, on the same prepared batches, and
$r_a$ is the median over rounds of the ratio within a round, so that a change of machine load
between rounds affects every architecture alike. Wall-clock and process CPU time are both
recorded; on a loaded machine the CPU-time ratio is the steadier one.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import replace

import torch
from torch import nn

from mtl_tutorial.architectures import ARCHITECTURES
from mtl_tutorial.batching import Batch, TaskStream
from mtl_tutorial.step import train_step
from mtl_tutorial.studies.bench_methods import (
    Configuration,
    Timings,
    bench_provenance,
    interleaved_timings,
)
from mtl_tutorial.studies.experiments import CASE_STUDY_WEIGHTS, case_study_config
from mtl_tutorial.studies.pipeline import build_model, prepare_data
from mtl_tutorial.tasks import TASKS, Task
from mtl_tutorial.weightings import Static

BASELINE = "hard"
ONE_TASK_PER_STEP = "text_to_text (one task per step)"


def parameter_summary(model: nn.Module) -> dict[str, int]:
    """Distinct parameters in all (tied weights counted once), shared θ_s, and each task's θ_t."""
    counts = {"total": sum(p.numel() for p in model.parameters())}
    counts.update(model.parameter_counts())
    return counts


def architecture_configurations(
    models: Mapping[str, nn.Module], tasks: Sequence[Task], one_task_per_step: str | None = "text_to_text"
) -> tuple[list[Configuration], dict[str, int]]:
    """One timed step per model, with the case study's static weights and an AdamW optimiser.

    With ``one_task_per_step``, that model is timed a second time as T5's mixing trains it, one
    task's batch per step (:data:`ONE_TASK_PER_STEP`): a call makes T such steps, one per task.
    Returns the configurations and the training steps each call makes.
    """
    if BASELINE not in models:
        raise ValueError(f"the ratios are to {BASELINE!r}: include it among the models, got {list(models)}")
    weights = [CASE_STUDY_WEIGHTS.get(t.name, 1.0) for t in tasks]
    weighting = Static(weights)

    def stepper(model: nn.Module, one_task: bool = False):
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)

        def run(batches: Mapping[str, Batch]) -> object:
            if one_task:  # T steps of one task each
                return [train_step(model, {t.name: batches[t.name]}, optimizer, weighting, tasks, grad_clip=1.0)
                        for t in tasks]
            return train_step(model, batches, optimizer, weighting, tasks, grad_clip=1.0)
        return run

    configs = [Configuration(name, "architecture", "ours", name, stepper(model)) for name, model in models.items()]
    if one_task_per_step is not None:
        if one_task_per_step not in models:
            raise ValueError(f"no model {one_task_per_step!r} to time one task per step; models: {list(models)}")
        configs.append(Configuration(ONE_TASK_PER_STEP, "architecture", "ours", one_task_per_step,
                                     stepper(models[one_task_per_step], one_task=True)))
    steps_per_call = {c.name: len(tasks) if c.name == ONE_TASK_PER_STEP else 1 for c in configs}
    return configs, steps_per_call


def ratio_rows(configs: Sequence[Configuration], timings: Timings,
               steps_per_call: Mapping[str, int] | None = None) -> dict[str, dict]:
    """Per configuration: median ms per training step (wall, CPU) and the ratio to hard sharing
    (median over rounds); a call that makes k training steps counts as k (``steps_per_call``)."""
    rows = {}
    for config in configs:
        k = (steps_per_call or {}).get(config.name, 1)
        row = {"architecture": config.method, "train_steps_per_call": k}
        for clock, table in (("wall", timings.wall), ("cpu", timings.cpu)):
            mine, base = table[config.name], table[BASELINE]
            row[f"{clock}_ms"] = 1e3 * statistics.median(t for r in mine for t in r) / k
            per_round = [statistics.median(m) / k / statistics.median(b) for m, b in zip(mine, base)]
            row[f"{clock}_ratio"] = statistics.median(per_round)
            row[f"{clock}_ratio_per_round"] = per_round
        rows[config.name] = row
    return rows


def run_architectures_benchmark(
    rounds: int = 5, steps: int = 2, warmup: int = 1, batch_size: int = 32, num_batches: int = 10
) -> dict:
    """Every architecture on the case-study data and batches (seed 0), timed interleaved.

    Returns ``{"rows": ..., "parameters": ...}``: :func:`ratio_rows` and, per architecture,
    :func:`parameter_summary`.
    """
    all_tasks = tuple(TASKS)
    config = case_study_config(all_tasks, seed=0, weights=CASE_STUDY_WEIGHTS)
    data = prepare_data(config)
    tasks = list(TASKS.values())
    models = {}
    for name in ARCHITECTURES:
        config.model = replace(config.model, architecture=name)
        models[name] = build_model(config, tasks, data.tokenizer.vocab_size)
    streams = {t.name: TaskStream(data.encoded["train"][t.name], batch_size, seed=0) for t in tasks}
    prepared = [{name: s.next() for name, s in streams.items()} for _ in range(num_batches)]
    configs, steps_per_call = architecture_configurations(models, tasks)
    torch.manual_seed(0)
    timings = interleaved_timings(configs, prepared, rounds=rounds, steps=steps, warmup=warmup)
    return {"rows": ratio_rows(configs, timings, steps_per_call),
            "parameters": {name: parameter_summary(model) for name, model in models.items()}}


def provenance(command: str) -> dict:
    """Command, date, git commit (and whether the package differs from it), versions, threads,
    machine and its CPU count: :func:`~mtl_tutorial.studies.bench_methods.bench_provenance`."""
    return bench_provenance(command)


def print_table(result: Mapping[str, dict]) -> None:
    print(f"{'architecture':34s} {'parameters':>10s} {'wall ms':>8s} {'wall x':>7s} {'CPU ms':>8s} {'CPU x':>6s}")
    for name, row in result["rows"].items():
        params = result["parameters"][row["architecture"]]["total"]
        print(f"{name:34s} {params:10,d} {row['wall_ms']:8.1f} {row['wall_ratio']:7.2f} "
              f"{row['cpu_ms']:8.1f} {row['cpu_ratio']:6.2f}")
