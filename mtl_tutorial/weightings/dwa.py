r"""Dynamic weight average: weight each task by how slowly its loss is falling (Liu et al., 2019)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl_tutorial.weightings.base import Weighting


class DWA(Weighting):
    r"""$w_t = T \,\mathrm{softmax}_t(r_t / \tau)$, $r_t = \bar L_t(k-1) / \bar L_t(k-2)$.

    Liu, Johns & Davison (CVPR 2019), "End-to-end multi-task learning with attention", eq. 1:
    $\bar L_t(k)$ is task $t$'s average loss over epoch $k$; a task whose loss fell less over
    the last epoch (a larger ratio) gets more weight. $\tau = 2$ in the paper; a large $\tau$
    tends to equal weights. The weights sum to $T$, and are 1 during the first two epochs.

    An "epoch" is ``steps_per_epoch`` calls, an explicit constructor argument (the weighting
    never asks the trainer where an epoch ends). A task that sat out a step (a zero loss, see
    :func:`~mtl_tutorial.step.train_step`) is left out of that epoch's average; a task without
    an average in either of the last two epochs gets the ratio 1.

    >>> dwa = DWA(2, steps_per_epoch=1)
    >>> for losses in ([1.0, 1.0], [0.5, 0.9]):
    ...     _ = dwa(torch.tensor(losses))
    >>> dwa.weights  # r = (0.5, 0.9): 2 softmax(r / 2)
    tensor([0.9003, 1.0997])
    """

    def __init__(self, num_tasks: int, steps_per_epoch: int, temperature: float = 2.0) -> None:
        super().__init__(num_tasks)
        if steps_per_epoch < 1 or not temperature > 0:
            raise ValueError(
                f"DWA needs steps_per_epoch >= 1 and temperature > 0, got {steps_per_epoch} and {temperature}"
            )
        self.steps_per_epoch = steps_per_epoch
        self.temperature = temperature
        self.register_buffer("_weights", torch.ones(num_tasks))
        self.register_buffer("epoch_sum", torch.zeros(num_tasks, dtype=torch.float64))
        self.register_buffer("epoch_count", torch.zeros(num_tasks, dtype=torch.long))
        self.register_buffer("averages", torch.full((2, num_tasks), float("nan"), dtype=torch.float64))  # epochs k-2, k-1
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, losses: Tensor) -> Tensor:
        objective = (self._weights.to(losses.dtype) * losses).sum()
        with torch.no_grad():
            present = losses != 0
            self.epoch_sum += torch.where(present, losses.double(), 0.0)
            self.epoch_count += present.long()
            self.calls += 1
            if self.calls % self.steps_per_epoch == 0:
                self._end_epoch()
        return objective

    def _end_epoch(self) -> None:
        average = self.epoch_sum / self.epoch_count.clamp(min=1)
        average[self.epoch_count == 0] = float("nan")
        self.averages = torch.stack([self.averages[1], average])  # (2, T)
        self.epoch_sum.zero_()
        self.epoch_count.zero_()
        if torch.isnan(self.averages[0]).all():  # fewer than two epochs: equal weights
            return
        ratio = self.averages[1] / self.averages[0]  # (T,)
        ratio = torch.where(torch.isfinite(ratio), ratio, 1.0)
        self._weights = (self.num_tasks * torch.softmax(ratio / self.temperature, dim=0)).float()

    @property
    def weights(self) -> Tensor:
        return self._weights.clone()

    def extra_repr(self) -> str:
        return f"num_tasks={self.num_tasks}, steps_per_epoch={self.steps_per_epoch}, temperature={self.temperature}"
