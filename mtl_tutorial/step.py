"""One multi-task training step, as a small pure function the book can show on its own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mtl_tutorial.aggregators import Aggregator
from mtl_tutorial.batching import Batch
from mtl_tutorial.jacobian import task_jacobian
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
    gramian: list[list[float]] | None = None  # J Jᵀ (T, T) with an aggregator; NaN rows: absent tasks


def train_step(
    model: nn.Module,
    batches: Mapping[str, Batch],
    optimizer: torch.optim.Optimizer,
    weighting: Weighting,
    tasks: Sequence[Task],
    grad_clip: float | None = 1.0,
    step: int | None = None,
    aggregator: Aggregator | None = None,
) -> StepLog:
    """Compute every task's loss, combine them with ``weighting``, take one optimiser step.

    ``tasks`` fixes the order of the loss vector ``L ∈ R^T``. A task without a batch this step
    (one-task-per-step mixing) contributes a constant zero loss, so the weighting always sees
    all T entries and no task is special-cased.

    Without an ``aggregator`` the step is one backward pass of the weighted objective. With
    one, the shared parameters θ_s (``model.shared_parameters()``) are updated along
    ``aggregator(J)`` instead, where row t of J is the gradient of the weighted task loss,
    ``J[t] = w_t ∇_{θ_s} L_t`` with ``w_t = ∂objective/∂L_t`` (the weighting's weights): the
    rows sum to the weighted gradient ``wᵀ J_raw``, so the ``mean`` aggregator with
    ``Static([1] * T)`` is the default step on θ_s, and ``Static([1] * T)`` makes J the plain
    task Jacobian of the papers. Only the tasks that have a batch this step get a row: an
    absent task is not a task with a zero gradient (which would make MGDA stop). Every other
    parameter (heads, the weighting's own) gets the gradient of the objective, as in the
    default step.
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
    gramian = None
    if aggregator is None:
        objective.backward()
    else:
        present = [batches.get(task.name) is not None for task in tasks]
        gramian = _aggregated_backward(model, weighting, aggregator, losses, loss_vector, objective, present)
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return StepLog(
        losses={t.name: loss_vector[i].item() for i, t in enumerate(tasks) if t.name in batches},
        objective=objective.item(),
        weights=weighting.weights.tolist(),
        gramian=gramian,
    )


def _aggregated_backward(
    model: nn.Module,
    weighting: Weighting,
    aggregator: Aggregator,
    losses: list[torch.Tensor],
    loss_vector: torch.Tensor,
    objective: torch.Tensor,
    present: list[bool],
) -> list[list[float]] | None:
    """Set θ_s.grad to ``aggregator(J)`` and every other parameter's grad from the objective.

    Returns the Gramian ``J Jᵀ`` as a T×T list (NaN in the rows and columns of absent tasks), or
    ``None`` when no task had a batch."""
    if not hasattr(model, "shared_parameters"):
        raise TypeError(
            f"an aggregator needs the shared parameters θ_s, but {type(model).__name__} has no "
            "shared_parameters() method; use MultiTaskModel or add one"
        )
    if not objective.requires_grad:  # no task had a batch
        return None
    shared = list(model.shared_parameters())
    shared_ids = {id(p) for p in shared}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in shared_ids]
    others += [p for p in weighting.parameters() if p.requires_grad]
    (weights,) = torch.autograd.grad(objective, loss_vector, retain_graph=True)  # (T,): ∂objective/∂L_t
    # each task's own loss, not rows of the stacked vector: the loop then back-propagates through
    # that task's forward pass only (see mtl_tutorial.jacobian)
    rows = [w * loss for w, loss, here in zip(weights, losses, present) if here]
    J = task_jacobian(rows, shared, retain_graph=bool(others))  # (T_present, n)
    if others:
        objective.backward(inputs=others)  # heads and weighting parameters: the plain gradient
    direction = aggregator(J)  # (n,)
    offset = 0
    for p in shared:
        p.grad = direction[offset:offset + p.numel()].view_as(p).clone()
        offset += p.numel()
    index = [t for t, here in enumerate(present) if here]
    gramian = torch.full((len(present), len(present)), float("nan"), dtype=torch.float64)  # (T, T)
    gramian[torch.tensor(index)[:, None], torch.tensor(index)[None, :]] = (J @ J.T).double().cpu()
    return gramian.tolist()
