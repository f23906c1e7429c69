r"""The toy problem's fast updates: Adam written out, and the learned weightings for many starts at once.

:func:`~mtl_tutorial.studies.toy.run_toy_many` moves every (method, start) pair of the toy problem with
one tensor operation per term of the update. A weighting module holds the state of one run and
gets its update by autograd, which for $S$ starts means $S$ module calls and $S$ backward
passes per step, each costing far more than the arithmetic on two numbers. The classes here
hold the same state for all starts, as tensors with a leading ``S`` dimension, and write out
the derivatives that autograd would compute, operation for operation in the module's order and
dtypes (the parameters stay float32, as in the module), so a run agrees with the module's to
the last digits (``tests/test_toy.py`` compares them with :func:`~mtl_tutorial.studies.toy.run_toy`).

Each takes the module it stands for (for its options and initial values) and is called once
per step with the losses the weighting sees ``(S, T)`` and the task Jacobians ``(S, T, n)``; it
returns the weights $w = \partial \text{objective} / \partial L$ ``(S, T)`` in float64, so the
update is $\sum_t w_t \nabla L_t$, and it steps its own parameters with Adam.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtl_tutorial.weightings import DWA, RLW, GradNorm, Uncertainty, Weighting


class ElementwiseAdam:
    """``torch.optim.Adam`` (betas 0.9 and 0.999, eps 1e-8, no weight decay) on one tensor, written out.

    The operations of torch's single-tensor Adam in the same order, so a trajectory is bit for
    bit the one ``torch.optim.Adam`` gives, without the optimiser's per-step bookkeeping (which
    costs more than the arithmetic on a few dozen numbers). Every operation is elementwise, so
    the entries of ``param`` (e.g. one row per run) train independently.
    """

    def __init__(self, param: Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.param, self.lr, self.betas, self.eps = param, lr, betas, eps
        self.exp_avg = torch.zeros_like(param)
        self.exp_avg_sq = torch.zeros_like(param)
        self.steps = 0

    @torch.no_grad()
    def step(self, grad: Tensor) -> None:
        beta1, beta2 = self.betas
        self.steps += 1
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = self.lr / (1 - beta1**self.steps)
        denominator = (self.exp_avg_sq.sqrt() / (1 - beta2**self.steps) ** 0.5).add_(self.eps)
        self.param.addcdiv_(self.exp_avg, denominator, value=-step_size)


class BatchedUncertainty:
    r""":class:`~mtl_tutorial.weightings.Uncertainty` for ``S`` runs: $w_t = \tfrac12 e^{-s_t}$.

    The objective $\sum_t \tfrac12 e^{-s_t} L_t + \tfrac12 s_t$ has
    $\partial / \partial L_t = w_t$ and $\partial / \partial s_t = \tfrac12 - w_t L_t$.
    """

    def __init__(self, weighting: Uncertainty, num_starts: int, lr: float) -> None:
        self.log_variances = weighting.log_variances.detach().expand(num_starts, -1).clone()  # (S, T), float32
        self.adam = ElementwiseAdam(self.log_variances, lr)

    def __call__(self, losses: Tensor, jacobians: Tensor) -> Tensor:
        w = self.log_variances.double().neg_().exp_().mul_(0.5)  # (S, T)
        self.adam.step(losses.mul(w).neg_().add_(0.5).float())  # d objective / d s, cast back to float32
        return w


class BatchedDWA:
    r""":class:`~mtl_tutorial.weightings.DWA` for ``S`` runs: $w = T\,\mathrm{softmax}(r / \tau)$, fixed within an epoch.

    $r_t = \bar L_t(k-1) / \bar L_t(k-2)$ from the average losses of the last two epochs
    (weights 1 before that); the weights change after the last call of each epoch. The losses
    the toy gives a weighting are positive, so every task is present at every step.
    """

    def __init__(self, weighting: DWA, num_starts: int, lr: float) -> None:
        self.num_tasks, self.steps_per_epoch, self.temperature = weighting.num_tasks, weighting.steps_per_epoch, weighting.temperature
        self.weights = weighting.weights.double().expand(num_starts, -1).clone()  # (S, T)
        self.epoch_sum = torch.zeros(num_starts, self.num_tasks, dtype=torch.float64)  # (S, T)
        self.averages: list[Tensor] = []  # the last two epochs' average losses, (S, T) each
        self.calls = 0

    def __call__(self, losses: Tensor, jacobians: Tensor) -> Tensor:
        w = self.weights
        self.epoch_sum += losses
        self.calls += 1
        if self.calls % self.steps_per_epoch == 0:
            self.averages = [*self.averages[-1:], self.epoch_sum / self.steps_per_epoch]
            self.epoch_sum = torch.zeros_like(self.epoch_sum)
            if len(self.averages) == 2:
                ratio = self.averages[1] / self.averages[0]  # (S, T)
                ratio = torch.where(torch.isfinite(ratio), ratio, 1.0)
                # float32, as the module stores them
                self.weights = (self.num_tasks * torch.softmax(ratio / self.temperature, dim=-1)).float().double()
        return w


class BatchedGradNorm:
    r""":class:`~mtl_tutorial.weightings.GradNorm` for ``S`` runs, with $x$ itself as the last shared layer.

    Then $G_t = w_t \|\nabla_x L_t\|$, the norm of row $t$ of the Jacobian. The weights are
    renormalised to $\sum_t w_t = T$ before use; the model's update uses $w$;
    $L_{grad} = \sum_t |G_t - \bar G r_t^\alpha|$ (target held constant) gives the weights the
    gradient $\partial L_{grad} / \partial w_t = \mathrm{sign}(G_t - \bar G r_t^\alpha)\,
    \|\nabla_x L_t\|$, with $r_t = \tilde L_t / \mathrm{mean}_j \tilde L_j$ and
    $\tilde L_t = L_t / L_t(0)$ ($L_t(0)$ kept in float32, as the module keeps it).
    """

    def __init__(self, weighting: GradNorm, num_starts: int, lr: float) -> None:
        self.alpha, self.num_tasks = weighting.alpha, weighting.num_tasks
        self.raw_weights = weighting.raw_weights.detach().expand(num_starts, -1).clone()  # (S, T), float32
        self.initial_losses: Tensor | None = None  # (S, T)
        self.adam = ElementwiseAdam(self.raw_weights, lr)

    def __call__(self, losses: Tensor, jacobians: Tensor) -> Tensor:
        raw = self.raw_weights.clamp_(min=1e-6)
        raw.mul_(self.num_tasks / raw.sum(-1, keepdim=True))  # sum_t w_t = T
        if self.initial_losses is None:
            self.initial_losses = losses.float().double()
        w = raw.double()  # (S, T)
        norms = jacobians.square().sum(-1).sqrt()  # (S, T): ||grad_x L_t||
        G = w * norms
        ratio = losses / self.initial_losses
        inverse_rate = ratio / ratio.mean(-1, keepdim=True)  # r_t
        target = G.mean(-1, keepdim=True) * inverse_rate.clamp(min=0) ** self.alpha
        self.adam.step((G - target).sign_().mul_(norms).float())  # d L_grad / d w, cast back to float32
        return w


class BatchedRLW:
    r""":class:`~mtl_tutorial.weightings.RLW` for ``S`` runs: $w = \mathrm{softmax}(z)$, $z \sim \mathcal N(0, I_T)$.

    Each run draws from its own generator, as its module would (float32 draws, float32 softmax).
    """

    def __init__(self, weighting: RLW, num_starts: int, generators: list[torch.Generator]) -> None:
        if len(generators) != num_starts:
            raise ValueError(f"RLW needs one generator per start, got {len(generators)} for {num_starts} starts")
        self.generators = generators
        self.draws = torch.empty(num_starts, weighting.num_tasks)  # (S, T), float32
        self.rows = list(self.draws.unbind(0))  # views of self.draws, one per run

    def __call__(self, losses: Tensor, jacobians: Tensor) -> Tensor:
        for row, generator in zip(self.rows, self.generators):
            torch.randn(row.shape, generator=generator, out=row)
        return torch.softmax(self.draws, dim=-1).double()


BATCHED_WEIGHTINGS: dict[type[Weighting], type] = {
    Uncertainty: BatchedUncertainty,
    DWA: BatchedDWA,
    GradNorm: BatchedGradNorm,
    RLW: BatchedRLW,
}
"""The learned weightings with a batched formulation; fixed weights (equal, static) need none."""


def batched_weighting(weighting: Weighting, num_starts: int, lr: float, generators: list[torch.Generator]):
    """The batched stand-in for ``weighting`` over ``num_starts`` runs; an error names the ones that exist."""
    cls = BATCHED_WEIGHTINGS.get(type(weighting))
    if cls is None:
        raise KeyError(
            f"no batched toy formulation for {weighting!r}; the toy's batched runner knows "
            f"{', '.join(c.__name__ for c in BATCHED_WEIGHTINGS)}: add a class to BATCHED_WEIGHTINGS in "
            "mtl_tutorial/studies/toy_batched.py (and a test against run_toy), or run it with run_toy"
        )
    if cls is BatchedRLW:
        return cls(weighting, num_starts, generators)
    return cls(weighting, num_starts, lr)
