import hashlib
import json
import shutil
import warnings

import pytest

from mtl_tutorial.config import DataConfig, TokenizerConfig
from mtl_tutorial.data import Splits
from mtl_tutorial.files import CorruptFileError
from mtl_tutorial.tokenizer import SPECIAL_TOKENS, CorruptTokenizerError, TextTokenizer

TEXTS = ["A fine, funny film.", "A dull film -- and a long one!", "Plot: a man robs a bank."] * 20


@pytest.mark.parametrize("kind", ["bpe", "word"])
def test_special_tokens_have_fixed_ids(kind):
    tok = TextTokenizer.train(TEXTS, TokenizerConfig(kind=kind, vocab_size=300, min_frequency=1))
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.tokenizer.token_to_id(t) == i
    assert tok.pad_id == 0


def test_bpe_round_trip_on_real_snippets(splits):
    tok = TextTokenizer.train([s.text for s in splits.train[:3000]], TokenizerConfig(vocab_size=1000, max_length=4096))
    for s in splits.test[:300]:  # unseen text: byte-level BPE has no unknown tokens
        assert tok.decode(tok.encode(s.text)) == s.text


def test_word_tokenizer_maps_unseen_words_to_unk():
    tok = TextTokenizer.train(TEXTS, TokenizerConfig(kind="word", vocab_size=300, min_frequency=1))
    ids = tok.encode("a zyzzyva film")
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.unk_id in ids


def test_encode_prefix_and_truncation():
    tok = TextTokenizer.train(TEXTS, TokenizerConfig(vocab_size=300, max_length=8))
    ids = tok.encode("a fine funny film and a dull long one", prefix="fresh")
    assert len(ids) == 8
    assert ids[0] == tok.label_id("fresh")
    assert tok.eos_id not in ids  # cut snippets lose their end marker


def test_training_is_deterministic():
    a = TextTokenizer.train(TEXTS, TokenizerConfig(vocab_size=300))
    b = TextTokenizer.train(TEXTS, TokenizerConfig(vocab_size=300))
    assert a.tokenizer.to_str() == b.tokenizer.to_str()


def test_cache_is_keyed_by_training_texts(splits, tmp_path):
    config = TokenizerConfig(vocab_size=300)
    a = TextTokenizer.for_splits(splits, config, DataConfig(), cache=tmp_path)
    b = TextTokenizer.for_splits(splits, config, DataConfig(), cache=tmp_path)  # from the file
    assert a.tokenizer.to_str() == b.tokenizer.to_str()
    names = sorted(p.name for p in (tmp_path / "tokenizers").iterdir())
    assert len(names) == 2 and names[1] == names[0].replace(".json", ".meta.json")


def test_bad_inputs():
    with pytest.raises(ValueError, match="valid choices are: bpe, word"):
        TokenizerConfig(kind="sentencepiece")
    tok = TextTokenizer.train(TEXTS, TokenizerConfig(vocab_size=300))
    with pytest.raises(KeyError, match="valid labels are: fresh, rotten, plot"):
        tok.encode("x", prefix="positive")


def test_bpe_reaches_the_requested_vocabulary_exactly(splits):
    """The default config on the real training split: exactly 4,000 tokens, so "at most the
    requested size" is the rule to check (a small corpus may give fewer, never more)."""
    assert TextTokenizer.train([s.text for s in splits.train], TokenizerConfig()).vocab_size == 4000


# The tokenizer cache: a file is used only if it matches its record and the config.

SMALL = TokenizerConfig(vocab_size=300)
WORD = TokenizerConfig(kind="word", vocab_size=300)


def _splits(snippets) -> Splits:
    return Splits(train=list(snippets), val=[], test=[], report=None)


@pytest.fixture(scope="module")
def two_trainings(splits):
    """Two small training sets: as if from two different splits."""
    return _splits(splits.train[:1500]), _splits(splits.train[1500:3000])


def _files(cache, config: TokenizerConfig, training: Splits, data: DataConfig | None = None):
    """Train into ``cache`` and return (tokenizer, its file, its record)."""
    tok = TextTokenizer.for_splits(training, config, data or DataConfig(), cache=cache)
    files = (cache / "tokenizers").glob("*.json")
    (path,) = [p for p in files if not p.name.endswith(".meta.json")]
    return tok, path, path.with_suffix(".meta.json")


