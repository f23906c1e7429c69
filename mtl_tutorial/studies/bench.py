"""Benchmark: the multi-task step against single-task steps on the same model and batches.

    python -m mtl_tutorial.studies.bench [--steps 30] [--trunk transformer|lstm] [--out FILE.json] [--force]
    python -m mtl_tutorial.studies.bench --methods [--torchjd] [--robustness] [--rounds 5] [--steps 3] [--out FILE.json]
    python -m mtl_tutorial.studies.bench --architectures [--rounds 5] [--steps 2] [--threads N] [--out FILE.json]

Prints examples per second and milliseconds per step. The claim it checks: one equal-weight
multi-task step costs no more than the sum of its single-task steps (a benchmark, not a test:
timings depend on the machine).

``--methods`` times instead the step with every aggregator and every weighting as a ratio to the
equal-weight step, interleaved (``--rounds`` rounds of ``--steps`` steps per configuration);
``--torchjd`` adds the same steps done with torchjd 0.18 (``pip install -e '.[bench]'``);
``--robustness`` compares MGDA and CAGrad with torchjd's on badly scaled Jacobians. See
:mod:`mtl_tutorial.studies.bench_methods`.

``--architectures`` times one training step of every sharing architecture as a ratio to hard
sharing, interleaved in the same way. See :mod:`mtl_tutorial.studies.bench_architectures`.

With ``--out`` every table is written atomically with its provenance (command, date, git commit
and whether the package differs from it, versions, threads, machine). A table with fewer rows
than the file already holds (``--methods`` without ``--torchjd`` over a record with torchjd's
rows) is refused before any timing, unless ``--force``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from mtl_tutorial.step import train_step
from mtl_tutorial.studies.cli import (
    StudyParser,
    UsageError,
    add_force,
    add_threads,
    apply_threads,
    output_file,
    positive_int,
    run,
    study_parser,
)
from mtl_tutorial.studies.pipeline import case_study_setup
from mtl_tutorial.studies.store import check_summary, save_summary
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
    model, tasks, prepared = case_study_setup(trunk, batch_size)
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


COMMAND = "python -m mtl_tutorial.studies.bench"


def count_rows(record: dict) -> int:
    """The rows a benchmark record holds: timed configurations and robustness families."""
    return len(record.get("rows", ())) + len(record.get("robustness", ()))


def expected_rows(args: argparse.Namespace) -> int:
    """The rows this call will write, known before any timing (fewer if torchjd skips an aggregator)."""
    if args.architectures:
        from mtl_tutorial.architectures import ARCHITECTURES

        return len(ARCHITECTURES) + 1  # and text_to_text timed one task per step
    if not (args.methods or args.robustness):
        return 5  # three single-task rows, the multi-task row and their sum
    from mtl_tutorial.aggregators import AGGREGATORS
    from mtl_tutorial.studies import bench_methods
    from mtl_tutorial.weightings import WEIGHTINGS

    rows = 0
    if args.methods:
        rows += 1 + len(AGGREGATORS) + len(WEIGHTINGS) - 1  # the equal step, aggregators, other weightings
        if args.torchjd:
            rows += sum(a in bench_methods.TORCHJD_NAMES for a in AGGREGATORS) + 1  # + the concatenated layout
    if args.robustness:
        rows += 2 * len(bench_methods.ROBUSTNESS_FAMILIES)  # ours and torchjd's
    return rows


def write(out: Path | None, record: dict, force: bool) -> None:
    if out is not None:
        save_summary(out, record, force, count_rows, rerun=f"`{COMMAND}` with the options of {out}'s 'command'")
        print(f"wrote {out}")


def make_parser() -> StudyParser:
    parser = study_parser("bench", __doc__)
    parser.add_argument("--steps", type=positive_int, help="timed steps per configuration (median reported); "
                        "default 30, with --methods 3 per round, with --architectures 2 per round")
    parser.add_argument("--trunk", default="transformer", choices=["transformer", "lstm"])
    parser.add_argument("--out", type=output_file, help="also write the table, with its provenance, as JSON")
    parser.add_argument("--methods", action="store_true",
                        help="time every aggregator and weighting as a ratio to the equal-weight step")
    parser.add_argument("--torchjd", action="store_true", help="with --methods: also torchjd's aggregated steps")
    parser.add_argument("--robustness", action="store_true",
                        help="MGDA and CAGrad, ours and torchjd's, on Jacobians with rows scaled by 1e-8 / 1e8")
    parser.add_argument("--architectures", action="store_true",
                        help="time one step of every sharing architecture as a ratio to hard sharing")
    parser.add_argument("--rounds", type=positive_int, default=5,
                        help="with --methods or --architectures: interleaved rounds (default: %(default)s)")
    add_threads(parser)
    add_force(parser, "the --out file")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 3 if args.methods else 2 if args.architectures else 30
    if args.torchjd and not args.methods:
        parser.error("--torchjd compares the timed steps: add --methods")
    if args.architectures and (args.methods or args.robustness):
        parser.error("--architectures is a benchmark of its own: run it without --methods / --robustness")
    if args.torchjd or args.robustness:
        from mtl_tutorial.studies import bench_methods

        try:
            bench_methods.require_torchjd()
        except ImportError as error:
            raise UsageError(str(error)) from None
    if args.out is not None:
        check_summary(args.out, expected_rows(args), args.force, count_rows,
                      rerun=f"`{COMMAND}` with the options of {args.out}'s 'command'")
    apply_threads(args.threads)
    command = " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])])
    if args.architectures:
        return architectures_main(args, command)
    if args.methods or args.robustness:
        return methods_main(args, command)
    from mtl_tutorial.studies.bench_methods import bench_provenance

    record = bench_provenance(command)
    rows = run_benchmark(args.steps, args.trunk)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, trunk={args.trunk}, batch 32 per task")
    print(f"{'configuration':30s} {'ms/step':>9s} {'examples/s':>11s}")
    for name, r in rows.items():
        print(f"{name:30s} {r['ms_per_step']:9.1f} {r['examples_per_s']:11.1f}")
    multi = rows["multi-task (equal weights)"]["ms_per_step"]
    total = rows["sum of single-task steps"]["ms_per_step"]
    print(f"multi-task step / sum of single-task steps = {multi / total:.2f}")
    record.update({"trunk": args.trunk, "steps": args.steps, "batch_size_per_task": 32,
                   "rows": rows, "ratio_multi_to_sum_of_single": multi / total})
    write(args.out, record, args.force)
    return 0


def methods_main(args: argparse.Namespace, command: str) -> int:
    """``--methods`` and/or ``--robustness``: print the tables, write them with --out."""
    from mtl_tutorial.studies import bench_methods

    record = bench_methods.bench_provenance(command)
    if args.torchjd or args.robustness:
        record["torchjd"] = bench_methods.torchjd_version()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads"
          + (f", torchjd {record['torchjd']}" if "torchjd" in record else ""))
    if args.methods:
        start = time.perf_counter()
        rows, notes = bench_methods.run_methods_benchmark(args.trunk, rounds=args.rounds, steps=args.steps,
                                                          torchjd=args.torchjd)
        print(f"trunk={args.trunk}, batch 32 per task, {args.rounds} interleaved rounds x {args.steps} steps "
              f"per configuration ({time.perf_counter() - start:.0f} s); ratio = median over rounds of "
              "(median step time / median equal-step time in that round)")
        bench_methods.print_overhead(rows)
        for note in notes:
            print("note:", note)
        record.update({"trunk": args.trunk, "batch_size_per_task": 32, "rounds": args.rounds,
                       "steps_per_round": args.steps, "rows": rows, "notes": notes})
    if args.robustness:
        print()
        robustness = bench_methods.robustness_table()
        bench_methods.print_robustness(robustness)
        record["robustness"] = robustness
    write(args.out, record, args.force)
    return 0


def architectures_main(args: argparse.Namespace, command: str) -> int:
    """``--architectures``: print the table, write it with its provenance with --out."""
    from mtl_tutorial.studies import bench_architectures

    record = bench_architectures.provenance(command)
    start = time.perf_counter()
    result = bench_architectures.run_architectures_benchmark(rounds=args.rounds, steps=args.steps)
    record["wall_time_s"] = round(time.perf_counter() - start, 1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {record['cpu_count']} CPUs; "
          f"case-study batch (32 per task, 3 tasks, static weights 0.2/0.2/1); {args.rounds} interleaved rounds x "
          f"{args.steps} steps per architecture ({record['wall_time_s']:.0f} s); ratio = median over rounds of "
          "(median step time / median hard-sharing step time in that round)")
    bench_architectures.print_table(result)
    record.update({"batch_size_per_task": 32, "rounds": args.rounds, "steps_per_round": args.steps, **result})
    write(args.out, record, args.force)
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
