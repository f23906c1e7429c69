r"""GradNorm's synthetic regression tasks (section 5.1 of Chen et al., ICML 2018).

$T$ regression tasks share an input $x \in \mathbb R^{250}$ and predict, with a squared loss,

$$f_t(x) = \sigma_t \tanh\bigl((B + \varepsilon_t)\, x\bigr) \in \mathbb R^{100},$$

where $B \in \mathbb R^{100 \times 250}$ is shared by every task and $\varepsilon_t$ is task
$t$'s own perturbation. The scale $\sigma_t$ is the knob: a task with a large $\sigma_t$ has a
large loss and a large gradient, and with equal weights it takes over the shared layers. The
paper runs $T = 2$ with $\sigma = (1, 100)$, and $T = 10$ with scales spread over a range, on
a trunk of 4 fully connected ReLU layers of 100 units with one affine head per task, and
GradNorm's $\alpha = 0.12$.

Conventions the paper leaves open, chosen here and stated:

- The paper draws the entries of $B$ and $\varepsilon_t$ "from $N(0, 10)$ and $N(0, 3.5)$". We
  read the second argument as a **variance**, the usual $N(\mu, \sigma^2)$ notation: standard
  deviations $\sqrt{10} \approx 3.16$ and $\sqrt{3.5} \approx 1.87$ (some public
  re-implementations read them as standard deviations instead; ``shared_variance`` and
  ``task_variance`` set either).
- The paper does not say how $x$ is drawn; we use $x \sim N(0, I_{250})$ (``input_std``). The
  pre-activations then have a standard deviation of about
  $\sqrt{250 \cdot 13.5} \approx 58$, so the $\tanh$ is saturated and each target coordinate is
  close to $\pm\sigma_t$: each task is 100 noisy half-space problems at scale $\sigma_t$.
- Training uses minibatches from a fixed training set and Adam; the weighting's own parameters
  (GradNorm's weights, uncertainty's log-variances) get their own learning rate.

The training loss is the raw mean squared error of each task. The paper reports normalised
losses $L_t(k) / L_t(0)$, which :class:`SyntheticRecord` provides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from mtl_tutorial.weightings import make_weighting


@dataclass
class SyntheticConfig:
    """The synthetic problem, the model and the optimiser. Defaults: the paper's two-task case."""

    scales: tuple[float, ...] = (1.0, 100.0)  # σ_t, one per task
    input_dim: int = 250
    output_dim: int = 100
    shared_variance: float = 10.0  # Var(B_ij): the paper's N(0, 10), read as a variance
    task_variance: float = 3.5  # Var(ε_t,ij): the paper's N(0, 3.5)
    input_std: float = 1.0  # x ~ N(0, input_std² I); the paper does not say
    hidden_dim: int = 100  # the paper's trunk: num_layers ReLU layers of 100 units
    num_layers: int = 4
    num_train: int = 16384  # a fixed training set, sampled in minibatches (the paper gives no size)
    num_test: int = 2048
    batch_size: int = 128
    lr: float = 1e-3  # Adam, model parameters
    weighting_lr: float = 0.025  # Adam, the weighting's parameters (GradNorm's w, uncertainty's s)
    seed: int = 0  # the problem (B, ε, data), the initial model and the minibatch order

    def __post_init__(self) -> None:
        self.scales = tuple(float(s) for s in self.scales)
        if not self.scales or not all(math.isfinite(s) and s > 0 for s in self.scales):
            raise ValueError(f"scales must be one positive number per task, got {self.scales}")
        for name in ("input_dim", "output_dim", "hidden_dim", "num_layers", "num_train", "num_test", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.batch_size > self.num_train:
            raise ValueError(f"batch_size {self.batch_size} exceeds num_train {self.num_train}; lower it")
        for name in ("shared_variance", "task_variance"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)}")
        for name in ("input_std", "lr", "weighting_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def num_tasks(self) -> int:
        return len(self.scales)


class SyntheticProblem:
    r"""The functions $f_t(x) = \sigma_t \tanh((B + \varepsilon_t) x)$, drawn once from ``generator``.

    >>> problem = SyntheticProblem(SyntheticConfig(), torch.Generator().manual_seed(0))
    >>> x, y = problem.sample(8, torch.Generator().manual_seed(1))
    >>> tuple(x.shape), tuple(y.shape)  # (N, input_dim), (N, T, output_dim)
    ((8, 250), (8, 2, 100))
    """

    def __init__(self, config: SyntheticConfig, generator: torch.Generator) -> None:
        self.config = config
        shape = (config.output_dim, config.input_dim)
        self.B = math.sqrt(config.shared_variance) * torch.randn(shape, generator=generator)  # (out, in)
        self.epsilons = math.sqrt(config.task_variance) * torch.randn(
            (config.num_tasks, *shape), generator=generator)  # (T, out, in)
        self.scales = torch.tensor(config.scales)  # (T,)

    def targets(self, x: Tensor) -> Tensor:
        """``x (N, input_dim)`` -> ``y (N, T, output_dim)``."""
        pre = torch.einsum("toi,ni->nto", self.B + self.epsilons, x)  # (N, T, out)
        return self.scales[None, :, None] * torch.tanh(pre)

    def sample(self, num_examples: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``num_examples`` inputs ``x (N, input_dim)`` and their targets ``y (N, T, output_dim)``."""
        if num_examples < 1:
            raise ValueError(f"num_examples must be at least 1, got {num_examples}")
        x = self.config.input_std * torch.randn((num_examples, self.config.input_dim), generator=generator)
        return x, self.targets(x)


class SyntheticModel(nn.Module):
    """A shared trunk of ``num_layers`` Linear+ReLU layers and one affine head per task (the paper's model)."""

    def __init__(self, config: SyntheticConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = config.input_dim
        for _ in range(config.num_layers):
            layers += [nn.Linear(width, config.hidden_dim), nn.ReLU()]
            width = config.hidden_dim
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.ModuleList(nn.Linear(width, config.output_dim) for _ in config.scales)

    def forward(self, x: Tensor) -> Tensor:
        """``x (N, input_dim)`` -> predictions ``(N, T, output_dim)``."""
        hidden = self.trunk(x)  # (N, hidden)
        return torch.stack([head(hidden) for head in self.heads], dim=1)  # (N, T, out)

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The trunk's last Linear layer: the $W$ on which GradNorm measures gradient norms."""
        return list(self.trunk[-2].parameters())


def task_losses(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean squared error per task: ``(N, T, out)`` twice -> ``(T,)``."""
    return (prediction - target).pow(2).mean(dim=(0, 2))


@dataclass
class SyntheticRecord:
    r"""What :func:`train_synthetic` measured, one row per step (before that step's update).

    ``losses``: each task's raw training MSE $L_t$ on the step's minibatch; ``weights``: the
    weights the step used, $w_t = \partial \text{objective} / \partial L_t$; ``grad_norms``:
    $G_t = \lVert \nabla_W w_t L_t \rVert$ on the last shared layer $W$; ``test_losses``: each
    task's MSE on the test set at ``test_steps`` (step $k$: before the $k$-th update).
    """

    weighting: str
    config: SyntheticConfig
    steps: Tensor  # (S,)
    losses: Tensor  # (S, T)
    weights: Tensor  # (S, T)
    grad_norms: Tensor  # (S, T)
    test_steps: Tensor  # (E,)
    test_losses: Tensor  # (E, T)
    options: dict = field(default_factory=dict)

    @property
    def loss_ratios(self) -> Tensor:
        """$L_t(k) / L_t(0)$ on the training minibatches, ``(S, T)``."""
        return self.losses / self.losses[0]

    @property
    def test_loss_ratios(self) -> Tensor:
        """$L_t(k) / L_t(0)$ on the test set, ``(E, T)``; the paper's reported quantity."""
        return self.test_losses / self.test_losses[0]


def _test_losses(model: SyntheticModel, x: Tensor, y: Tensor) -> Tensor:
    with torch.no_grad():
        return task_losses(model(x), y)


def train_synthetic(
    weighting_name: str,
    config: SyntheticConfig,
    steps: int,
    weighting_options: dict | None = None,
    eval_every: int = 50,
) -> SyntheticRecord:
    """Train :class:`SyntheticModel` for ``steps`` Adam steps with a registered weighting.

    Any name of :data:`~mtl_tutorial.weightings.WEIGHTINGS` works; ``weighting_options`` are passed
    to :func:`~mtl_tutorial.weightings.make_weighting`, except GradNorm's ``shared_parameters``,
    which this function supplies (``model.last_shared_parameters()``), and RLW's ``generator``,
    seeded from ``config.seed`` unless given. The same ``config.seed`` gives every weighting the
    same problem, the same initial model and the same minibatches, as the paper's comparison
    requires.
    """
    if steps < 1 or eval_every < 1:
        raise ValueError(f"steps and eval_every must be at least 1, got {steps} and {eval_every}")
    options = dict(weighting_options or {})
    if "shared_parameters" in options:
        raise ValueError("train_synthetic passes GradNorm the model's last shared layer itself; "
                         "leave shared_parameters out of weighting_options")
    with torch.random.fork_rng(devices=[]):  # the initial model from the seed, global RNG untouched
        torch.manual_seed(config.seed)
        model = SyntheticModel(config)
    shared = model.last_shared_parameters()
    if weighting_name == "gradnorm":
        options["shared_parameters"] = shared
    if weighting_name == "rlw":
        options.setdefault("generator", torch.Generator().manual_seed(config.seed + 1))
    weighting = make_weighting(weighting_name, config.num_tasks, **options)
    generator = torch.Generator().manual_seed(config.seed)
    problem = SyntheticProblem(config, generator)
    x_train, y_train = problem.sample(config.num_train, generator)
    x_test, y_test = problem.sample(config.num_test, generator)
    optimizer = torch.optim.Adam([{"params": model.parameters(), "lr": config.lr},
                                  {"params": weighting.parameters(), "lr": config.weighting_lr}])
    T = config.num_tasks
    losses_log, weights_log, norms_log = torch.empty(steps, T), torch.empty(steps, T), torch.empty(steps, T)
    test_steps, test_log = [], []
    for step in range(steps):
        if step % eval_every == 0:
            test_steps.append(step)
            test_log.append(_test_losses(model, x_test, y_test))
        index = torch.randint(config.num_train, (config.batch_size,), generator=generator)  # (N,)
        losses = task_losses(model(x_train[index]), y_train[index])  # (T,)
        norms = torch.stack([
            torch.cat([g.flatten() for g in torch.autograd.grad(losses[t], shared, retain_graph=True)]).norm()
            for t in range(T)
        ])  # (T,) ||grad_W L_t||
        objective = weighting(losses)
        (weights,) = torch.autograd.grad(objective, losses, retain_graph=True)  # (T,) dObjective/dL_t
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        optimizer.step()
        losses_log[step], weights_log[step] = losses.detach(), weights
        norms_log[step] = weights * norms
    test_steps.append(steps)
    test_log.append(_test_losses(model, x_test, y_test))
    options.pop("shared_parameters", None)
    options.pop("generator", None)
    return SyntheticRecord(
        weighting=weighting_name, config=config, steps=torch.arange(steps), losses=losses_log,
        weights=weights_log, grad_norms=norms_log, test_steps=torch.tensor(test_steps),
        test_losses=torch.stack(test_log), options=options,
    )
