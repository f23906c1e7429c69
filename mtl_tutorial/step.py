"""One multi-task training step, as a small pure function the book can show on its own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mtl_tutorial.batching import Batch
from mtl_tutorial.tasks import Task
from mtl_tutorial.weightings import Weighting


class NonFiniteLossError(FloatingPointError):
    """A task's loss became NaN or infinite; the message names the task and the step."""


@dataclass
class StepLog:
    """What one step measured: each trained task's loss, the objective, the weights used."""

    losses: dict[str, float]
    objective: float
    weights: list[float]


def train_step(
    model: nn.Module,
    batches: Mapping[str, Batch],
    optimizer: torch.optim.Optimizer,
    weighting: Weighting,
    tasks: Sequence[Task],
    grad_clip: float | None = 1.0,
    step: int | None = None,
) -> StepLog:
    """Compute every task's loss, combine them with ``weighting``, take one optimiser step.

    ``tasks`` fixes the order of the loss vector ``L ∈ R^T``. A task without a batch this step
    (one-task-per-step mixing) contributes a constant zero loss, so the weighting always sees
    all T entries and no task is special-cased.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    device = next(model.parameters()).device
    losses = []
    for task in tasks:
        batch = batches.get(task.name)
        if batch is None:
            losses.append(torch.zeros((), device=device))
            continue
        batch = batch.to(device)
        loss = task.loss(model(task.name, batch.inputs), batch.targets)
        if not torch.isfinite(loss):
            where = f" at step {step}" if step is not None else ""
            raise NonFiniteLossError(
                f"the loss of task {task.name!r} is {loss.item()}{where}; lower the learning rate, "
                "check the inputs of that task, or resume from the last checkpoint"
            )
        losses.append(loss)
    loss_vector = torch.stack(losses)  # (T,)
    objective = weighting(loss_vector)
    objective.backward()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return StepLog(
        losses={t.name: loss_vector[i].item() for i, t in enumerate(tasks) if t.name in batches},
        objective=objective.item(),
        weights=weighting.weights.tolist(),
    )
