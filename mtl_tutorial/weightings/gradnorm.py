r"""GradNorm: learn the weights so that every task's gradient norm trains at its own pace (Chen et al., 2018)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from mtl_tutorial.weightings.base import Weighting


class GradNorm(Weighting):
    r"""Chen, Badrinarayanan, Lee & Rabinovich (ICML 2018), "GradNorm: gradient normalization for adaptive loss balancing".

    With $W$ the last shared layer, $G_t = \|\nabla_W w_t L_t\|$, $\bar G = \mathrm{mean}_t G_t$,
    $\tilde L_t = L_t / L_t(0)$ and $r_t = \tilde L_t / \mathrm{mean}_j \tilde L_j$ (a task that has
    trained less has $r_t > 1$), the weights minimise
    $L_{grad} = \sum_t | G_t - \bar G \, r_t^{\alpha} |$, where the target $\bar G r_t^\alpha$ is
    held constant. The model minimises $\sum_t w_t L_t$ with the weights held constant; after
    each update the weights are renormalised to $\sum_t w_t = T$. $\alpha = 1.5$ for NYUv2,
    $0.12$ for the paper's synthetic task.

    The one scalar this module returns does both jobs:
    $\sum_t \mathrm{sg}(w_t) L_t + L_{grad} - \mathrm{sg}(L_{grad})$ ($\mathrm{sg}$: stop
    gradient). Its value is the weighted loss; its gradient is $\sum_t w_t \nabla L_t$ for the
    model and $\nabla_w L_{grad}$ for the weights, so a plain ``backward()`` and one optimiser
    (holding the model and ``weighting.parameters()``) run the method. The renormalisation is
    applied at the start of each call, before the weights are used.

    **Explicit dependency:** the gradient norms need $W$, so the parameters of the last shared
    layer are a constructor argument (``shared_parameters``); with
    :class:`~mtl_tutorial.models.MultiTaskModel` that is ``model.trunk.norm.parameters()``.
    They are only read (not registered, not optimised here). Computing $G_t$ costs one extra
    backward pass per task from the loss to $W$, through that task's head only.

    Losses must be positive (the method works with ratios). A task that sat out the step (a
    zero loss, see :func:`~mtl_tutorial.step.train_step`) is left out of $\bar G$ and
    $L_{grad}$; its $L_t(0)$ is taken the first time it is present.
    """

    def __init__(self, num_tasks: int, shared_parameters: Iterable[Tensor], alpha: float = 1.5) -> None:
        super().__init__(num_tasks)
        self._shared = [p for p in shared_parameters]  # a plain list: read here, owned by the model
        if not self._shared or not all(p.requires_grad for p in self._shared):
            raise ValueError(
                "GradNorm needs the parameters of the last shared layer, all with requires_grad=True, e.g. "
                "GradNorm(T, model.trunk.norm.parameters())"
            )
        if not 0 <= alpha < math.inf:  # NaN fails too
            raise ValueError(f"GradNorm's alpha must be finite and >= 0, got {alpha}; the paper uses "
                             "0.12-1.5 (0: equal gradient norms)")
        self.alpha = float(alpha)
        self.raw_weights = nn.Parameter(torch.ones(num_tasks))
        self.register_buffer("initial_losses", torch.full((num_tasks,), float("nan")))
        self.register_buffer("balance_loss", torch.zeros(()))  # L_grad of the last call, for logging

    def forward(self, losses: Tensor) -> Tensor:
        with torch.no_grad():  # the paper's renormalisation after each update: sum_t w_t = T
            self.raw_weights.clamp_(min=1e-6)
            self.raw_weights.mul_(self.num_tasks / self.raw_weights.sum())
            present = losses.detach() != 0  # (T,)
            self.initial_losses = torch.where(
                torch.isnan(self.initial_losses) & present, losses.detach().float(), self.initial_losses
            )
        w = self.raw_weights.to(losses.dtype)  # (T,)
        if losses.requires_grad and present.any():
            norms = torch.stack([self._gradient_norm(losses[t]) if present[t] else losses.new_zeros(())
                                 for t in range(self.num_tasks)])  # (T,) ||grad_W L_t||, constants
            G = w * norms  # (T,), differentiable in w only
            ratio = losses.detach() / self.initial_losses.to(losses.dtype)  # L_t / L_t(0)
            inverse_rate = ratio / ratio[present].mean()  # r_t
            target = (G[present].mean() * inverse_rate.clamp(min=0) ** self.alpha).detach()  # held constant
            balance = (G - target).abs()[present].sum()
        else:
            balance = losses.new_zeros(())
        self.balance_loss = balance.detach().float()
        return (w.detach() * losses).sum() + balance - balance.detach()

    def _gradient_norm(self, loss: Tensor) -> Tensor:
        grads = torch.autograd.grad(loss, self._shared, retain_graph=True, allow_unused=True)
        squares = [g.pow(2).sum() for g in grads if g is not None]
        return torch.stack(squares).sum().sqrt().detach() if squares else loss.new_zeros(())

    @property
    def weights(self) -> Tensor:
        w = self.raw_weights.detach().clamp(min=1e-6)
        return self.num_tasks * w / w.sum()

    def extra_repr(self) -> str:
        return f"num_tasks={self.num_tasks}, alpha={self.alpha}"
