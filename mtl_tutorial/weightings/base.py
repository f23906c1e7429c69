"""The loss-weighting interface: task losses ``Tensor[T]`` -> the scalar to minimise."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Weighting(nn.Module):
    """Base class. It owns ``__call__`` and the input checks; a subclass writes ``forward``.

    A weighting may hold state (loss history) or learnable parameters, which the trainer
    optimises with the model. ``weights`` is the weight vector ``w ∈ R^T`` of the last call, so
    that the objective is ``Σ_t w_t L_t`` (plus any regulariser the method adds).
    """

    def __init__(self, num_tasks: int) -> None:
        super().__init__()
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be at least 1, got {num_tasks}")
        self.num_tasks = num_tasks

    def __call__(self, losses: Tensor) -> Tensor:
        if losses.shape != (self.num_tasks,):
            raise ValueError(
                f"{self!r} expects one loss per task, a tensor of shape ({self.num_tasks},); "
                f"got {tuple(losses.shape)}"
            )
        return super().__call__(losses)

    @property
    def weights(self) -> Tensor:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"num_tasks={self.num_tasks}"


def _as_weight_tensor(weights: list[float] | tuple[float, ...] | Tensor) -> Tensor:
    w = torch.as_tensor(weights, dtype=torch.float32)
    if w.dim() != 1 or not torch.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"static weights must be a 1-D vector of finite non-negative numbers, got {weights}")
    return w
