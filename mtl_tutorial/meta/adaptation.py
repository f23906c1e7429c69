r"""The inner loop: adapt a model to one task by plain SGD on its support set, as a pure function.

Meta-learning differentiates *through* training, so the parameters are an explicit input here,
not state inside the module: ``torch.func.functional_call(model, params, (x,))`` runs ``model``
with the weights in the dict ``params``, and one inner step is

$$\theta' = \theta - \alpha \nabla_\theta \mathcal L(f_\theta(x^{s}), y^{s}).$$

The step's gradient comes from ``torch.func.grad``. It stays attached to the graph of $\theta$,
so an outer ``torch.autograd.grad`` through several steps sees every second-order term (MAML);
``first_order=True`` detaches it, which drops them (first-order MAML, Finn et al., 2017, §5.2).
Everything here works on one task; ``torch.func.vmap`` maps it over a meta-batch of tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from mtl_tutorial.meta.episodes import Episode, stack_episodes

Params = dict[str, Tensor]  # parameter name -> tensor, as in model.named_parameters()
LossFn = Callable[[Tensor, Tensor], Tensor]  # (prediction, target) -> scalar, e.g. F.mse_loss


def parameters_of(model: nn.Module) -> Params:
    """The model's own parameters as a ``Params`` dict (the meta-learned initialisation $\\theta$)."""
    return dict(model.named_parameters())


def task_loss(model: nn.Module, params: Params, x: Tensor, y: Tensor, loss_fn: LossFn) -> Tensor:
    """$\\mathcal L(f_\\theta(x), y)$ with the weights ``params``; a scalar."""
    return loss_fn(functional_call(model, params, (x,)), y)


def sgd_step(
    model: nn.Module,
    params: Params,
    x: Tensor,
    y: Tensor,
    loss_fn: LossFn,
    lr: float,
    first_order: bool = False,
) -> Params:
    r"""One inner step $\theta' = \theta - \alpha \nabla_\theta \mathcal L(f_\theta(x), y)$."""
    grads = torch.func.grad(lambda p: task_loss(model, p, x, y, loss_fn))(params)
    if first_order:
        grads = {name: g.detach() for name, g in grads.items()}
    return {name: params[name] - lr * grads[name] for name in params}


def adapt(
    model: nn.Module,
    support_x: Tensor,
    support_y: Tensor,
    loss_fn: LossFn,
    steps: int,
    lr: float,
    params: Params | None = None,
    first_order: bool = False,
) -> Params:
    r"""``steps`` SGD steps on the support set from ``params`` (default: the model's own weights).

    Returns the adapted weights $\theta'_K$; ``model`` itself is never modified. With
    ``steps=0`` it returns ``params`` unchanged. Whether the result carries a graph back to
    ``params`` depends only on ``params`` requiring gradients (and on ``first_order``).
    """
    if steps < 0:
        raise ValueError(f"steps must be non-negative, got {steps}")
    params = parameters_of(model) if params is None else params
    for _ in range(steps):
        params = sgd_step(model, params, support_x, support_y, loss_fn, lr, first_order)
    return params


def accuracy(logits: Tensor, y: Tensor) -> Tensor:
    """Share of correct argmax predictions; ``logits (Q, N)``, ``y (Q,)`` -> scalar."""
    return (logits.argmax(-1) == y).float().mean()


def adaptation_curve(
    model: nn.Module,
    episodes: Sequence[Episode],
    loss_fn: LossFn,
    lr: float,
    steps: Sequence[int] = (0, 1, 10),
    metric: LossFn | None = None,
) -> dict[int, Tensor]:
    r"""Query score of every episode after each number of SGD steps on its support set.

    Returns ``{k: Tensor (num_episodes,)}``: ``metric`` (default ``loss_fn``, e.g.
    :func:`accuracy` for classification) on the query set after $k$ steps of learning rate
    ``lr`` from the model's weights. One adaptation path of ``max(steps)`` steps is scored at
    each checkpoint; the episodes run side by side under ``torch.func.vmap``.
    """
    if not steps or min(steps) < 0:
        raise ValueError(f"steps must be non-empty and non-negative, got {tuple(steps)}")
    metric = loss_fn if metric is None else metric
    support_x, support_y, query_x, query_y = stack_episodes(episodes)  # (B, S, ...), (B, Q, ...)
    start = {name: p.detach() for name, p in model.named_parameters()}

    def score(params: Params, qx: Tensor, qy: Tensor) -> Tensor:
        return metric(functional_call(model, params, (qx,)), qy)

    def step(params: Params, sx: Tensor, sy: Tensor) -> Params:
        return sgd_step(model, params, sx, sy, loss_fn, lr)

    batched_score = torch.func.vmap(score, in_dims=(0, 0, 0))
    batched_step = torch.func.vmap(step, in_dims=(0, 0, 0))
    params = {name: p.expand(len(episodes), *p.shape) for name, p in start.items()}  # (B, ...)
    curve: dict[int, Tensor] = {}
    for k in range(max(steps) + 1):
        if k in steps:
            curve[k] = batched_score(params, query_x, query_y).detach()  # (B,)
        if k < max(steps):
            params = batched_step(params, support_x, support_y)
    return {k: curve[k] for k in steps}
