"""A generic training loop: task mixing, evaluation, per-task early stopping, checkpoints.

Nothing here knows which weighting is used or what the tasks are: the multi-task step is
:func:`mtl_tutorial.step.train_step`, and the loop only feeds it batches and keeps records.

Model selection is per task: after each evaluation the loop keeps, for every task, the weights
of the step with its best validation metric, and :meth:`Trainer.best_model` hands them back.
Training stops early when no task has improved for ``patience`` evaluations.

A checkpoint resumes a run bit for bit, so it records what the numbers depend on beyond the
``TrainConfig``: a fingerprint of the encoded examples (which also reflect the corpus split, the
tokenizer and ``max_length``) and of the model (class, parameter names, shapes and dtypes, its
``config``; see :mod:`mtl_tutorial.fingerprint`); :meth:`Trainer.load_checkpoint` refuses a resume
on anything else.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import pickle
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from mtl_tutorial.aggregators import Aggregator, make_aggregator
from mtl_tutorial.batching import EncodedTask, TaskSchedule, TaskStream
from mtl_tutorial.config import TrainConfig
from mtl_tutorial.evaluation import evaluate
from mtl_tutorial.files import CorruptFileError, atomic_write
from mtl_tutorial.fingerprint import data_fingerprint, first_difference, model_fingerprint
from mtl_tutorial.step import NonFiniteError, train_step
from mtl_tutorial.tasks import Task
from mtl_tutorial.weightings import WEIGHTINGS, Equal, Static, Weighting, make_weighting


@dataclass
class History:
    """Per-step training losses and per-evaluation validation metrics."""

    steps: list[int] = field(default_factory=list)
    train_loss: dict[str, list[float]] = field(default_factory=dict)  # NaN where a task sat out
    objective: list[float] = field(default_factory=list)
    weights: list[list[float]] = field(default_factory=list)  # the weighting's weights, per step
    gramian: list[list[list[float]]] = field(default_factory=list)  # per step, with an aggregator
    eval_steps: list[int] = field(default_factory=list)
    val: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    best_step: dict[str, int] = field(default_factory=dict)
    stopped_early: bool = False
    wall_time: float = 0.0


def default_weighting(config: TrainConfig) -> Weighting:
    """Equal weights, or the static weights named in the config."""
    if config.weights is None:
        return Equal(len(config.tasks))
    return Static([config.weights[name] for name in config.tasks])


def weighting_from_config(config: TrainConfig, model: nn.Module) -> Weighting:
    """``config.weighting`` built with its options. A weighting whose constructor takes
    ``shared_parameters`` (GradNorm) is given the model's last shared layer there."""
    if config.weighting is None:
        return default_weighting(config)
    options = dict(config.weighting_options)
    if "shared_parameters" in inspect.signature(WEIGHTINGS[config.weighting]).parameters:
        if not hasattr(model, "last_shared_parameters"):
            raise TypeError(f"weighting {config.weighting!r} needs the last shared layer, but "
                            f"{type(model).__name__} has no last_shared_parameters() method")
        options["shared_parameters"] = model.last_shared_parameters()
    return make_weighting(config.weighting, len(config.tasks), **options)


def aggregator_from_config(config: TrainConfig) -> Aggregator | None:
    """``config.aggregator`` built with its options, or ``None``."""
    if config.aggregator is None:
        return None
    return make_aggregator(config.aggregator, **config.aggregator_options)


# TrainConfig fields a resume ignores: they cannot change a number the run computes
COSMETIC_FIELDS = ("progress",)  # the tqdm bar only draws
# fields a resume may change when asked to (load_checkpoint(..., allow_changes=...)): the way out of
# a divergence. The learning-rate schedule keeps its shape and restarts from the new lr.
RESUME_CHANGES = ("lr", "grad_clip")


def _lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0.1."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