def _no_training(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("retrained although a valid cached tokenizer was there")

    monkeypatch.setattr(TextTokenizer, "train", fail)


def test_record_describes_the_saved_tokenizer(tmp_path, two_trainings, monkeypatch):
    training, _ = two_trainings
    tok, path, meta_path = _files(tmp_path, SMALL, training, DataConfig(split_seed=5))
    meta = json.loads(meta_path.read_text())
    assert meta["kind"] == "bpe" and meta["vocab_size_requested"] == 300
    assert meta["vocab_size"] == tok.vocab_size <= 300
    assert meta["min_frequency"] == 2 and meta["split_seed"] == 5
    texts = "\n".join(s.text for s in training.train)
    assert meta["training_digest"] == hashlib.sha256(texts.encode()).hexdigest()
    assert meta["tokenizer_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    _no_training(monkeypatch)  # the second call loads and checks, it does not retrain
    again = TextTokenizer.for_splits(training, SMALL, DataConfig(split_seed=5), cache=tmp_path)
    assert again.tokenizer.to_str() == tok.tokenizer.to_str()


def _substitute(tmp_path, two_trainings, substitute: str):
    """Cache the SMALL tokenizer of the first training set, then put another one in its place."""
    first, second = two_trainings
    _, path, meta_path = _files(tmp_path / "ours", SMALL, first)
    if substitute == "other vocab size":  # file and record of a 400-token tokenizer
        _, other, other_meta = _files(tmp_path / "other", TokenizerConfig(vocab_size=400), first)
    elif substitute == "other kind":  # a word-level tokenizer where the config says bpe
        _, other, other_meta = _files(tmp_path / "other", WORD, first)
    elif substitute == "other split":  # the same config trained on other texts
        _, other, other_meta = _files(tmp_path / "other", SMALL, second)
    elif substitute == "file only":  # the 400-token file under our record
        _, other, _ = _files(tmp_path / "other", TokenizerConfig(vocab_size=400), first)
        other_meta = meta_path
    else:  # a word-level file with a forged record that claims to be ours, sha256 and all
        _, other, _ = _files(tmp_path / "other", WORD, first)
        forged = json.loads(meta_path.read_text())
        forged["tokenizer_sha256"] = hashlib.sha256(other.read_bytes()).hexdigest()
        other_meta = tmp_path / "forged.meta.json"
        other_meta.write_text(json.dumps(forged))
    shutil.copyfile(other, path)
    if other_meta != meta_path:
        shutil.copyfile(other_meta, meta_path)
    return first, path


@pytest.mark.parametrize("substitute, reason", [
    ("other vocab size", "vocab_size_requested=400"),
    ("other kind", "kind='word'"),
    ("other split", "training_digest="),
    ("file only", "sha256 differs"),
    ("forged record", "WordLevel tokenizer"),
])
def test_substituted_tokenizer_is_refused(tmp_path, two_trainings, monkeypatch, substitute, reason):
    training, path = _substitute(tmp_path, two_trainings, substitute)
    _no_training(monkeypatch)
    with pytest.raises(CorruptTokenizerError) as info:
        TextTokenizer.for_splits(training, SMALL, DataConfig(), cache=tmp_path / "ours")
    message = str(info.value)
    assert reason in message
    assert "\n" not in message and str(path) in message
    assert "delete it; the next run retrains it from the training split" in message
    assert isinstance(info.value, CorruptFileError) and isinstance(info.value, ValueError)


def test_oversized_tokenizer_with_a_forged_record_is_refused(tmp_path, two_trainings, monkeypatch):
    """A record that lies about everything but the file's size still cannot pass the size rule."""
    first, _ = two_trainings
    _, path, meta_path = _files(tmp_path / "ours", SMALL, first)
    _, other, _ = _files(tmp_path / "other", TokenizerConfig(vocab_size=400), first)
    shutil.copyfile(other, path)
    forged = json.loads(meta_path.read_text())
    forged["tokenizer_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    meta_path.write_text(json.dumps(forged))
    _no_training(monkeypatch)
    with pytest.raises(CorruptTokenizerError, match="config asks for at most 300"):
        TextTokenizer.for_splits(first, SMALL, DataConfig(), cache=tmp_path / "ours")


def test_broken_record_names_the_file_and_the_repair(tmp_path, two_trainings):
    first, _ = two_trainings
    _, _, meta_path = _files(tmp_path, SMALL, first)
    meta_path.write_text("{not json")
    with pytest.raises(CorruptFileError, match="delete it; the next run retrains it") as info:
        TextTokenizer.for_splits(first, SMALL, DataConfig(), cache=tmp_path)
    assert str(meta_path) in str(info.value)


@pytest.mark.parametrize("saved_with", ["save", "to_str"])
def test_legacy_tokenizer_without_record_is_reverified(tmp_path, two_trainings, saved_with):
    """A file from before the records: retrained, found identical, given a record, no warning."""
    first, _ = two_trainings
    tok, path, meta_path = _files(tmp_path, SMALL, first)
    meta_path.unlink()
    if saved_with == "save":  # what the old code wrote: pretty-printed JSON
        tok.tokenizer.save(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = TextTokenizer.for_splits(first, SMALL, DataConfig(), cache=tmp_path)
    assert again.tokenizer.to_str() == tok.tokenizer.to_str()
    meta = json.loads(meta_path.read_text())
    assert meta["tokenizer_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_legacy_substituted_tokenizer_is_replaced(tmp_path, two_trainings, monkeypatch):
    """A file without a record that the training split does not give: replaced, with a warning."""
    first, _ = two_trainings
    _, other, _ = _files(tmp_path / "other", TokenizerConfig(vocab_size=400), first)
    tok, path, meta_path = _files(tmp_path / "ours", SMALL, first)
    shutil.copyfile(other, path)
    meta_path.unlink()
    with pytest.warns(UserWarning, match="replaced"):
        again = TextTokenizer.for_splits(first, SMALL, DataConfig(), cache=tmp_path / "ours")
    assert again.vocab_size == tok.vocab_size <= 300
    _no_training(monkeypatch)  # the replaced file now loads from the cache
    loaded = TextTokenizer.for_splits(first, SMALL, DataConfig(), cache=tmp_path / "ours")
    assert loaded.tokenizer.to_str() == tok.tokenizer.to_str()
