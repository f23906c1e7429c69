"""The WordNet few-shot benchmark: parsing, the category split, leak-free episodes, the featuriser."""

from __future__ import annotations

import pytest
import torch

from mtl_tutorial.meta.features import HashedNgrams, LazyTextFeatures
from mtl_tutorial.meta.wordnet import (
    CATEGORIES,
    CategorySplit,
    episode_sampler,
    load_synsets,
    load_wordnet,
    parse_synset,
    split_categories,
)


@pytest.fixture(scope="module")
def definitions():
    return load_wordnet("definition")


@pytest.fixture(scope="module")
def split():
    return split_categories(num_val=10, num_test=10, seed=0)


# ---------------------------------------------------------------- the data


def test_parse_synset_reads_category_words_definition_and_examples():
    line = (
        "00019731 00 s 02 handy 0 ready_to_hand(p) 0 002 & 00019131 a 0000 + 04718999 n 0101 | "
        'easy to reach; "found a handy spot for the can opener"  \n'
    )
    s = parse_synset(line)
    assert (s.offset, s.pos, s.category) == (19731, "s", 0)
    assert s.words == ("handy", "ready to hand")  # underscores and the "(p)" marker removed
    assert s.definition == "easy to reach"
    assert s.examples == ("found a handy spot for the can opener",)


def test_wordnet_has_117659_synsets_in_45_categories(definitions):
    synsets = load_synsets()
    assert len(synsets) == 117_659
    assert len(CATEGORIES) == 45 and set(definitions.labels.tolist()) == set(range(45))
    assert synsets[0].words == ("entity",) and CATEGORIES[synsets[0].category] == "noun.Tops"
    assert all(CATEGORIES[s.category].startswith("verb.") for s in synsets if s.pos == "v")


def test_examples_are_text_category_pairs_without_duplicates(definitions):
    assert len(definitions) == 116_782
    pairs = list(definitions)
    assert pairs[0] == (definitions.synsets[0].definition, 3)
    assert len(set(pairs)) == len(pairs)
    counts = definitions.counts()
    assert sum(counts.values()) == len(definitions) and min(counts.values()) == counts["noun.motive"] == 42


@pytest.mark.parametrize("text", ["word", "both"])
def test_other_text_kinds(text):
    data = load_wordnet(text)
    first = data.synsets[0]
    assert data.texts[0] == {"word": "entity", "both": f"entity: {first.definition}"}[text]
    assert not any("_" in t for t in data.texts[:1000])


def test_unknown_text_kind_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid choices are: word, definition, both"):
        load_wordnet("gloss")


def test_missing_wordnet_says_how_to_install_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install wordnet-base"):
        load_synsets(tmp_path)


# ---------------------------------------------------------------- the category split


def test_split_is_disjoint_complete_and_seeded(split):
    assert (len(split.train), len(split.val), len(split.test)) == (25, 10, 10)
    assert not set(split.train) & set(split.test) and not set(split.val) & set(split.test)
    assert not set(split.train) & set(split.val)
    assert sorted(split.train + split.val + split.test) == list(range(45))
    assert split_categories(seed=0) == split and split_categories(seed=1) != split
    assert split.names("test") == [CATEGORIES[c] for c in split.test]


def test_split_rejects_impossible_sizes_and_overlaps():
    with pytest.raises(ValueError, match="num_val \\+ num_test < 45"):
        split_categories(num_val=20, num_test=25)
    with pytest.raises(ValueError, match="overlap on \\[3\\]"):
        CategorySplit(train=(1, 3), val=(3,), test=(4,))
    with pytest.raises(KeyError, match="valid splits are: train, val, test"):
        split_categories()["meta-test"]


# ---------------------------------------------------------------- episodes


def test_meta_training_episodes_never_show_a_meta_test_category(definitions, split):
    sampler = episode_sampler(definitions, split.train, num_ways=5, num_shots=1, num_queries=3, seed=0)
    for e in sampler.episodes(100):
        assert set(e.classes) <= set(split.train)
        drawn = list(e.support_indices) + list(e.query_indices)
        assert set(definitions.labels[drawn].tolist()) <= set(split.train)
        assert definitions.labels[list(e.support_indices)].tolist() == [e.classes[y] for y in e.support_y.tolist()]


def test_wordnet_episodes_are_n_way_k_shot_and_deterministic(definitions, split):
    a = episode_sampler(definitions, split.test, num_ways=5, num_shots=5, num_queries=15, seed=3)
    b = episode_sampler(definitions, split.test, num_ways=5, num_shots=5, num_queries=15, seed=3)
    e = a.episode(11)
    assert e.support_x.shape == (25, 2048) and e.query_x.shape == (75, 2048)
    assert torch.bincount(e.support_y).tolist() == [5] * 5
    assert torch.equal(e.support_x, b.episode(11).support_x) and e.classes == b.episode(11).classes


def test_wordnet_sampler_errors_say_what_to_do(definitions, split):
    with pytest.raises(ValueError, match="only 10 are available.*lower num_ways to at most 10"):
        episode_sampler(definitions, split.test, num_ways=11)
    motive = CATEGORIES.index("noun.motive")  # 42 definitions
    with pytest.raises(ValueError, match="'noun.motive'.*smallest has 42"):
        episode_sampler(definitions, [motive, 5, 6], num_ways=2, num_shots=40, num_queries=15)


# ---------------------------------------------------------------- the featuriser


def test_hashed_ngrams_are_pinned_and_unit_length():
    f = HashedNgrams(num_features=16)
    assert f.grams("Dog") == ["dog", "<do", "dog", "og>", "<dog", "dog>"]
    expected = torch.zeros(16)
    expected[[4, 10, 12, 13, 14]] = torch.tensor([1.0, 1.0, 1.0, -2.0, -1.0])  # crc32, fixed forever
    torch.testing.assert_close(f(["dog"])[0], expected / expected.norm())
    v = HashedNgrams()(["a dog", "a dog", "", "verbosity"])
    assert torch.equal(v[0], v[1]) and v[2].abs().sum() == 0
    torch.testing.assert_close(v[[0, 3]].norm(dim=1), torch.ones(2))


def test_lazy_features_featurise_only_what_is_asked():
    texts = ["to run fast", "a small dog", "the act of running"]
    lazy = LazyTextFeatures(texts, HashedNgrams(num_features=32))
    assert len(lazy) == 3
    torch.testing.assert_close(lazy[torch.tensor([2, 0])], HashedNgrams(num_features=32)([texts[2], texts[0]]))


def test_featuriser_rejects_bad_options():
    with pytest.raises(ValueError, match="at least 2"):
        HashedNgrams(num_features=1)
    with pytest.raises(ValueError, match="no gram is ever produced"):
        HashedNgrams(ngram_sizes=(), words=False)
