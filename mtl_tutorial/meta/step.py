"""One meta-training step: the same small pure function for every meta-learner."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mtl_tutorial.meta.base import MetaLearner
from mtl_tutorial.meta.episodes import Episode


def meta_train_step(
    model: nn.Module,
    episodes: Sequence[Episode],
    learner: MetaLearner,
    optimizer: torch.optim.Optimizer,
) -> float:
    """Compute ``learner``'s direction on one meta-batch, store it as ``.grad``, step ``optimizer``.

    Returns the loss the learner reports (see each learner's docstring).
    """
    optimizer.zero_grad(set_to_none=True)
    meta = learner.meta_gradient(model, episodes)
    for name, p in model.named_parameters():
        p.grad = meta.direction[name].detach().clone()
    optimizer.step()
    return meta.loss.item()
