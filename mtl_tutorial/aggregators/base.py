r"""The aggregator interface: a task Jacobian ``Tensor[T, n]`` -> one update direction ``Tensor[n]``.

Row $i$ of the Jacobian $J$ is the gradient $g_i$ of task $i$'s loss with respect to the shared
parameters $\theta_s$. A loss weighting picks $w$ and updates along $w^\top J$; an aggregator may
pick any direction $d = A(J)$, for instance one that conflicts with no task ($J d \ge 0$).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor


class Aggregator:
    """Base class. It owns ``__call__`` and the input checks; a subclass writes ``forward``.

    Aggregators hold no state: the same Jacobian always gives the same direction, except for
    the randomised methods (``needs_generator = True``), whose randomness comes only from the
    ``generator`` argument (``None`` means torch's global generator, which the trainer seeds and
    checkpoints).

    ``forward`` receives a stack of Jacobians ``(B, T, n)`` and returns ``(B, n)``; ``__call__``
    takes one Jacobian and :meth:`batch` several (the toy problem runs many at once). The output
    has the dtype of the input; subclasses compute in float64.
    """

    needs_generator: ClassVar[bool] = False

    def __call__(self, jacobian: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``jacobian (T, n)`` -> direction ``(n,)``."""
        _check_jacobian(self, jacobian, batched=False)
        return self._aggregate(jacobian[None], generator)[0]

    def batch(self, jacobians: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``jacobians (B, T, n)`` -> directions ``(B, n)``, each aggregated on its own."""
        _check_jacobian(self, jacobians, batched=True)
        return self._aggregate(jacobians, generator)

    def _aggregate(self, jacobians: Tensor, generator: torch.Generator | None) -> Tensor:
        if self.needs_generator:
            direction = self.forward(jacobians, generator=generator)
        else:
            direction = self.forward(jacobians)
        return direction.to(jacobians.dtype)

    def forward(self, jacobians: Tensor) -> Tensor:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


def _check_jacobian(aggregator: Aggregator, J: object, batched: bool) -> None:
    """Shape ``(T, n)`` (or ``(B, T, n)``), a floating dtype, finite values; errors say how to fix."""
    expected = "(B, T, n)" if batched else "(T, n)"
    if not isinstance(J, Tensor):
        raise TypeError(f"{aggregator!r} expects a torch.Tensor of shape {expected}, got {type(J).__name__}")
    if J.dim() != len(expected.split(",")):
        hint = "; aggregate several Jacobians with .batch()" if not batched and J.dim() == 3 else ""
        raise ValueError(
            f"{aggregator!r} expects a task Jacobian of shape {expected} (one row per task, one column "
            f"per shared parameter), got shape {tuple(J.shape)}; build it with "
            f"mtl_tutorial.jacobian.task_jacobian(losses, params){hint}"
        )
    if not J.is_floating_point():
        raise TypeError(f"{aggregator!r} expects a floating-point Jacobian, got dtype {J.dtype}; convert it with J.float()")
    if J.shape[-2] == 0 or J.shape[-1] == 0:
        raise ValueError(f"{aggregator!r} needs at least one task and one parameter, got shape {tuple(J.shape)}")
    if not torch.isfinite(J).all():  # one reduction in the common case; find the culprit only when needed
        finite = torch.isfinite(J).all(dim=-1)  # (..., T)
        where = tuple(torch.nonzero(~finite)[0].tolist())
        row = where[-1]
        place = f"matrix {where[0]}, row {row}" if batched else f"row {row}"
        kind = "NaN" if torch.isnan(J[where]).any() else "an infinite value"
        raise ValueError(
            f"{aggregator!r}: {place} of the Jacobian (task {row}) contains {kind}; the gradient of "
            "that task's loss is not finite: check its loss and inputs, or lower the learning rate"
        )