class Trainer:
    """Trains ``model`` on ``tasks`` with the recipe in ``config``.

    ``weighting`` (default: equal or the config's static weights) and ``aggregator`` (default:
    none, one backward pass of the weighted loss) are passed through to
    :func:`~mtl_tutorial.step.train_step` unchanged. ``description`` (JSON values, e.g.
    ``{"tokenizer": asdict(tokenizer.config)}``) records what the encoded ids and the model cannot
    show; a checkpoint keeps it and a resume must match it.
    """

    def __init__(
        self,
        model: nn.Module,
        tasks: Sequence[Task],
        train_data: Mapping[str, EncodedTask],
        val_data: Mapping[str, EncodedTask],
        config: TrainConfig,
        weighting: Weighting | None = None,
        aggregator: Aggregator | None = None,
        description: Mapping[str, object] | None = None,
    ) -> None:
        names = [t.name for t in tasks]
        if names != list(config.tasks):
            raise ValueError(f"tasks {names} differ from TrainConfig.tasks {list(config.tasks)}")
        for split, data in (("train_data", train_data), ("val_data", val_data)):
            missing = set(names) - set(data)
            if missing:
                raise ValueError(f"{split} lacks encoded examples for tasks {sorted(missing)}")
            empty = [name for name in names if len(data[name]) == 0]
            if empty:
                raise ValueError(f"{split} has no examples for tasks {empty}; every task needs training "
                                 "examples and validation examples to be evaluated on")
        try:
            description_json = json.dumps(dict(description or {}), sort_keys=True)
        except TypeError as error:
            raise TypeError(f"description must hold JSON values (str, numbers, lists, dicts): {error}") from None
        self.model = model.to(config.device)
        self.tasks = list(tasks)
        self.val_data = val_data
        self.config = config
        self.weighting = (weighting or weighting_from_config(config, model)).to(config.device)
        self.aggregator = aggregator or aggregator_from_config(config)  # stateless: nothing to checkpoint
        if self.weighting.num_tasks != len(tasks):
            raise ValueError(f"{self.weighting!r} is for {self.weighting.num_tasks} tasks, not {len(tasks)}")
        torch.manual_seed(config.seed)
        decay = [p for p in model.parameters() if p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": config.weight_decay},
                {"params": no_decay + list(self.weighting.parameters()), "weight_decay": 0.0},
            ],
            lr=config.lr,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: _lr_factor(s, config.warmup_steps, config.max_steps)
        )
        self.streams = {
            t.name: TaskStream(train_data[t.name], config.batch_size, seed=config.seed * 1000 + i,
                               prefix_dropout=config.prefix_dropout, sampling=config.batch_sampling)
            for i, t in enumerate(tasks)
        }
        self.schedule = TaskSchedule(
            names, [len(train_data[n]) for n in names], config.mixing, config.mixing_temperature,
            seed=config.seed * 1000 + 999, limit=config.mixing_limit,
        )
        self.step = 0
        self.history = History(train_loss={n: [] for n in names}, val={n: [] for n in names})
        self.best_scores: dict[str, float] = {}
        self.best_states: dict[str, dict[str, torch.Tensor]] = {}
        self.evals_without_improvement = 0
        self.fingerprint = {  # what a checkpoint must match beyond the config (model: at save time)
            "data": {split: {n: data_fingerprint(data[n]) for n in names}
                     for split, data in (("train", train_data), ("val", val_data))},
            "description": description_json,
        }
        self.last_checkpoint: tuple[Path, int] | None = None  # (path, step) this trainer saved or loaded

    # ------------------------------------------------------------------ training
    def fit(self, until_step: int | None = None, checkpoint: str | Path | None = None) -> History:
        """Train to ``config.max_steps`` (or pause at ``until_step``), evaluating every ``eval_every`` steps.

        With ``checkpoint``, the state is saved there after every evaluation and at the end, and
        :meth:`load_checkpoint` resumes it exactly. A step that meets a NaN or infinite value
        applies nothing and raises :class:`~mtl_tutorial.step.NonFiniteError`; nothing is saved
        then, and the message names the last good checkpoint.
        """
        config = self.config
        stop = min(config.max_steps, until_step or config.max_steps)
        start_time = time.perf_counter()
        bar = tqdm(total=stop, initial=self.step, disable=not config.progress, desc="training")
        while self.step < stop and not self.history.stopped_early:
            names = self.schedule.tasks_for_step(self.step)
            batches = {name: self.streams[name].next() for name in names}
            try:
                log = train_step(self.model, batches, self.optimizer, self.weighting, self.tasks,
                                 grad_clip=config.grad_clip, step=self.step + 1, aggregator=self.aggregator)
            except NonFiniteError as error:  # nothing was applied: save nothing, point to the last good state
                bar.close()
                raise type(error)(f"{error}. {self._recovery(checkpoint)}") from None
            self.scheduler.step()
            self.step += 1
            self.history.steps.append(self.step)
            self.history.objective.append(log.objective)
            self.history.weights.append(log.weights)
            if log.gramian is not None:
                self.history.gramian.append(log.gramian)
            for name in self.history.train_loss:
                self.history.train_loss[name].append(log.losses.get(name, float("nan")))
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in log.losses.items()})
            if self.step % config.eval_every == 0 or self.step == config.max_steps:
                self._evaluate_and_select()
                if checkpoint is not None:
                    self.save_checkpoint(checkpoint)
        bar.close()
        self.history.wall_time += time.perf_counter() - start_time
        if checkpoint is not None:
            self.save_checkpoint(checkpoint)
        return self.history

    def _evaluate_and_select(self) -> None:
        improved = False
        self.history.eval_steps.append(self.step)
        for task in self.tasks:
            metrics = evaluate(self.model, task, self.val_data[task.name])
            self.history.val[task.name].append(metrics)
            score = metrics[task.metric]
            best = self.best_scores.get(task.name)
            if best is None or (score < best if task.lower_is_better else score > best):
                self.best_scores[task.name] = score
                self.best_states[task.name] = copy.deepcopy(self.model.state_dict())
                self.history.best_step[task.name] = self.step
                improved = True
        self.evals_without_improvement = 0 if improved else self.evals_without_improvement + 1
        if self.config.patience and self.evals_without_improvement >= self.config.patience:
            self.history.stopped_early = True

    def _recovery(self, checkpoint: str | Path | None) -> str:
        """After a non-finite step: where the last good state is, and how to resume from it."""
        settings = f"TrainConfig.lr is {self.config.lr}, grad_clip {self.config.grad_clip}"
        if self.last_checkpoint is not None:  # every step it holds passed the checks
            path, step = self.last_checkpoint
            return (f"Nothing was saved: the last good checkpoint is {path} (after step {step}); after the "
                    f"fix ({settings}) resume from it with load_checkpoint({str(path)!r}, "
                    f"allow_changes={RESUME_CHANGES})")
        if checkpoint is None:
            return f"Nothing is saved without fit(checkpoint=...); after the fix ({settings}) train again"
        return (f"Nothing was saved, and this run wrote no checkpoint yet (the first comes after step "
                f"{self.config.eval_every}; {checkpoint} is as it was); after the fix ({settings}) train again")

    def best_model(self, task: str) -> nn.Module:
        """A copy of the model with the weights of ``task``'s best validation step."""
        if task not in self.best_states:
            raise KeyError(f"no evaluation of task {task!r} yet; train first (valid: {', '.join(self.best_states)})")
        model = copy.deepcopy(self.model)
        model.load_state_dict(self.best_states[task])
        return model

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: str | Path) -> None:
        """Everything needed to resume bit-for-bit: weights, optimiser, streams, RNG, history, and
        the fingerprints of the data and the model. Written atomically: a crash half way leaves the
        previous checkpoint intact."""
        state = {
            "config": asdict(self.config),
            "fingerprint": {**self.fingerprint, "model": model_fingerprint(self.model)},
            "step": self.step,
            "model": self.model.state_dict(),
            "weighting": self.weighting.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "streams": {name: s.state_dict() for name, s in self.streams.items()},
            "schedule": self.schedule.state_dict(),
            "rng": torch.get_rng_state(),
            "history": asdict(self.history),
            "best_scores": dict(self.best_scores),
            "best_states": self.best_states,
            "evals_without_improvement": self.evals_without_improvement,
        }
        atomic_write(path, lambda f: torch.save(state, f))
        self.last_checkpoint = (Path(path), self.step)

    def load_checkpoint(self, path: str | Path, allow_changes: Collection[str] = ()) -> None:
        """Resume from :meth:`save_checkpoint` (loaded with ``weights_only=True``).

        The checkpoint must come from the same ``TrainConfig`` (up to ``COSMETIC_FIELDS``), data
        and model; the error names the part that differs. ``allow_changes`` (a subset of
        ``RESUME_CHANGES``) lets those fields of this trainer's config replace the checkpoint's,
        e.g. a lower ``lr`` after a divergence.
        """
        path = Path(path)
        unknown = sorted(set(allow_changes) - set(RESUME_CHANGES))
        if unknown:
            raise ValueError(f"allow_changes names {unknown}; a resume can change only {RESUME_CHANGES}")
        if not path.exists():
            raise FileNotFoundError(f"no checkpoint at {path}; train with fit(checkpoint={str(path)!r}) first")
        try:
            state = torch.load(path, weights_only=True)
        except (RuntimeError, EOFError, pickle.UnpicklingError) as error:
            raise CorruptFileError(f"cannot read checkpoint {path} ({error}); delete it and train again") from None
        saved, current = state["config"], asdict(self.config)
        # a field added to TrainConfig since the checkpoint was written counts at its default
        saved = {**{k: v for k, v in asdict(TrainConfig()).items() if k not in saved}, **saved}
        ignored = set(COSMETIC_FIELDS) | set(allow_changes)
        differ = [k for k in {**saved, **current} if k not in ignored and saved.get(k) != current.get(k)]
        if differ:
            fields = "; ".join(f"{k}: {saved.get(k)!r} there, {current.get(k)!r} here" for k in differ)
            hint = f", or pass allow_changes={tuple(differ)}" if set(differ) <= set(RESUME_CHANGES) else ""
            raise ValueError(f"checkpoint {path} was written with a different TrainConfig ({fields}); build "
                             f"the Trainer with the same config to resume{hint}")
        if "fingerprint" not in state:
            raise ValueError(f"checkpoint {path} predates the data and model fingerprints, so a resume "
                             "cannot be checked; train again")
        difference = first_difference(state["fingerprint"], {**self.fingerprint,
                                                              "model": model_fingerprint(self.model)})
        if difference is not None:
            raise ValueError(f"checkpoint {path} belongs to another run: {difference}; resume with the "
                             "data and model it was trained on")
        self.step = state["step"]
        self.model.load_state_dict(state["model"])
        self.weighting.load_state_dict(state["weighting"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if "lr" in allow_changes:  # the same schedule from the new peak lr
            factor = _lr_factor(self.scheduler.last_epoch, self.config.warmup_steps, self.config.max_steps)
            self.scheduler.base_lrs = [self.config.lr] * len(self.optimizer.param_groups)
            for group in self.optimizer.param_groups:
                group["initial_lr"], group["lr"] = self.config.lr, self.config.lr * factor
        for name, s in state["streams"].items():
            self.streams[name].load_state_dict(s)
        self.schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["rng"])
        self.history = History(**state["history"])
        self.best_scores = state["best_scores"]
        self.best_states = state["best_states"]
        self.evals_without_improvement = state["evals_without_improvement"]
        self.last_checkpoint = (path, self.step)
