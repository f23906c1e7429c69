"""Configuration dataclasses: data, tokenizer, model and training.

Every experiment in the book is described by these four objects, so a JSON result file can record
exactly what was run (``dataclasses.asdict``) and a reader can rebuild it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

TRUNKS = ("transformer", "lstm")
TOKENIZER_KINDS = ("bpe", "word")
MIXINGS = ("all", "round_robin", "proportional", "temperature")
# How a TaskStream turns each epoch's random permutation into batches (mtl_tutorial.batching);
# generation streams use length pools under every choice:
BATCH_SAMPLINGS = (
    # sort by length within pools of 50 batches: least padding, but classes of unlike length cluster
    # (source: plot synopses gather in a few batches). The recipe of the stored results
    "length_pools",
    # classification batches are plain random draws: class counts as under uniform sampling
    "uniform",
    # sort by length within each class inside a pool, every class keeping its random positions:
    # class counts as under "uniform", padding as under "length_pools" where classes match in length
    "length_pools_by_class",
)
# The names of two registries, kept here so that this module imports nothing of the package (the
# registries' modules import it): mtl_tutorial.architectures.ARCHITECTURES and mtl_tutorial.tasks.TASKS.
# tests/test_config.py checks that they agree.
ARCHITECTURE_NAMES = ("hard", "cross_stitch", "mmoe", "adapters", "text_to_text")
TASK_NAMES = ("sentiment", "source", "generation")


def _check_choice(what: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid choices are: {', '.join(valid)}")


def _check_range(name: str, value: object, ok: bool, valid: str) -> None:
    """One error naming the field, the value and the valid range."""
    if not ok:
        raise ValueError(f"{name}={value!r} is out of range; it must be {valid}")


@dataclass
class DataConfig:
    """How the Rotten Tomatoes corpus is split."""

    split_seed: int = 0  # the movie-level split; change it to measure split-to-split spread
    val_fraction: float = 0.1
    test_fraction: float = 0.1

    def __post_init__(self) -> None:
        if not (0 < self.val_fraction < 0.5 and 0 < self.test_fraction < 0.5):
            raise ValueError("val_fraction and test_fraction must each lie in (0, 0.5)")


@dataclass
class TokenizerConfig:
    """Byte-level BPE (our default) or the article's whitespace word vocabulary."""

    kind: str = "bpe"
    vocab_size: int = 4000  # BPE vocabulary size; 4k halves the generation head's cost against 8k
    min_frequency: int = 2  # a merge (or word) must occur this often in the training split
    max_length: int = 64  # tokens kept per snippet, special tokens included

    def __post_init__(self) -> None:
        _check_choice("tokenizer kind", self.kind, TOKENIZER_KINDS)
        if self.vocab_size < 300:
            raise ValueError("vocab_size must be at least 300 (256 bytes plus special tokens)")
        if self.max_length < 8:
            raise ValueError("max_length must be at least 8 tokens")

    @classmethod
    def article(cls) -> TokenizerConfig:
        """The article's choice: a 10,000-word vocabulary."""
        return cls(kind="word", vocab_size=10_000, min_frequency=1)


