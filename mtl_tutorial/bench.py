"""Benchmark: the multi-task step against single-task steps on the same model and batches.

    python -m mtl_tutorial.bench [--steps 30] [--trunk transformer|lstm] [--out FILE.json]

Prints examples per second and milliseconds per step. The claim it checks: one equal-weight
multi-task step costs no more than the sum of its single-task steps (a benchmark, not a test:
timings depend on the machine).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from mtl_tutorial.batching import TaskStream
from mtl_tutorial.config import ExperimentConfig, ModelConfig
from mtl_tutorial.pipeline import build_model, prepare_data
from mtl_tutorial.step import train_step
from mtl_tutorial.tasks import TASKS
from mtl_tutorial.weightings import Equal


def time_steps(model, batches_list, tasks, steps: int, warmup: int = 5) -> list[float]:
    """Seconds per call of ``train_step`` on each prepared batch dict, after ``warmup`` calls."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    weighting = Equal(len(tasks))
    times = []
    for i in range(warmup + steps):
        batches = batches_list[i % len(batches_list)]
        start = time.perf_counter()
        train_step(model, batches, optimizer, weighting, tasks)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def run_benchmark(steps: int = 30, trunk: str = "transformer", batch_size: int = 32) -> dict[str, dict[str, float]]:
    config = ExperimentConfig(model=ModelConfig(trunk=trunk))
    data = prepare_data(config)
    tasks = list(TASKS.values())
    model = build_model(config, tasks, data.tokenizer.vocab_size)
    streams = {t.name: TaskStream(data.encoded["train"][t.name], batch_size, seed=0) for t in tasks}
    prepared = [{name: s.next() for name, s in streams.items()} for _ in range(20)]
    rows = {}
    for task in tasks:  # one task per step, same batches as in the multi-task step
        only = [{task.name: b[task.name]} for b in prepared]
        t = statistics.median(time_steps(model, only, tasks, steps))
        rows[f"single: {task.name}"] = {"ms_per_step": 1e3 * t, "examples_per_s": batch_size / t}
    t = statistics.median(time_steps(model, prepared, tasks, steps))
    rows["multi-task (equal weights)"] = {"ms_per_step": 1e3 * t, "examples_per_s": len(tasks) * batch_size / t}
    rows["sum of single-task steps"] = {
        "ms_per_step": sum(r["ms_per_step"] for k, r in rows.items() if k.startswith("single")),
        "examples_per_s": float("nan"),
    }
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mtl_tutorial.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per configuration (median reported)")
    parser.add_argument("--trunk", default="transformer", choices=["transformer", "lstm"])
    parser.add_argument("--out", type=Path, help="also write the table, with versions and machine, as JSON")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    rows = run_benchmark(args.steps, args.trunk)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, trunk={args.trunk}, batch 32 per task")
    print(f"{'configuration':30s} {'ms/step':>9s} {'examples/s':>11s}")
    for name, r in rows.items():
        print(f"{name:30s} {r['ms_per_step']:9.1f} {r['examples_per_s']:11.1f}")
    multi = rows["multi-task (equal weights)"]["ms_per_step"]
    total = rows["sum of single-task steps"]["ms_per_step"]
    print(f"multi-task step / sum of single-task steps = {multi / total:.2f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "command": "python -m mtl_tutorial.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": platform.machine(), "processor": platform.processor(),
            "trunk": args.trunk, "steps": args.steps, "batch_size_per_task": 32,
            "rows": rows, "ratio_multi_to_sum_of_single": multi / total,
        }, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
