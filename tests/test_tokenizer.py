import pytest

from mtl_tutorial.config import DataConfig, TokenizerConfig
from mtl_tutorial.tokenizer import SPECIAL_TOKENS, TextTokenizer

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
    assert len(list((tmp_path / "tokenizers").iterdir())) == 1


def test_bad_inputs():
    with pytest.raises(ValueError, match="valid choices are: bpe, word"):
        TokenizerConfig(kind="sentencepiece")
    tok = TextTokenizer.train(TEXTS, TokenizerConfig(vocab_size=300))
    with pytest.raises(KeyError, match="valid labels are: fresh, rotten, plot"):
        tok.encode("x", prefix="positive")
