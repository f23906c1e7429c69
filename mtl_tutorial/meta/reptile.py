r"""Reptile: move the initialisation towards the weights SGD reaches on each task (Nichol et al., 2018)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl_tutorial.meta.adaptation import Params, adapt, task_loss
from mtl_tutorial.meta.base import MetaGradient, MetaLearner


class Reptile(MetaLearner):
    r"""Reptile, Algorithm 2 (batched) of Nichol, Achiam & Schulman (2018), "On first-order
    meta-learning algorithms".

    Each task $i$ is trained by $k$ full-batch SGD steps from $\theta$, giving $\theta'_i$; the
    direction is the mean displacement, reversed so that it reads like a gradient:

    $$d = \theta - \frac1B \sum_{i=1}^B \theta'_i, \qquad
    \theta \leftarrow \theta - \varepsilon\, d = \theta + \varepsilon (\bar\theta' - \theta)$$

    with plain SGD of learning rate $\varepsilon$ as the outer optimiser (the paper notes that
    $d$ can also be fed to Adam). With one inner step, $d = \alpha \nabla \mathcal L(\theta)$:
    the task gradient scaled by the inner learning rate. Reptile has no outer loss, so the inner
    loop trains on all of an episode's data (support and query), as the paper trains on the
    task's samples; the reported loss is the mean loss of the $\theta'_i$ on that data.

    >>> import torch.nn.functional as F
    >>> Reptile(F.mse_loss, inner_steps=5, inner_lr=0.02)
    Reptile(inner_steps=5, inner_lr=0.02)
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
        start = {name: p.detach() for name, p in params.items()}

        def train_on_task(x: Tensor, y: Tensor) -> tuple[Params, Tensor]:
            adapted = adapt(model, x, y, self.loss_fn, self.inner_steps, self.inner_lr, start)
            return adapted, task_loss(model, adapted, x, y, self.loss_fn)

        all_x = torch.cat([support_x, query_x], dim=1)  # (B, S + Q, ...)
        all_y = torch.cat([support_y, query_y], dim=1)  # (B, S + Q, ...)
        adapted, losses = torch.func.vmap(train_on_task)(all_x, all_y)  # params (B, ...), (B,)
        direction = {name: start[name] - adapted[name].mean(0) for name in start}
        return MetaGradient(direction=direction, loss=losses.mean().detach())
