r"""Every task's output from one pass through the shared trunk (hard parameter sharing).

``model(task, input_ids)`` runs the trunk for the one task it is asked about. When the same
inputs are wanted for every task (classify a snippet, and score it under the language model),
the hidden states $h = f_{\theta_s}(x)$ of a hard-sharing model do not depend on the task, so
one trunk pass and $T$ heads give all $T$ outputs, $\hat y_t = g_{\theta_t}(h)$ ("hard
parameter sharing", Ruder, 2017, section 3.1).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from mtl_tutorial.models.multitask import MultiTaskModel


def predict_all_tasks(model: nn.Module, input_ids: Tensor, tasks: Sequence[str] | None = None) -> dict[str, Tensor]:
    """``{task: logits}`` for ``tasks`` (default: every head), from one trunk pass over ``input_ids (B, L)``.

    Equal to ``{t: model(t, input_ids) for t in tasks}`` in eval mode, at the cost of one trunk
    pass instead of T. Like ``model(...)`` it neither switches the mode nor disables gradients:
    call ``model.eval()`` and wrap in ``torch.no_grad()`` for inference.

    Only for hard sharing (``MultiTaskModel``'s own ``forward``): in the other architectures
    (adapters, cross-stitch, MMoE, text-to-text) the hidden states depend on the task.
    """
    if not isinstance(model, MultiTaskModel) or type(model).forward is not MultiTaskModel.forward:
        raise TypeError(
            f"predict_all_tasks needs a hard-sharing MultiTaskModel, whose trunk is the same for every "
            f"task; in {type(model).__name__} the hidden states depend on the task, so call "
            "model(task, input_ids) once per task instead"
        )
    names = list(model.heads) if tasks is None else list(tasks)
    unknown = [t for t in names if t not in model.heads]
    if unknown:
        raise KeyError(f"this model has no head for tasks {unknown}; its tasks are: {', '.join(model.heads)}")
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must have shape (B, L), got {tuple(input_ids.shape)}")
    hidden = model.trunk(input_ids)  # (B, L, D), once for all tasks
    return {t: model.heads[t](hidden, input_ids) for t in names}
