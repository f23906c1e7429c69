r"""MAML: learn an initialisation from which a few SGD steps solve a new task (Finn et al., 2017)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from mtl_tutorial.meta.adaptation import Params, adapt, task_loss
from mtl_tutorial.meta.base import MetaGradient, MetaLearner


class MAML(MetaLearner):
    r"""Model-agnostic meta-learning, Algorithm 2 of Finn, Abbeel & Levine (ICML 2017).

    For each task $i$ of the meta-batch, adapt by $k$ SGD steps on its support set,
    $\theta'_i = \theta - \alpha \nabla_\theta \mathcal L_i^{s}(\theta)$ (repeated $k$ times),
    then score $\theta'_i$ on its query set. The meta-objective and its gradient are

    $$F(\theta) = \frac1B \sum_{i=1}^B \mathcal L_i^{q}(\theta'_i(\theta)), \qquad
    \nabla F = \frac1B \sum_i \Big(\prod_{j=k-1}^{0} (I - \alpha \nabla^2 \mathcal L_i^{s}(\theta_{i,j}))\Big)
    \nabla \mathcal L_i^{q}(\theta'_i),$$

    the Hessian products coming from differentiating through the inner steps. The inner
    gradients come from ``torch.func.grad`` inside ``torch.func.vmap`` over tasks and stay in the
    graph, so one outer ``torch.autograd.grad`` gives the exact second-order $\nabla F$ (checked
    against finite differences in ``tests/test_meta.py``). With ``inner_steps=0`` it is the plain
    gradient of the mean query loss, i.e. joint training's gradient. The reported loss is $F(\theta)$.

    >>> import torch.nn.functional as F
    >>> MAML(F.mse_loss, inner_steps=1, inner_lr=0.01)
    MAML(inner_steps=1, inner_lr=0.01)
    """

    first_order: ClassVar[bool] = False

    def forward(
        self,
        model: nn.Module,
        params: Params,
        support_x: Tensor,
        support_y: Tensor,
        query_x: Tensor,
        query_y: Tensor,
    ) -> MetaGradient:
        def query_loss_after_adaptation(p: Params, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor) -> Tensor:
            adapted = adapt(model, sx, sy, self.loss_fn, self.inner_steps, self.inner_lr, p, self.first_order)
            return task_loss(model, adapted, qx, qy, self.loss_fn)

        per_task = torch.func.vmap(query_loss_after_adaptation, in_dims=(None, 0, 0, 0, 0))
        losses = per_task(params, support_x, support_y, query_x, query_y)  # (B,)
        meta_loss = losses.mean()
        grads = torch.autograd.grad(meta_loss, list(params.values()), allow_unused=True)
        direction = {
            name: torch.zeros_like(p) if g is None else g for (name, p), g in zip(params.items(), grads)
        }
        return MetaGradient(direction=direction, loss=meta_loss.detach())
