"""Fixed weights chosen by hand: L = Σ_t w_t L_t."""

from __future__ import annotations

from torch import Tensor

from mtl_tutorial.weightings.base import Weighting, _as_weight_tensor


class Static(Weighting):
    r"""$L = \sum_t w_t L_t$ with fixed $w$.

    >>> import torch
    >>> Static([0.9, 0.1])(torch.tensor([0.7, 8.9]))
    tensor(1.5200)
    """

    def __init__(self, weights: list[float] | tuple[float, ...] | Tensor) -> None:
        w = _as_weight_tensor(weights)
        super().__init__(len(w))
        self.register_buffer("_weights", w)

    def forward(self, losses: Tensor) -> Tensor:
        return (self._weights.to(losses.dtype) * losses).sum()

    @property
    def weights(self) -> Tensor:
        return self._weights.clone()

    def extra_repr(self) -> str:
        return f"weights={[round(x, 4) for x in self._weights.tolist()]}"