@dataclass
class ModelConfig:
    """A shared trunk (causal Transformer or the article's LSTM) plus one head per task."""

    trunk: str = "transformer"
    d_model: int = 128  # embedding and hidden width (the article uses 128 for both)
    num_layers: int = 2
    num_heads: int = 4  # Transformer only
    d_ff: int = 512  # Transformer feed-forward width
    dropout: float = 0.1
    max_length: int = 64  # positions the Transformer can see; match TokenizerConfig.max_length
    tie_embeddings: bool = True  # the generation head reuses the token embedding matrix
    architecture: str = "hard"  # how tasks share parameters: a name in mtl_tutorial.architectures.ARCHITECTURES

    def __post_init__(self) -> None:
        _check_choice("trunk", self.trunk, TRUNKS)
        _check_choice("architecture", self.architecture, ARCHITECTURE_NAMES)
        if self.trunk == "transformer" and self.d_model % self.num_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by num_heads={self.num_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must lie in [0, 1)")

    @classmethod
    def article(cls) -> ModelConfig:
        """The article's trunk: Embedding(128) -> LSTM(128), one layer."""
        return cls(trunk="lstm", d_model=128, num_layers=1, dropout=0.0, tie_embeddings=False)


@dataclass
class TrainConfig:
    """The training recipe.

    ``weights`` maps task names to static loss weights; ``None`` means equal weights 1/T, the
    article's ½(L_cls + L_gen) when T = 2. ``mixing`` decides which tasks a step sees: ``all``
    (one batch of every task per step, the article's objective) or one task per step chosen
    ``round_robin``, in proportion to dataset size (``proportional``) or by the T5 temperature
    rule (``temperature``). ``mixing_limit`` is T5's artificial dataset-size limit K: with it a
    task of e_m examples counts as min(e_m, K) in the proportional and temperature rates.

    ``batch_sampling`` decides how a task's batches are drawn (``BATCH_SAMPLINGS``): the default
    ``length_pools`` sorts examples by length within pools of batches, which for a classification
    task whose classes differ in length makes batches of mostly one class; ``uniform`` and
    ``length_pools_by_class`` give every classification batch the class counts of uniform sampling
    (≈ Binomial(batch_size, class share)), at the cost of more padding.

    ``weighting`` names a loss weighting of :mod:`mtl_tutorial.weightings` (``None``: equal
    weights, or the static ``weights``); ``aggregator`` names a gradient aggregator of
    :mod:`mtl_tutorial.aggregators` (``None``: one backward pass of the weighted loss). Their
    ``*_options`` are passed to ``make_weighting`` / ``make_aggregator``; what a method needs from
    the model (GradNorm's last shared layer) the trainer supplies.
    """

    tasks: tuple[str, ...] = ("sentiment", "source", "generation")
    weights: dict[str, float] | None = None
    batch_size: int = 32  # per task and step
    max_steps: int = 2000
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100  # linear warm-up, then cosine decay to 10% of lr
    grad_clip: float | None = 1.0  # the largest gradient norm a step applies; None: no clipping
    mixing: str = "all"
    mixing_temperature: float = 2.0  # T5's tau for mixing="temperature"; 1 is proportional
    mixing_limit: int | None = None  # T5's K: a task counts as at most K examples; None: no cap
    prefix_dropout: float = 0.5  # generation: share of snippets trained without their label prefix
    batch_sampling: str = "length_pools"  # what the stored results used; see BATCH_SAMPLINGS
    eval_every: int = 200
    patience: int = 5  # evaluations without improvement before early stopping; 0 disables it
    seed: int = 0
    device: str = "cpu"
    progress: bool = False  # tqdm progress bar
    weighting: str | None = None
    weighting_options: dict[str, float] = field(default_factory=dict)
    aggregator: str | None = None
    aggregator_options: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)
        _check_choice("mixing", self.mixing, MIXINGS)
        _check_choice("batch_sampling", self.batch_sampling, BATCH_SAMPLINGS)
        if not self.tasks:
            raise ValueError("TrainConfig.tasks is empty; name at least one task")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"TrainConfig.tasks has duplicates: {self.tasks}")
        unknown_tasks = [name for name in self.tasks if name not in TASK_NAMES]
        if unknown_tasks:
            raise ValueError(f"TrainConfig.tasks names unknown tasks {unknown_tasks}; valid tasks are: "
                             f"{', '.join(TASK_NAMES)} (the registry mtl_tutorial.tasks.TASKS)")
        if self.weights is not None:
            unknown = set(self.weights) - set(self.tasks)
            missing = set(self.tasks) - set(self.weights)
            if unknown or missing:
                raise ValueError(
                    f"weights must name exactly the tasks {self.tasks}; "
                    f"unknown: {sorted(unknown)}, missing: {sorted(missing)}"
                )
            for name, w in self.weights.items():
                _check_range(f"TrainConfig.weights[{name!r}]", w, math.isfinite(w) and w >= 0, "finite and >= 0")
        for name in ("batch_size", "max_steps", "eval_every"):
            value = getattr(self, name)
            _check_range(f"TrainConfig.{name}", value, value >= 1, "a positive integer")
        _check_range("TrainConfig.lr", self.lr, math.isfinite(self.lr) and self.lr >= 0,
                     "finite and >= 0 (0 trains nothing)")
        _check_range("TrainConfig.weight_decay", self.weight_decay,
                     math.isfinite(self.weight_decay) and self.weight_decay >= 0, "finite and >= 0")
        _check_range("TrainConfig.warmup_steps", self.warmup_steps, self.warmup_steps >= 0,
                     "an integer >= 0 (0: no warm-up)")
        _check_range("TrainConfig.grad_clip", self.grad_clip,
                     self.grad_clip is None or (math.isfinite(self.grad_clip) and self.grad_clip > 0),
                     "finite and > 0, or None for no clipping")
        _check_range("TrainConfig.prefix_dropout", self.prefix_dropout, 0.0 <= self.prefix_dropout <= 1.0,
                     "in [0, 1]")
        _check_range("TrainConfig.mixing_temperature", self.mixing_temperature, self.mixing_temperature > 0,
                     "> 0 (T5's tau: 1 is proportional, inf gives equal rates)")
        if self.mixing_limit is not None and self.mixing_limit < 1:
            raise ValueError(f"mixing_limit is T5's cap K on a task's example count; it must be a "
                             f"positive integer or None (no cap), got {self.mixing_limit}")
        _check_range("TrainConfig.patience", self.patience, self.patience >= 0,
                     "an integer >= 0 (0 disables early stopping)")
        # late: the registries import torch
        from mtl_tutorial.aggregators import AGGREGATORS, make_aggregator
        from mtl_tutorial.weightings import WEIGHTINGS

        if self.weighting is not None:
            _check_choice("weighting", self.weighting, tuple(WEIGHTINGS))
            if self.weighting == "static":
                raise ValueError("for static weights set TrainConfig.weights (a dict task -> weight), "
                                 "not weighting='static'")
            if self.weights is not None:
                raise ValueError(f"TrainConfig.weights are static weights; they cannot be combined with "
                                 f"weighting={self.weighting!r}. Set one of the two")
        elif self.weighting_options:
            raise ValueError("weighting_options are given but no weighting is named")
        if self.aggregator is not None:
            _check_choice("aggregator", self.aggregator, tuple(AGGREGATORS))
            try:  # aggregators hold no state: building one checks its options now, not at step 1
                make_aggregator(self.aggregator, **self.aggregator_options)
            except (TypeError, ValueError) as error:
                raise ValueError(f"TrainConfig.aggregator_options={self.aggregator_options}: {error}") from None
        elif self.aggregator_options:
            raise ValueError("aggregator_options are given but no aggregator is named")


@dataclass
class ExperimentConfig:
    """Everything one training run needs; what a result file records."""

    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
