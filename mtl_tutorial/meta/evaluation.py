r"""Scoring few-shot learners: fine-tune from per-episode weights, then 95% intervals and paired gaps.

Every method of the WordNet benchmark ends the same way on a test episode: from its starting
weights $\theta_0$ (shared by all episodes for a meta-learner, built from the support set for the
pre-trained network, random for training from scratch), take $k$ plain SGD steps of size
$\alpha$ on the support set and report the accuracy on the query set. Accuracies over $n$
episodes are summarised by the mean and the normal-approximation 95% half-width

$$\bar a \pm 1.96\, \frac{s}{\sqrt n}, \qquad s^2 = \frac{1}{n-1}\sum_i (a_i - \bar a)^2,$$

the convention of the few-shot literature (e.g. Finn et al., 2017, Table 1; Chen et al., 2019).
Since all methods see the very same episodes, two methods are compared on the per-episode
differences $a_i - b_i$, whose interval is much narrower than the two separate ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from mtl_tutorial.meta.adaptation import Params, accuracy, sgd_step
from mtl_tutorial.meta.episodes import Episode, stack_episodes


def mean_ci95(values: Sequence[float] | Tensor) -> tuple[float, float]:
    r"""``(mean, half-width)`` of the 95% interval $\bar a \pm 1.96\, s/\sqrt n$ ($s$ with $n - 1$).

    >>> tuple(round(v, 4) for v in mean_ci95([0.2, 0.4, 0.6]))  # s = 0.2, 1.96 * 0.2 / sqrt 3
    (0.4, 0.2263)
    """
    values = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if len(values) < 2:
        raise ValueError(f"a confidence interval needs at least 2 values, got {len(values)}")
    if not torch.isfinite(values).all():
        raise ValueError("values contain NaN or infinity; score every episode before summarising")
    return values.mean().item(), 1.96 * values.std(unbiased=True).item() / math.sqrt(len(values))


def paired_difference(a: Sequence[float] | Tensor, b: Sequence[float] | Tensor) -> tuple[float, float]:
    """``mean_ci95(a - b)`` for scores of two methods on the same episodes, in the same order."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need one value per episode for both methods; got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    return mean_ci95(a - b)


def finetune_curve(
    model: nn.Module,
    params: Params,
    episodes: Sequence[Episode],
    lr: float,
    steps: Sequence[int],
    chunk: int = 50,
) -> dict[int, Tensor]:
    r"""Query accuracy of every episode after each number of SGD steps on its support set.

    ``params[name]`` is ``(B, *shape)``: episode ``b`` starts from ``{name: p[b]}``. One path of
    ``max(steps)`` steps of size ``lr`` (cross-entropy) is scored at every ``k`` in ``steps``;
    returns ``{k: Tensor (B,)}``. Episodes run ``chunk`` at a time under ``torch.func.vmap``.
    """
    if not steps or min(steps) < 0:
        raise ValueError(f"steps must be non-empty and non-negative, got {tuple(steps)}")
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    for name, p in params.items():
        if p.shape[0] != len(episodes):
            raise ValueError(f"params[{name!r}] has {p.shape[0]} rows but there are {len(episodes)} episodes; "
                             "stack one set of starting weights per episode")

    def score(p: Params, qx: Tensor, qy: Tensor) -> Tensor:
        return accuracy(functional_call(model, p, (qx,)), qy)

    def step(p: Params, sx: Tensor, sy: Tensor) -> Params:
        return sgd_step(model, p, sx, sy, F.cross_entropy, lr)

    batched_score, batched_step = torch.func.vmap(score), torch.func.vmap(step)
    parts: dict[int, list[Tensor]] = {k: [] for k in steps}
    for start in range(0, len(episodes), chunk):
        support_x, support_y, query_x, query_y = stack_episodes(episodes[start : start + chunk])  # (B, S, D) ...
        current = {name: p[start : start + chunk].detach() for name, p in params.items()}  # (B, ...)
        for k in range(max(steps) + 1):
            if k in parts:
                parts[k].append(batched_score(current, query_x, query_y))  # (B,)
            if k < max(steps):
                current = batched_step(current, support_x, support_y)
    return {k: torch.cat(parts[k]) for k in steps}
