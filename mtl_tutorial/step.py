"""One multi-task training step, as a small pure function the book can show on its own.

The step checks every number before it applies any: the task losses (before the weighting sees
them), the objective and the weighting's weights, each task's row of the Jacobian (with an
aggregator) and the norm of every gradient the optimiser holds. A NaN or an infinity raises
:class:`NonFiniteError`, naming the step and the task (or the weighting) at fault, *before*
``optimizer.step()``: the parameters are left as they were, so nothing poisoned can be evaluated
or saved.
"""

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


class NonFiniteError(FloatingPointError):
    """A loss, weight or gradient of a step is NaN or infinite; the message names the step and
    the culprit, and nothing was applied (the optimiser did not step)."""


class NonFiniteLossError(NonFiniteError):
    """A task's loss is NaN or infinite (found before any backward pass)."""


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

    A NaN or infinite loss, objective, weight or gradient raises :class:`NonFiniteError` before
    ``optimizer.step()``; ``step`` (the step's number) only labels that message.
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
        losses.append(task.loss(model(task.name, batch.inputs), batch.targets))
    loss_vector = torch.stack(losses)  # (T,)
    _check_losses(loss_vector, tasks, step)  # before the weighting records them (DWA keeps a history)
    objective = weighting(loss_vector)
    _check_objective(objective, weighting, step)
    gramian = None
    if aggregator is None:
        objective.backward()
    else:
        present = [batches.get(task.name) is not None for task in tasks]
        gramian = _aggregated_backward(model, weighting, aggregator, tasks, losses, loss_vector,
                                       objective, present, step)
    grad_norm = _check_gradients(model, batches, optimizer, weighting, tasks, step)  # finite, or raise
    if grad_clip is not None:
        nn.utils.clip_grads_with_norm_(model.parameters(), grad_clip, grad_norm)
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
    tasks: Sequence[Task],
    losses: list[torch.Tensor],
    loss_vector: torch.Tensor,
    objective: torch.Tensor,
    present: list[bool],
    step: int | None,
) -> list[list[float]] | None:
    """Set θ_s.grad to ``aggregator(J)`` and every other parameter's grad from the objective.

    Returns the Gramian ``J Jᵀ`` as a T×T list (NaN in the rows and columns of absent tasks), or
    ``None`` when no task had a batch. A non-finite row of J (named by its task) or direction
    raises :class:`NonFiniteError`."""
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
    G = J @ J.T  # (T_present, T_present); a NaN or inf in row t shows in G[t, t] = ||J[t]||²
    if not torch.isfinite(G.diagonal()).all():
        _check_rows(J, [t.name for t, here in zip(tasks, present) if here], step)
    if others:
        objective.backward(inputs=others)  # heads and weighting parameters: the plain gradient
    direction = aggregator(J)  # (n,)
    if not torch.isfinite(torch.linalg.vector_norm(direction)):
        raise _non_finite(step, f"{aggregator!r} turned a finite Jacobian into a direction of norm "
                                f"{torch.linalg.vector_norm(direction).item()}", fix="check the aggregator's options")
    offset = 0
    for p in shared:
        p.grad = direction[offset:offset + p.numel()].view_as(p).clone()
        offset += p.numel()
    index = [t for t, here in enumerate(present) if here]
    gramian = torch.full((len(present), len(present)), float("nan"), dtype=torch.float64)  # (T, T)
    gramian[torch.tensor(index)[:, None], torch.tensor(index)[None, :]] = G.double().cpu()
    return gramian.tolist()


# ------------------------------------------------------------------ the checks
_FIX = "lower the learning rate or clip the gradients, or check that task's inputs and the operations of its loss"


def _non_finite(step: int | None, what: str, fix: str = _FIX,
                error: type[NonFiniteError] = NonFiniteError) -> NonFiniteError:
    where = f"step {step}: " if step is not None else ""
    return error(f"{where}{what}; nothing was applied (the optimiser did not step). Fix: {fix}")


def _tasks(names: Sequence[str]) -> str:
    return ("task " if len(names) == 1 else "tasks ") + ", ".join(map(repr, names))


