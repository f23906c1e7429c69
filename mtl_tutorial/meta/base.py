r"""The meta-learner interface: a meta-batch of episodes -> one update direction for $\theta$.

A meta-learner maps the model's weights $\theta$ and a meta-batch of $B$ episodes to a direction
$d$ with one entry per parameter, used exactly like a gradient: the outer optimiser (Adam, SGD)
steps along $-d$. MAML's $d$ is the gradient of the post-adaptation query loss, Reptile's is
$\theta - \bar\theta'$, the joint-training baseline's is the plain multi-task gradient. The
training step (:func:`mtl_tutorial.meta.step.meta_train_step`) is the same for all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from mtl_tutorial.meta.adaptation import LossFn, Params, parameters_of
from mtl_tutorial.meta.episodes import Episode, stack_episodes


@dataclass(frozen=True)
class MetaGradient:
    """A meta-learner's output: ``direction[name]`` has the shape of parameter ``name``;
    ``loss`` is the scalar the learner reports (each subclass says which)."""

    direction: Params
    loss: Tensor


class MetaLearner:
    """Base class. It owns :meth:`meta_gradient` and its checks; a subclass writes ``forward``.

    ``forward(model, params, support_x, support_y, query_x, query_y)`` receives the meta-batch
    stacked along a leading task dimension (``(B, S, ...)`` and ``(B, Q, ...)``) and returns a
    :class:`MetaGradient`. Everything a learner uses is a constructor argument: the loss
    ``loss_fn(prediction, target)`` (inner and outer), ``inner_steps`` and ``inner_lr``.
    Learners hold no state between steps.
    """

    def __init__(self, loss_fn: LossFn, inner_steps: int = 1, inner_lr: float = 0.01) -> None:
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be a function (prediction, target) -> scalar, got {loss_fn!r}")
        if inner_steps < 0:
            raise ValueError(f"inner_steps must be non-negative, got {inner_steps}")
        if inner_lr <= 0:
            raise ValueError(f"inner_lr must be positive, got {inner_lr}")
        self.loss_fn = loss_fn
        self.inner_steps = inner_steps
        self.inner_lr = inner_lr

    def meta_gradient(self, model: nn.Module, episodes: Sequence[Episode]) -> MetaGradient:
        """The update direction for ``model``'s parameters from one meta-batch of episodes."""
        params = parameters_of(model)
        if not params:
            raise ValueError(f"{self!r}: the model has no parameters to meta-learn")
        return self.forward(model, params, *stack_episodes(episodes))

    def forward(
        self,
        model: nn.Module,
        params: Params,
        support_x: Tensor,
        support_y: Tensor,
        query_x: Tensor,
        query_y: Tensor,
    ) -> MetaGradient:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"inner_steps={self.inner_steps}, inner_lr={self.inner_lr}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"
