"""The three tasks of the case study, all drawn from one corpus, and their losses.

==========  ==============================  =======================  ==================
task        examples                        target                   main metric
==========  ==============================  =======================  ==================
sentiment   critics' review snippets        fresh (1) / rotten (0)   accuracy (higher)
source      every snippet                   review (0) / plot (1)    accuracy (higher)
generation  every snippet                   the next token           perplexity (lower)
==========  ==============================  =======================  ==================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from mtl_tutorial.data import Snippet

CLASSIFICATION = "classification"
LANGUAGE_MODELING = "language_modeling"
IGNORE_INDEX = -100  # target value of padding positions in language modelling


@dataclass(frozen=True)
class Task:
    """A task: which snippets it uses, what it predicts, and how it is scored.

    ``classes`` maps a snippet label to a class index (classification only); snippets whose label
    is not in ``classes`` are not examples of the task.
    """

    name: str
    kind: str  # CLASSIFICATION or LANGUAGE_MODELING
    description: str
    classes: tuple[tuple[str, int], ...] = ()  # (snippet label, class index) pairs
    class_names: tuple[str, ...] = ()  # class index -> readable name
    metric: str = "accuracy"  # the main metric, reported in tables and used for Δm
    lower_is_better: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def select(self, snippets: Sequence[Snippet]) -> list[Snippet]:
        """The snippets that are examples of this task."""
        if self.kind == LANGUAGE_MODELING:
            return list(snippets)
        labels = dict(self.classes)
        return [s for s in snippets if s.label in labels]

    def target(self, snippet: Snippet) -> int:
        """The class index of a snippet (classification tasks)."""
        return dict(self.classes)[snippet.label]

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy over examples (classification) or over real tokens (generation).

        Shapes: classification ``logits (B, C)``, ``targets (B,)``; language modelling
        ``logits (B, L, V)``, ``targets (B, L)`` with ``IGNORE_INDEX`` at padding.
        """
        if self.kind == CLASSIFICATION:
            if logits.dim() != 2 or targets.shape != logits.shape[:1]:
                raise ValueError(
                    f"task {self.name!r} expects logits (B, C) and targets (B,), "
                    f"got {tuple(logits.shape)} and {tuple(targets.shape)}"
                )
            return F.cross_entropy(logits, targets)
        if logits.dim() != 3 or targets.shape != logits.shape[:2]:
            raise ValueError(
                f"task {self.name!r} expects logits (B, L, V) and targets (B, L), "
                f"got {tuple(logits.shape)} and {tuple(targets.shape)}"
            )
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)

    def __repr__(self) -> str:
        return f"Task({self.name!r}, {self.kind})"


SENTIMENT = Task(
    name="sentiment",
    kind=CLASSIFICATION,
    description="is a critic's snippet fresh (positive) or rotten (negative)?",
    classes=(("rotten", 0), ("fresh", 1)),
    class_names=("rotten", "fresh"),
)
SOURCE = Task(
    name="source",
    kind=CLASSIFICATION,
    description="is a snippet from a critic's review or from a plot synopsis?",
    classes=(("fresh", 0), ("rotten", 0), ("plot", 1)),
    class_names=("review", "plot"),
)
GENERATION = Task(
    name="generation",
    kind=LANGUAGE_MODELING,
    description="predict the next token of any snippet (optionally after a label prefix)",
    metric="perplexity",
    lower_is_better=True,
)

TASKS: dict[str, Task] = {"sentiment": SENTIMENT, "source": SOURCE, "generation": GENERATION}


def get_task(name: str) -> Task:
    """The registered task called ``name``; an unknown name lists the valid ones."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; valid tasks are: {', '.join(TASKS)}")
    return TASKS[name]

