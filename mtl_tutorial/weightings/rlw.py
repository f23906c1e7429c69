r"""Random loss weighting: fresh random weights at every step (Lin et al., 2022)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl_tutorial.weightings.base import Weighting


class RLW(Weighting):
    r"""$L = \sum_t w_t L_t$ with $w = \mathrm{softmax}(z)$, $z \sim \mathcal N(0, I_T)$ drawn at every call.

    Lin, Ye, Xu, Shi & Zhang (TMLR 2022), "Reasonable effectiveness of random weighting: a
    litmus test for multi-task learning". The weights sum to 1 like the equal weights $1/T$,
    and equal them on average over the draws' symmetry. A baseline: a method that does not
    beat RLW has not shown that its weights matter.

    ``generator=None`` draws from torch's global generator, which the trainer seeds and
    checkpoints; pass a ``torch.Generator`` for a stream of its own.

    >>> rlw = RLW(3, generator=torch.Generator().manual_seed(0))
    >>> objective = rlw(torch.tensor([1.0, 2.0, 3.0]))
    >>> round(rlw.weights.sum().item(), 6)
    1.0
    """

    def __init__(self, num_tasks: int, generator: torch.Generator | None = None) -> None:
        super().__init__(num_tasks)
        self.generator = generator
        self.register_buffer("_weights", torch.full((num_tasks,), 1.0 / num_tasks))

    def forward(self, losses: Tensor) -> Tensor:
        z = torch.randn(self.num_tasks, generator=self.generator)  # (T,), on the generator's device (CPU)
        self._weights = torch.softmax(z, dim=0).to(self._weights.device)
        return (self._weights.to(losses.dtype) * losses).sum()

    @property
    def weights(self) -> Tensor:
        return self._weights.clone()
