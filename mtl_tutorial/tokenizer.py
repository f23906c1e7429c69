"""Tokenizers trained on the training split only: byte-level BPE (default) or the article's words.

Both are Hugging Face ``tokenizers`` objects wrapped in :class:`TextTokenizer`, which adds the
special tokens the tasks need: padding, begin/end of snippet, and one prefix token per label so
that the generator can be asked for a "fresh", "rotten" or "plot" snippet.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from mtl_tutorial.config import DataConfig, TokenizerConfig
from mtl_tutorial.data import LABELS, Splits, data_dir

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
LABEL_TOKENS = {label: f"<{label}>" for label in LABELS}
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK, *LABEL_TOKENS.values()]  # ids 0..6 in this order


class TextTokenizer:
    """Text <-> token ids, with the special tokens at fixed ids (``pad_id == 0``).

    Example::

        >>> tok = TextTokenizer.train(["a fine film", "a dull film"], TokenizerConfig(vocab_size=300))
        >>> tok.decode(tok.encode("a fine film"))
        'a fine film'
    """

    def __init__(self, tokenizer: Tokenizer, config: TokenizerConfig) -> None:
        self.tokenizer = tokenizer
        self.config = config
        ids = [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS]
        if ids != list(range(len(SPECIAL_TOKENS))):
            raise ValueError(f"special tokens must have ids 0..{len(SPECIAL_TOKENS) - 1}, got {ids}")
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = ids[:4]

    @classmethod
    def train(cls, texts: Sequence[str], config: TokenizerConfig) -> TextTokenizer:
        """Train on ``texts`` (the training split). Deterministic for the same texts and config."""
        if config.kind == "bpe":
            tok = Tokenizer(models.BPE())
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
            tok.decoder = decoders.ByteLevel()
            trainer = trainers.BpeTrainer(
                vocab_size=config.vocab_size,
                min_frequency=config.min_frequency,
                special_tokens=SPECIAL_TOKENS,
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                show_progress=False,
            )
        else:  # the article's word vocabulary: lower-cased words and punctuation
            tok = Tokenizer(models.WordLevel(unk_token=UNK))
            tok.normalizer = normalizers.Lowercase()
            tok.pre_tokenizer = pre_tokenizers.Whitespace()
            tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
            trainer = trainers.WordLevelTrainer(
                vocab_size=config.vocab_size,
                min_frequency=config.min_frequency,
                special_tokens=SPECIAL_TOKENS,
                show_progress=False,
            )
        tok.train_from_iterator(list(texts), trainer=trainer)
        return cls(tok, config)

    @classmethod
    def for_splits(cls, splits: Splits, config: TokenizerConfig, data: DataConfig,
                   cache: Path | None = None) -> TextTokenizer:
        """Load the tokenizer trained on ``splits.train`` from the cache, training it if needed.

        The file name encodes the config and a hash of the training texts, so a different split
        or config never reuses a stale tokenizer.
        """
        texts = [s.text for s in splits.train]
        digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:12]
        name = f"{config.kind}-{config.vocab_size}-min{config.min_frequency}-split{data.split_seed}-{digest}.json"
        path = Path(cache or data_dir()) / "tokenizers" / name
        if path.exists():
            return cls(Tokenizer.from_file(str(path)), config)
        tok = cls.train(texts, config)
        path.parent.mkdir(parents=True, exist_ok=True)
        tok.tokenizer.save(str(path))
        return tok

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def label_id(self, label: str) -> int:
        """The id of a label's prefix token, e.g. ``label_id("fresh")``."""
        if label not in LABEL_TOKENS:
            raise KeyError(f"unknown label {label!r}; valid labels are: {', '.join(LABELS)}")
        return self.tokenizer.token_to_id(LABEL_TOKENS[label])

    def encode(self, text: str, prefix: str | None = None) -> list[int]:
        """``[<bos> or <label>] + tokens + [<eos>]``, cut to ``config.max_length`` ids.

        A cut snippet keeps its start and loses its ``<eos>``: the model never learns to end a
        snippet where it was truncated.
        """
        start = self.bos_id if prefix is None else self.label_id(prefix)
        ids = [start, *self.tokenizer.encode(text).ids, self.eos_id]
        return ids[: self.config.max_length]

    def decode(self, ids: Sequence[int]) -> str:
        """Token ids back to text, special tokens removed."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()

    def __repr__(self) -> str:
        return f"TextTokenizer(kind={self.config.kind!r}, vocab_size={self.vocab_size})"