def _check_losses(loss_vector: torch.Tensor, tasks: Sequence[Task], step: int | None) -> None:
    """Every task's loss is finite (one reduction; the culprits are looked up only on failure)."""
    finite = torch.isfinite(loss_vector.detach())  # (T,)
    if finite.all():
        return
    bad = [f"task {t.name!r} is {value}"
           for t, value, ok in zip(tasks, loss_vector.tolist(), finite.tolist()) if not ok]
    raise _non_finite(step, f"the loss of {', '.join(bad)}", error=NonFiniteLossError)


def _check_rows(J: torch.Tensor, names: Sequence[str], step: int | None) -> None:
    """Name the tasks whose row of the Jacobian holds a NaN or an infinity (a row norm that merely
    overflows the dtype passes)."""
    finite_rows = torch.isfinite(J).all(dim=1)  # (T_present,)
    bad = [name for name, ok in zip(names, finite_rows.tolist()) if not ok]
    if bad:
        raise _non_finite(step, f"the gradient of {_tasks(bad)} on the shared parameters (its row of "
                                "the Jacobian) is not finite, although every loss is")


def _check_objective(objective: torch.Tensor, weighting: Weighting, step: int | None) -> None:
    """The weighting turned finite losses into a finite objective, with finite weights."""
    weights = weighting.weights
    if torch.isfinite(objective.detach() + weights.to(objective.device).sum()):  # one host sync
        return
    bad = [name for name, p in weighting.named_parameters() if not torch.isfinite(p).all()]
    culprit = (f"the weighting's parameters ({', '.join(bad)}) are not finite" if bad
               else f"{weighting!r} gives the weights {weights.tolist()}")
    raise _non_finite(step, f"the objective is {objective.item()} although every task's loss is "
                            f"finite: {culprit}",
                      fix="lower the learning rate, or resume from a state whose weighting is finite")


def _check_gradients(model: nn.Module, batches: Mapping[str, Batch], optimizer: torch.optim.Optimizer,
                     weighting: Weighting, tasks: Sequence[Task], step: int | None) -> torch.Tensor:
    """Raise unless every gradient the optimiser holds is finite; return the model's gradient norm.

    The norm is the one ``clip_grad_norm_(model.parameters())`` computes, so clipping reuses it;
    the optimiser's other gradients (the weighting's) are checked with it, in one host sync."""
    model_ids = {id(p) for p in model.parameters()}
    norm = nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
    rest = [p.grad for group in optimizer.param_groups for p in group["params"]
            if p.grad is not None and id(p) not in model_ids]
    total = norm + nn.utils.get_total_norm(rest).to(norm.device) if rest else norm
    if torch.isfinite(total):
        return norm
    held = {id(p) for group in optimizer.param_groups for p in group["params"] if p.grad is not None}
    culprits = []
    bad = [name for name, p in weighting.named_parameters()
           if id(p) in held and not torch.isfinite(p.grad).all()]
    if bad:
        culprits.append(f"the weighting's parameters ({', '.join(bad)})")
    bad_tasks = _tasks_with_non_finite_gradients(model, batches, tasks)
    if hasattr(model, "task_parameters"):  # a task's own parameters get its gradient alone
        bad_heads = [t.name for t in tasks if t.name in batches and not all(
            torch.isfinite(p.grad).all() for p in model.task_parameters(t.name) if p.grad is not None)]
        bad_tasks = [t.name for t in tasks if t.name in bad_tasks or t.name in bad_heads]
    if bad_tasks:
        culprits.append(_tasks(bad_tasks))
    culprit = (f"the gradient of {' and of '.join(culprits)} is not finite" if culprits
               else "yet each task's own gradient, recomputed without dropout, is finite (their weighted sum "
                    "overflowed, or the NaN depends on dropout)")
    raise _non_finite(step, f"the gradient norm is {total.item()} although every loss is finite: {culprit}")


def _tasks_with_non_finite_gradients(model: nn.Module, batches: Mapping[str, Batch],
                                     tasks: Sequence[Task]) -> list[str]:
    """Which tasks' own loss has a non-finite gradient: one backward pass per task, run only after
    the summed gradient was found non-finite (without dropout, so no random number is drawn)."""
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device
    model.eval()
    bad = []
    with torch.enable_grad():
        for task in tasks:
            batch = batches.get(task.name)
            if batch is None:
                continue
            batch = batch.to(device)
            loss = task.loss(model(task.name, batch.inputs), batch.targets)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            if not all(torch.isfinite(g).all() for g in grads if g is not None):
                bad.append(task.name)
    model.train()
    return bad
