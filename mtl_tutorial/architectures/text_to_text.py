r"""One language model for every task, text-to-text style (Raffel et al., JMLR 2020, T5).

T5 casts every task as "read a text with a task prefix, write the answer as text", so one model
with one loss serves them all. Here the model is a causal Transformer language model and

- every input gets a **task prefix token** in front: ``<sentiment> <bos> a fine film <eos>``;
- a classification answer is a **verbaliser token** predicted right after the input: class c of
  task t is the token :math:`v_{t,c}`, and the class logits are the language model's next-token
  logits at the answer position (the last real token) restricted to those tokens,

  .. math::

      z_{t,c} = \big(W_{\text{out}} \, h_{\text{answer}}\big)_{v_{t,c}}, \qquad
      \text{loss} = -\log \operatorname{softmax}(z_t)_{y},

  a softmax over the task's verbaliser tokens (as in PET, Schick & Schütze, 2021); T5 itself
  scores the answer against the whole vocabulary;
- generation is next-token prediction after its own prefix ``<generation>``.

So ``model("sentiment", ids)`` still returns ``(B, C)`` logits and ``model("generation", ids)``
``(B, L, V)``: the task interface, the batches and every trainer, weighting and aggregator are
unchanged. T5's task mixing (examples-proportional with a cap K, temperature) is
:func:`mtl_tutorial.batching.mixing_rates`, chosen with ``TrainConfig.mixing``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_tutorial.architectures.base import MultiTaskArchitecture
from mtl_tutorial.config import ModelConfig
from mtl_tutorial.models.heads import LanguageModelHead
from mtl_tutorial.models.transformer import TransformerTrunk
from mtl_tutorial.tasks import CLASSIFICATION, Task
from mtl_tutorial.tokenizer import LABEL_TOKENS, SPECIAL_TOKENS


def tokenizer_label_ids() -> dict[str, int]:
    """The ids of :class:`~mtl_tutorial.tokenizer.TextTokenizer`'s label tokens, fixed by its
    special-token order: ``{"fresh": 4, "rotten": 5, "plot": 6}``."""
    return {label: SPECIAL_TOKENS.index(token) for label, token in LABEL_TOKENS.items()}


class TextToTextModel(MultiTaskArchitecture):
    """A causal language model over the tokenizer's vocabulary plus a few added tokens.

    Added tokens (ids ``vocab_size, vocab_size + 1, ...``, listed in ``added_tokens``): one task
    prefix per task, ``<sentiment>``, ``<source>``, ``<generation>``, and a verbaliser for every
    class name that is not already one of the tokenizer's label tokens. By default
    (``label_ids=None``: :func:`tokenizer_label_ids`) sentiment answers with the label tokens
    ``<rotten>`` / ``<fresh>`` that also prefix conditioned generation, source with the added
    ``<review>`` and the label token ``<plot>``. The generation logits cover the tokenizer's
    vocabulary only (``(B, L, V)``): added tokens are inputs and answers, never generated text.

    The prefix makes every sequence one token longer, so the trunk has ``max_length + 1``
    positions; ``max_length`` still bounds the batches' inputs, as for the other architectures.

    **Every parameter is shared** (θ_s is the whole model) and no task has parameters of its own:
    ``task_parameters(t)`` is empty and ``parameter_counts()`` reports 0 per task. An aggregator
    therefore acts on every parameter.

    Example::

        >>> model = TextToTextModel(ModelConfig(), [SENTIMENT, SOURCE, GENERATION], vocab_size=4000)
        >>> model.added_tokens
        ('<sentiment>', '<source>', '<generation>', '<review>')
        >>> model.verbalisers
        {'sentiment': (5, 4), 'source': (4003, 6)}
    """

    def __init__(self, config: ModelConfig, tasks: Sequence[Task], vocab_size: int,
                 label_ids: Mapping[str, int] | None = None) -> None:
        super().__init__(config, tasks, "text_to_text")
        label_ids = dict(tokenizer_label_ids() if label_ids is None else label_ids)
        bad = {label: i for label, i in label_ids.items() if not 0 <= i < vocab_size}
        if bad:
            raise ValueError(f"label_ids {bad} lie outside the vocabulary of {vocab_size} tokens")
        added = [f"<{task.name}>" for task in tasks]  # the task prefixes
        verbalisers = {}
        for task in tasks:
            if task.kind != CLASSIFICATION:
                continue
            ids = []
            for name in task.class_names:
                if name in label_ids:
                    ids.append(label_ids[name])
                else:
                    if f"<{name}>" not in added:
                        added.append(f"<{name}>")
                    ids.append(vocab_size + added.index(f"<{name}>"))
            if len(set(ids)) != len(ids):
                raise ValueError(f"task {task.name!r} has two classes with the same verbaliser token: {ids}")
            verbalisers[task.name] = tuple(ids)
        self.vocab_size = vocab_size
        self.added_tokens = tuple(added)
        self.prefix_ids = {task.name: vocab_size + i for i, task in enumerate(tasks)}
        self.verbalisers = verbalisers
        self.trunk = TransformerTrunk(replace(config, max_length=config.max_length + 1), vocab_size + len(added))
        self.lm_head = LanguageModelHead(config.d_model, vocab_size + len(added),
                                         self.trunk.embedding if config.tie_embeddings else None)

    def forward(self, task: str, input_ids: Tensor) -> Tensor:
        self.check_inputs(task, input_ids)
        B = input_ids.shape[0]
        prefix = input_ids.new_full((B, 1), self.prefix_ids[task])  # (B, 1)
        hidden = self.trunk(torch.cat([prefix, input_ids], dim=1))  # (B, 1 + L, D)
        weight = self.lm_head.linear.weight  # (V + added, D)
        if task in self.verbalisers:
            answer = (input_ids != 0).sum(1)  # (B,): the last real token, one later for the prefix
            at_answer = hidden[torch.arange(B, device=hidden.device), answer]  # (B, D)
            return F.linear(at_answer, weight[list(self.verbalisers[task])])  # (B, C)
        return F.linear(hidden[:, 1:], weight[: self.vocab_size])  # (B, L, V): drop the prefix's output

    def shared_parameters(self) -> list[nn.Parameter]:
        """θ_s: every parameter."""
        return list(self.parameters())

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The trunk's final layer norm, as in hard sharing."""
        return self.trunk.last_layer_parameters()

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """θ_t: none, every parameter is shared."""
        self.check_task(task)
        return []
