"""From an :class:`ExperimentConfig` to a trained model and its test metrics, in two calls.

>>> data = prepare_data(ExperimentConfig())                          # split, tokenizer, encodings
>>> run = train_and_evaluate(ExperimentConfig(), data)               # train, select, test
>>> run.test["sentiment"]["accuracy"]
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from mtl_tutorial.architectures import make_architecture
from mtl_tutorial.batching import EncodedTask, TaskStream, encode_task
from mtl_tutorial.config import ExperimentConfig, ModelConfig
from mtl_tutorial.data import Splits, load_splits
from mtl_tutorial.evaluation import evaluate
from mtl_tutorial.tasks import TASKS, Task, get_task
from mtl_tutorial.tokenizer import TextTokenizer
from mtl_tutorial.trainer import History, Trainer


@dataclass
class CaseStudyData:
    """The split corpus, its tokenizer, and every task encoded for every split."""

    splits: Splits
    tokenizer: TextTokenizer
    encoded: dict[str, dict[str, EncodedTask]]  # split -> task -> examples

    def task_data(self, split: str, names: tuple[str, ...] | list[str]) -> dict[str, EncodedTask]:
        return {name: self.encoded[split][name] for name in names}


def prepare_data(config: ExperimentConfig, directory: Path | None = None) -> CaseStudyData:
    """Load and split the corpus, get the tokenizer trained on the training split, encode."""
    splits = load_splits(config.data, directory)
    tokenizer = TextTokenizer.for_splits(splits, config.tokenizer, config.data, directory)
    encoded = {
        split: {name: encode_task(task, splits[split], tokenizer) for name, task in TASKS.items()}
        for split in ("train", "val", "test")
    }
    return CaseStudyData(splits, tokenizer, encoded)


@dataclass
class RunResult:
    """A trained model, its history, and test metrics of each task at its best validation step."""

    config: ExperimentConfig
    model: nn.Module
    trainer: Trainer
    history: History
    test: dict[str, dict[str, float]]
    parameters: dict[str, int]
    seconds: float
    steps: int
    extra: dict = field(default_factory=dict)


def build_model(config: ExperimentConfig, tasks: list[Task], vocab_size: int) -> nn.Module:
    """A model of ``config.model.architecture`` for ``tasks``, initialised from ``config.train.seed``."""
    if config.model.max_length < config.tokenizer.max_length:
        raise ValueError(
            f"ModelConfig.max_length={config.model.max_length} is shorter than "
            f"TokenizerConfig.max_length={config.tokenizer.max_length}; make them equal"
        )
    torch.manual_seed(config.train.seed)
    return make_architecture(config.model.architecture, config.model, tasks, vocab_size)


def train_and_evaluate(config: ExperimentConfig, data: CaseStudyData, split: str = "test") -> RunResult:
    """Train on ``config.train.tasks``; report each task on ``split`` with its best-validation weights."""
    tasks = [get_task(name) for name in config.train.tasks]
    model = build_model(config, tasks, data.tokenizer.vocab_size)
    trainer = Trainer(model, tasks, data.task_data("train", config.train.tasks),
                      data.task_data("val", config.train.tasks), config.train)
    start = time.perf_counter()
    history = trainer.fit()
    seconds = time.perf_counter() - start
    test = {
        task.name: evaluate(trainer.best_model(task.name), task, data.encoded[split][task.name])
        for task in tasks
    }
    return RunResult(config, model, trainer, history, test, model.parameter_counts(), seconds, trainer.step)


def case_study_setup(trunk: str = "transformer", batch_size: int = 32, num_batches: int = 20):
    """The case-study model (seed 0), its tasks, and ``num_batches`` prepared batch dicts (one batch per task)."""
    config = ExperimentConfig(model=ModelConfig(trunk=trunk))
    data = prepare_data(config)
    tasks = list(TASKS.values())
    model = build_model(config, tasks, data.tokenizer.vocab_size)
    streams = {t.name: TaskStream(data.encoded["train"][t.name], batch_size, seed=0) for t in tasks}
    prepared = [{name: s.next() for name, s in streams.items()} for _ in range(num_batches)]
    return model, tasks, prepared
