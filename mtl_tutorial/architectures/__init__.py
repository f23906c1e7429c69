"""Parameter-sharing architectures behind one task interface.

Every model here is called as ``model(task_name, input_ids (B, L))`` and returns that task's
logits (classification ``(B, C)``, generation ``(B, L, V)``), and exposes
``shared_parameters()`` (θ_s, what an aggregator acts on), ``task_parameters(task)``,
``last_shared_parameters()`` (GradNorm's layer) and ``parameter_counts()``. So every trainer,
weighting and aggregator of the package works with every architecture.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from torch import nn

from mtl_tutorial.architectures.adapters import AdapterModel
from mtl_tutorial.architectures.base import MultiTaskArchitecture
from mtl_tutorial.architectures.cross_stitch import CrossStitchModel
from mtl_tutorial.architectures.mmoe import MMoEModel
from mtl_tutorial.architectures.text_to_text import TextToTextModel
from mtl_tutorial.config import ModelConfig
from mtl_tutorial.models.multitask import MultiTaskModel
from mtl_tutorial.tasks import Task

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "hard": MultiTaskModel,  # one trunk, one head per task (mtl_tutorial/models/multitask.py)
    "cross_stitch": CrossStitchModel,  # a column per task, mixed by learned units (soft sharing)
    "mmoe": MMoEModel,  # shared experts, one softmax gate per task
    "adapters": AdapterModel,  # the shared trunk plus per-task bottleneck adapters
    "text_to_text": TextToTextModel,  # one language model, task prefixes, verbalised answers
}


def make_architecture(name: str, config: ModelConfig, tasks: Sequence[Task], vocab_size: int, **kwargs) -> nn.Module:
    """Build a registered architecture by name; an unknown name or option lists the valid ones.

    ``make_architecture("hard", ModelConfig(), [SENTIMENT, GENERATION], 4000)``;
    ``make_architecture("mmoe", ModelConfig(), [SENTIMENT, GENERATION], 4000, num_experts=4)``.
    """
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {name!r}; valid architectures are: {', '.join(ARCHITECTURES)}")
    cls = ARCHITECTURES[name]
    options = [p for p in inspect.signature(cls).parameters if p not in ("config", "tasks", "vocab_size")]
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise TypeError(
            f"architecture {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(options) or 'none'}"
        )
    return cls(config, tasks, vocab_size, **kwargs)


__all__ = [
    "ARCHITECTURES",
    "AdapterModel",
    "CrossStitchModel",
    "MMoEModel",
    "MultiTaskArchitecture",
    "MultiTaskModel",
    "TextToTextModel",
    "make_architecture",
]
