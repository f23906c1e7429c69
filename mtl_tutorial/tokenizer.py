"""Tokenizers trained on the training split only: byte-level BPE (default) or the article's words.

Both are Hugging Face ``tokenizers`` objects wrapped in :class:`TextTokenizer`, which adds the
special tokens the tasks need: padding, begin/end of snippet, and one prefix token per label so
that the generator can be asked for a "fresh", "rotten" or "plot" snippet.

:meth:`TextTokenizer.for_splits` caches each trained tokenizer as two files, both written
atomically: the tokenizer JSON and a ``.meta.json`` record of what it was trained from (kind,
vocabulary size, minimum frequency, split seed, digest of the training texts, sha256 of the
JSON). A cached file that does not match its record or the config is refused, never used.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from mtl_tutorial.config import DataConfig, TokenizerConfig
from mtl_tutorial.data import LABELS, Splits, data_dir
from mtl_tutorial.files import CorruptFileError, atomic_write_json, atomic_write_text, read_json

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
LABEL_TOKENS = {label: f"<{label}>" for label in LABELS}
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK, *LABEL_TOKENS.values()]  # ids 0..6 in this order
MODEL_TYPES = {"bpe": "BPE", "word": "WordLevel"}  # config kind -> the tokenizers model it trains
META_FORMAT = 1  # the version of the ``.meta.json`` record


class CorruptTokenizerError(CorruptFileError):
    """A cached tokenizer file that does not match its record or the config it is loaded for."""


def _same_tokenizer(path: Path, text: str) -> bool:
    """Whether the tokenizer file at ``path`` holds the tokenizer serialised as ``text``."""
    try:
        return Tokenizer.from_file(str(path)).to_str() == text
    except Exception:  # noqa: BLE001 -- tokenizers raises a bare Exception on any bad file
        return False


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
        or config never reuses a stale tokenizer; the ``.meta.json`` beside it records the same
        facts and the file's sha256, and both are checked on load (a substituted or altered file
        raises :class:`CorruptTokenizerError`). A file without a record (written before records
        existed) is retrained and re-saved with one.
        """
        texts = [s.text for s in splits.train]
        digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()
        name = f"{config.kind}-{config.vocab_size}-min{config.min_frequency}-split{data.split_seed}-{digest[:12]}"
        path = Path(cache or data_dir()) / "tokenizers" / f"{name}.json"
        meta_path = path.with_suffix(".meta.json")
        expected = {"format": META_FORMAT, "kind": config.kind,
                    "vocab_size_requested": config.vocab_size,
                    "min_frequency": config.min_frequency, "split_seed": data.split_seed,
                    "training_digest": digest}
        if path.exists() and meta_path.exists():
            return cls._load_checked(path, meta_path, expected, config)
        tok = cls.train(texts, config)
        text = tok.tokenizer.to_str()
        if path.exists() and not _same_tokenizer(path, text):  # a file from before the records
            warnings.warn(f"replaced {path}: it differs from the tokenizer retrained from the "
                          "training split", stacklevel=2)
        # The tokenizer first, then its record: a crash in between leaves a file without a
        # record, which the next call retrains like any file from before the records.
        atomic_write_text(path, text)
        sha = hashlib.sha256(text.encode()).hexdigest()
        atomic_write_json(meta_path, {**expected, "vocab_size": tok.vocab_size,
                                      "tokenizer_sha256": sha})
        return tok

    @classmethod
    def _load_checked(cls, path: Path, meta_path: Path, expected: dict[str, Any],
                      config: TokenizerConfig) -> TextTokenizer:
        """Load ``path`` after checking it against its record ``meta_path`` and ``expected``."""
        repair = (f"delete it; the next run retrains it from the training split "
                  f"(rm {path} {meta_path})")
        meta = read_json(meta_path, repair)

        def refuse(problem: str) -> CorruptTokenizerError:
            return CorruptTokenizerError(f"cached tokenizer {path} {problem}; {repair}")

        if not isinstance(meta, dict):
            raise refuse(f"has a record {meta_path.name} that is not a JSON object")
        for key, value in expected.items():
            if meta.get(key) != value:
                found, needed = meta.get(key), value
                if key == "training_digest":  # 64 hex digits say no more than 12
                    found, needed = str(found)[:12], value[:12]
                raise refuse(f"was made for {key}={found!r}, this run needs {needed!r}")
        try:
            data = path.read_bytes()
        except OSError as error:
            raise refuse(f"cannot be read ({error})") from None
        if hashlib.sha256(data).hexdigest() != meta.get("tokenizer_sha256"):
            raise refuse(f"has changed since it was saved (its sha256 differs from the one in "
                         f"{meta_path.name})")
        try:
            tokenizer = Tokenizer.from_str(data.decode("utf-8"))
        except Exception as error:  # noqa: BLE001 -- tokenizers raises a bare Exception here
            raise refuse(f"is not a valid tokenizer file ({error})") from None
        model_type = type(tokenizer.model).__name__
        if model_type != MODEL_TYPES[config.kind]:
            raise refuse(f"is a {model_type} tokenizer, the config asks for {config.kind!r} "
                         f"({MODEL_TYPES[config.kind]})")
        size = tokenizer.get_vocab_size()
        if size > config.vocab_size or size != meta.get("vocab_size"):
            raise refuse(f"has {size:,} tokens, the config asks for at most {config.vocab_size:,} "
                         f"and its record says {meta.get('vocab_size')!r}")
        try:
            return cls(tokenizer, config)
        except ValueError as error:
            raise refuse(str(error)) from None

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
