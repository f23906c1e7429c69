r"""The baseline: joint (multi-task) pre-training on the meta-training tasks, then fine-tuning."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl_tutorial.meta.adaptation import Params, task_loss
from mtl_tutorial.meta.base import MetaGradient, MetaLearner


class JointTraining(MetaLearner):
    r"""Train one network on the pooled data of all tasks; adapt to a new task only at test time.

    This is the "pretrained" baseline of Finn et al. (2017, §5.1): the direction is the plain
    gradient of the mean task loss over every example of each episode,

    $$d = \nabla_\theta \frac1B \sum_{i=1}^B \mathcal L_i(\theta; \text{support}_i \cup \text{query}_i),$$

    with no inner loop during training (``inner_steps`` and ``inner_lr`` are the fine-tuning
    recipe used at test time, kept here so every learner is configured alike). On sine waves the
    tasks disagree, so the pooled optimum is their mean wave, which fits none of them, and a
    few small SGD steps from it barely help. The reported loss is the joint loss.

    >>> import torch.nn.functional as F
    >>> JointTraining(F.mse_loss)
    JointTraining(inner_steps=1, inner_lr=0.01)
    """

    def forward(
        self,
        model: nn.Module,
        params: Params,
        support_x: Tensor,
        support_y: Tensor,
        query_x: Tensor,
        query_y: Tensor,
    ) -> MetaGradient:
        def loss_on_task(p: Params, x: Tensor, y: Tensor) -> Tensor:
            return task_loss(model, p, x, y, self.loss_fn)

        all_x = torch.cat([support_x, query_x], dim=1)  # (B, S + Q, ...)
        all_y = torch.cat([support_y, query_y], dim=1)  # (B, S + Q, ...)
        loss = torch.func.vmap(loss_on_task, in_dims=(None, 0, 0))(params, all_x, all_y).mean()
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        direction = {
            name: torch.zeros_like(p) if g is None else g for (name, p), g in zip(params.items(), grads)
        }
        return MetaGradient(direction=direction, loss=loss.detach())
