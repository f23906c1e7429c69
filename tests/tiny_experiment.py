"""A tiny experiment for the fault tests: one seed, the two classification tasks, 6 steps of a
16-wide one-layer Transformer; its three runs train in about 1.5 s each on one thread.

``python tests/tiny_experiment.py tiny --out DIR/tiny.json`` runs the experiments command with it
registered (the fault tests kill that process half way).
"""

from __future__ import annotations

from mtl_tutorial.config import ExperimentConfig, ModelConfig, TrainConfig
from mtl_tutorial.studies import cli, experiments


def tiny_runs() -> list[experiments.Run]:
    def config(tasks: tuple[str, ...], seed: int) -> ExperimentConfig:
        return ExperimentConfig(
            model=ModelConfig(d_model=16, num_layers=1, num_heads=2, d_ff=32),
            train=TrainConfig(tasks=tasks, seed=seed, batch_size=8, max_steps=6, eval_every=3, warmup_steps=2,
                              patience=0))

    runs = [experiments.Run("multitask/seed0", config(("sentiment", "source"), 0))]
    runs += [experiments.Run(f"single-{t}/seed0", config((t,), 0)) for t in ("sentiment", "source")]
    return runs


if __name__ == "__main__":
    experiments.EXPERIMENTS["tiny"] = tiny_runs
    raise SystemExit(cli.run(experiments.main))
