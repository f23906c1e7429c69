r"""The few-shot baselines without meta-learning: pre-train then fine-tune, and train from scratch.

Both start every test episode from weights that owe nothing to episodic training, then take the
same plain SGD steps on the support set as the meta-learners do
(:func:`mtl_tutorial.studies.fewshot.finetune_curve`):

* **pre-training then fine-tuning** trains one network as a C-way classifier of the C meta-train
  categories (multi-task pre-training with fixed label meanings, the "pretrained" baseline of
  Finn et al., 2017, §5.2, and the transfer baseline of Chen et al., ICLR 2019, "A closer look at
  few-shot classification"); at test time its C-way head is replaced by an N-way head
  initialised from the support set's class means $\mu_c$ of the hidden features $z(x)$,

  $$W_c = 2\mu_c, \qquad b_c = -\lVert\mu_c\rVert^2, \qquad
  W_c^\top z + b_c = \lVert z\rVert^2 - \lVert z - \mu_c\rVert^2,$$

  i.e. a nearest-class-mean classifier before the first step (the prototypical-network head of
  Snell et al., 2017, used to initialise fine-tuning in Proto-MAML, Triantafillou et al., ICLR
  2020, §3);
* **training from scratch** starts each episode from a fresh random initialisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_tutorial.meta.adaptation import Params
from mtl_tutorial.meta.episodes import Episode, Indexable


def fewshot_mlp(num_features: int, hidden: int, num_outputs: int, seed: int | Sequence[int] = 0) -> nn.Sequential:
    """The one backbone of the benchmark: ``Linear(D, H) -> ReLU -> Linear(H, C)``, seeded.

    Parameter names are ``0.weight (H, D)``, ``0.bias (H,)``, ``2.weight (C, H)``, ``2.bias (C,)``;
    ``model[:2]`` is the body that maps features to the hidden representation $z(x)$.
    """
    if min(num_features, hidden, num_outputs) < 1:
        raise ValueError(f"sizes must be positive, got num_features={num_features}, hidden={hidden}, "
                         f"num_outputs={num_outputs}")
    entropy = [seed] if isinstance(seed, int) else list(seed)  # e.g. (seed, episode index)
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence(entropy).generate_state(1)[0]))
    model = nn.Sequential(nn.Linear(num_features, hidden), nn.ReLU(), nn.Linear(hidden, num_outputs))
    with torch.no_grad():  # nn.Linear's default init (Kaiming-uniform, a = sqrt 5), from our generator
        for layer in (model[0], model[2]):
            bound = 1.0 / layer.in_features**0.5
            layer.weight.uniform_(-bound, bound, generator=generator)
            layer.bias.uniform_(-bound, bound, generator=generator)
    return model


def training_examples(labels: Tensor, classes: Sequence[int]) -> Tensor:
    """Indices of the examples whose label is in ``classes``: the only ones pre-training may see."""
    if not len(classes):
        raise ValueError("no pre-training classes given; pass the meta-train categories (split.train)")
    return torch.isin(labels, torch.as_tensor(list(classes))).nonzero().squeeze(1)  # (M_train,)


def pretrain_classifier(
    features: Indexable,
    labels: Tensor,
    classes: Sequence[int],
    hidden: int,
    steps: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
) -> tuple[nn.Sequential, list[float]]:
    r"""Train a ``len(classes)``-way classifier on the examples of ``classes`` only (Adam, cross-entropy).

    ``features[indices] -> (B, D)`` and ``labels (M,)`` cover the whole corpus; examples of other
    classes (the meta-val and meta-test categories) are never drawn. Class ``classes[j]`` becomes
    output ``j``. Minibatches are drawn uniformly with replacement, seeded. Returns the model and
    its training losses.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps}, {batch_size}")
    classes = sorted({int(c) for c in classes})
    pool = training_examples(labels, classes)
    if len(pool) == 0:
        raise ValueError(f"no example has a label in {classes}; pass classes that occur in labels")
    output_of = torch.full((int(labels.max()) + 1,), -1, dtype=torch.long)
    output_of[torch.tensor(classes)] = torch.arange(len(classes))  # category id -> output 0..C-1
    probe = features[pool[:1]]
    model = fewshot_mlp(probe.shape[1], hidden, len(classes), seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        batch = pool[torch.randint(len(pool), (batch_size,), generator=generator)]  # (B,)
        loss = F.cross_entropy(model(features[batch]), output_of[labels[batch]])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model, losses


def prototype_head(body: nn.Module, support_x: Tensor, support_y: Tensor, num_ways: int) -> tuple[Tensor, Tensor]:
    r"""The N-way head $W_c = 2\mu_c$, $b_c = -\lVert\mu_c\rVert^2$ from the support set's class means.

    ``support_x (S, D)``, ``support_y (S,)`` with labels ``0..num_ways-1`` -> ``weight (N, H)``,
    ``bias (N,)``, where $\mu_c$ is the mean of ``body(x)`` over the support examples of class c.
    """
    with torch.no_grad():
        z = body(support_x)  # (S, H)
        counts = torch.bincount(support_y, minlength=num_ways)  # (N,)
        if (counts == 0).any():
            raise ValueError(f"every class needs a support example; got counts {counts.tolist()}")
        means = torch.zeros(num_ways, z.shape[1]).index_add_(0, support_y, z) / counts[:, None]  # (N, H)
    return 2 * means, -(means**2).sum(1)


def pretrained_initialisations(model: nn.Sequential, episodes: Sequence[Episode], num_ways: int) -> Params:
    """Per episode: the pre-trained body and a prototype head from its support set, stacked ``(B, ...)``."""
    body = model[:-1]
    heads = [prototype_head(body, e.support_x, e.support_y, num_ways) for e in episodes]
    batch = len(episodes)
    return {
        "0.weight": model[0].weight.detach().expand(batch, *model[0].weight.shape),  # (B, H, D)
        "0.bias": model[0].bias.detach().expand(batch, *model[0].bias.shape),  # (B, H)
        "2.weight": torch.stack([w for w, _ in heads]),  # (B, N, H)
        "2.bias": torch.stack([b for _, b in heads]),  # (B, N)
    }


def random_initialisations(num_features: int, hidden: int, num_ways: int, seed: int, indices: Sequence[int]) -> Params:
    """Per episode ``i`` in ``indices``: a fresh :func:`fewshot_mlp` seeded by ``(seed, i)``, stacked."""
    models = [fewshot_mlp(num_features, hidden, num_ways, (seed, i)) for i in indices]
    return {name: torch.stack([dict(m.named_parameters())[name].detach() for m in models])
            for name, _ in models[0].named_parameters()}
