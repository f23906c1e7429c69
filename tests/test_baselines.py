import math
from collections import Counter

import numpy as np
import pytest
from scipy import sparse

from mtl_tutorial.baselines import (
    KneserNeyLM,
    log_count_ratio,
    nb_features,
    nb_logistic_regression,
    tfidf_logistic_regression,
)
from mtl_tutorial.data import Snippet
from mtl_tutorial.tasks import CLASSIFICATION, GENERATION, SENTIMENT, SOURCE, Task

SEQS = [[1, 7, 8, 9, 2], [1, 7, 8, 2], [1, 9, 8, 7, 2], [1, 8, 8, 9, 2]]
PINNED_KN3, PINNED_TOKENS = 2.5681012593556227, 110  # KN-3 of arithmetic_corpus, before order 4+ / modified


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("context", [[1, 1], [1, 7], [7, 8], [5, 5], [9, 9]])
def test_kneser_ney_distributions_sum_to_one(order, context):
    lm = KneserNeyLM(order, vocab_size=12).fit(SEQS)
    assert sum(lm.prob(context, w) for w in range(12)) == pytest.approx(1.0)
    assert all(lm.prob(context, w) > 0 for w in range(12))


def test_kneser_ney_bigram_by_hand():
    """Bigram KN on SEQS (start token 1 is context only).

    Bigram counts after 7: (7,8)=2, (7,2)=1 -> c(7 ·) = 3, N1+(7 ·) = 2.
    11 distinct bigrams; (1,7), (7,8), (8,9), (9,2) occur twice: n1 = 7, n2 = 4 -> D2 = 7 / 15.
    Unigram continuation counts N1+(· w): 8 <- {7, 9, 1, 8}: 4, 2 <- {9, 8, 7}: 3, 7: 2, 9: 2;
    total 11; n1 = 0, n2 = 2 -> D1 = 0, raised to 0.1;
    4 word types. P1(8) = (4 - 0.1)/11 + 0.1 * 4/11 * 1/12.
    P(8 | 7) = (2 - D2)/3 + D2 * 2/3 * P1(8).
    """
    lm = KneserNeyLM(2, vocab_size=12).fit(SEQS)
    d2 = 7 / 15
    assert lm.discount[1:] == pytest.approx([0.1, d2])
    p1 = (4 - 0.1) / 11 + 0.1 * 4 / 11 / 12
    assert lm.prob([7], 8) == pytest.approx((2 - d2) / 3 + d2 * 2 / 3 * p1)


def test_kneser_ney_perplexity_counts_every_predicted_token():
    lm = KneserNeyLM(3, vocab_size=12).fit(SEQS)
    ppl, tokens = lm.perplexity(SEQS)
    assert tokens == sum(len(s) - 1 for s in SEQS)
    assert 1 < ppl < 12
    assert KneserNeyLM(3, vocab_size=12).fit(SEQS).perplexity([[1, 11, 11, 2]])[0] > ppl


def test_tfidf_beats_the_majority_class_on_source(splits):
    result = tfidf_logistic_regression(SOURCE, splits.train[::4], splits.val, splits.test, grid=(1.0, 8.0))
    majority = 1 - sum(s.label == "plot" for s in splits.test) / len(splits.test)
    assert result.test["accuracy"] > majority + 0.03
    assert result.C in (1.0, 8.0) and math.isfinite(result.val_accuracy)


def test_bad_order():
    with pytest.raises(ValueError, match="order must be at least 1"):
        KneserNeyLM(0)


# --- Kneser-Ney: any order, and the modified variant ----------------------------------------

def arithmetic_corpus(num: int, offset: int = 0) -> list[list[int]]:
    """Deterministic sequences over ids 3..11, ``<bos>`` = 1 and ``<eos>`` = 2 (no RNG: stable pins)."""
    return [[1] + [3 + (7 * i + j * j + offset) % 9 for j in range(1 + (i * 5) % 8)] + [2] for i in range(num)]


def skewed_corpus(num: int, vocab: int = 9) -> list[list[int]]:
    """Sequences of skewed ids 3..3+vocab-1 from a linear congruential generator (stable pins)."""
    x, sequences = 1, []
    for i in range(num):
        sequence = [1]
        for _ in range(2 + i % 7):
            x = (x * 1103515245 + 12345) % 2**31
            sequence.append(3 + min(vocab - 1, int(vocab * (x / 2**31) ** 2)))  # small ids more often
        sequences.append(sequence + [2])
    return sequences


@pytest.mark.parametrize("modified", [False, True])
@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("context", [[1, 1, 1, 1], [1, 1, 1, 7], [1, 7, 8, 9], [7, 8, 9, 2], [8, 8, 9, 9], [5, 5, 5, 5]])
def test_kneser_ney_any_order_is_a_distribution(order, modified, context):
    """Seen, partly seen and unseen contexts of every length give a positive distribution over V."""
    for train in (SEQS, arithmetic_corpus(40), skewed_corpus(100)):
        lm = KneserNeyLM(order, vocab_size=12, modified=modified).fit(train)
        probs = [lm.prob(context, w) for w in range(12)]
        assert sum(probs) == pytest.approx(1.0, abs=1e-12)
        assert min(probs) > 0


def test_kneser_ney_order_four_counts():
    """Every predicted token is one 4-gram; a 3-gram's count is its number of distinct left extensions."""
    train = arithmetic_corpus(40)
    lm = KneserNeyLM(4, vocab_size=12).fit(train)
    assert sum(lm.counts[4].values()) == sum(len(s) - 1 for s in train)
    assert all(len(g) == 4 for g in lm.counts[4])
    for k in (3, 2, 1):
        for gram, count in lm.counts[k].items():
            assert count == sum(1 for longer in lm.counts[k + 1] if longer[1:] == gram)


def test_kneser_ney_order_four_sees_further_back():
    """The token after ``5 6`` is fixed by the token before it: only orders >= 4 can memorise that."""
    train = [[1, 3, 5, 6, 4, 2], [1, 9, 5, 6, 10, 2]] * 5
    ppl = {n: KneserNeyLM(n, vocab_size=12).fit(train).perplexity(train)[0] for n in (3, 4)}
    assert ppl[4] < ppl[3]
    lm4 = KneserNeyLM(4, vocab_size=12).fit(train)
    assert lm4.prob([3, 5, 6], 4) > 0.5 > lm4.prob([3, 5, 6], 10)


def test_kneser_ney_default_is_unchanged():
    """Pinned with the implementation before ``modified`` and order 4+ were checked (plain KN)."""
    train, test = arithmetic_corpus(60), arithmetic_corpus(20, offset=4)
    lm = KneserNeyLM(3, vocab_size=12).fit(train)
    assert not lm.modified
    assert lm.perplexity(test) == (pytest.approx(PINNED_KN3, rel=1e-12), PINNED_TOKENS)


def test_modified_kneser_ney_discounts_follow_chen_and_goodman():
    """At the highest order, D_j = j - (j + 1) Y n_{j+1} / n_j with Y = n1 / (n1 + 2 n2)."""
    lm = KneserNeyLM(3, vocab_size=12, modified=True).fit(skewed_corpus(100))
    n = Counter(lm.counts[3].values())
    assert all(n[j] > 0 for j in (1, 2, 3, 4))
    y = n[1] / (n[1] + 2 * n[2])
    expected = (1 - 2 * y * n[2] / n[1], 2 - 3 * y * n[3] / n[2], 3 - 4 * y * n[4] / n[3])
    assert all(0.1 < d < j - 0.05 for j, d in enumerate(expected, start=1))  # no clamp involved
    assert lm.discounts[3] == pytest.approx(expected)
    assert lm.discounts[3][0] == pytest.approx(y) == lm.discount[3]  # D1 = Y, the plain KN discount


def test_modified_kneser_ney_bigram_by_hand():
    """Modified bigram KN on SEQS (see test_kneser_ney_bigram_by_hand for the counts).

    Bigrams: n1 = 7, n2 = 4, n3 = n4 = 0 -> Y = 7/15, D1 = 1 - 2Y 4/7 = 7/15, D2 = 2 - 0 = 2,
    clamped to 1.95. After 7: (7,8) = 2, (7,2) = 1 -> N1 = N2 = 1.
    Unigram continuation counts 8: 4, 2: 3, 7: 2, 9: 2 -> n1 = 0 -> Y = 0: D1 = 0.1 (floor),
    D2 = 2 -> 1.95, D3+ = 3 -> 2.95; N2 = 2, N3+ = 2, total 11.
    P1(8) = (4 - 2.95)/11 + (1.95 * 2 + 2.95 * 2)/11 * 1/12.
    P(8 | 7) = (2 - 1.95)/3 + (7/15 + 1.95)/3 * P1(8).
    """
    lm = KneserNeyLM(2, vocab_size=12, modified=True).fit(SEQS)
    assert lm.discounts[2][:2] == pytest.approx((7 / 15, 1.95))
    assert lm.discounts[1] == pytest.approx((0.1, 1.95, 2.95))
    p1 = (4 - 2.95) / 11 + (1.95 * 2 + 2.95 * 2) / 11 / 12
    assert lm.prob([7], 8) == pytest.approx((2 - 1.95) / 3 + (7 / 15 + 1.95) / 3 * p1)


def test_kneser_ney_repr():
    assert repr(KneserNeyLM(4, vocab_size=12, modified=True)) == "KneserNeyLM(order=4, vocab_size=12, modified=True)"


# --- NB-LR --------------------------------------------------------------------------------------

COUNTS = np.array([[2, 1, 0], [1, 0, 0], [0, 1, 1], [0, 0, 3]])  # 4 documents x 3 features
LABELS = np.array([1, 1, 0, 0])


def test_log_count_ratio_by_hand():
    """Binarised: positives [1,1,0], [1,0,0]; negatives [0,1,1], [0,0,1].

    alpha = 1: p = [3, 2, 1], q = [1, 2, 3], |p| = |q| = 6 -> r = [log 3, 0, -log 3].
    alpha = 0.5: p = [2.5, 1.5, 0.5], q = [0.5, 1.5, 2.5] -> r = [log 5, 0, -log 5].
    """
    assert log_count_ratio(COUNTS, LABELS, 1.0) == pytest.approx([math.log(3), 0, -math.log(3)])
    assert log_count_ratio(COUNTS, LABELS, 0.5) == pytest.approx([math.log(5), 0, -math.log(5)])
    assert log_count_ratio(sparse.csr_matrix(COUNTS), LABELS, 1.0) == pytest.approx(log_count_ratio(COUNTS, LABELS, 1.0))


def test_log_count_ratio_normalises_by_class_totals():
    """Each class is normalised by its own total: doubling the positive documents changes nothing
    when every feature occurs in both classes and alpha -> 0; swapping the classes negates r."""
    both = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 0, 1]])  # positives sum [2, 1, 1], negatives [1, 1, 2]
    doubled, labels = np.vstack([both, both[:2]]), np.concatenate([LABELS, [1, 1]])
    assert log_count_ratio(doubled, labels, 1e-9) == pytest.approx(log_count_ratio(both, LABELS, 1e-9), abs=1e-6)
    assert log_count_ratio(both, LABELS, 1e-9) == pytest.approx([math.log(2), 0, -math.log(2)], abs=1e-6)
    assert log_count_ratio(COUNTS, 1 - LABELS, 0.7) == pytest.approx(-log_count_ratio(COUNTS, LABELS, 0.7))
    with pytest.raises(ValueError, match="alpha must be positive"):
        log_count_ratio(COUNTS, LABELS, 0.0)


def test_nb_features_are_binarised_counts_scaled_by_r():
    r = log_count_ratio(COUNTS, LABELS, 1.0)
    expected = np.array([[math.log(3), 0, 0], [math.log(3), 0, 0], [0, 0, -math.log(3)], [0, 0, -math.log(3)]])
    assert nb_features(COUNTS, r).toarray() == pytest.approx(expected)


def snippets(texts_labels: list[tuple[str, str]]) -> list[Snippet]:
    return [Snippet(text=t, label=lab, movie=f"m{i}") for i, (t, lab) in enumerate(texts_labels)]


def separable_corpus(num: int, offset: int = 0) -> list[Snippet]:
    nouns = ["film", "cast", "plot", "script", "score", "ending"]
    return snippets([(f"the {nouns[(i + offset) % 6]} was {'great' if i % 2 else 'awful'}",
                      "fresh" if i % 2 else "rotten") for i in range(num)])


def test_nblr_separates_a_separable_corpus():
    result = nb_logistic_regression(SENTIMENT, separable_corpus(24), separable_corpus(8, 1), separable_corpus(10, 2))
    assert result.test == {"accuracy": 1.0, "macro_f1": 1.0}
    assert result.val_accuracy == 1.0
    assert result.C == 0.1 and result.alpha == 0.5  # every pair ties on validation: the first one wins


def flipped(split: list[Snippet]) -> list[Snippet]:
    swap = {"fresh": "rotten", "rotten": "fresh"}
    return [Snippet(s.text, swap.get(s.label, s.label), s.movie) for s in split]


@pytest.mark.parametrize("method", ["nblr", "tfidf-word+char"])
def test_selection_sees_validation_only(splits, method):
    """Flipping every test label flips the test accuracy and changes nothing that was chosen."""
    def fit(test):
        if method == "nblr":
            return nb_logistic_regression(SENTIMENT, splits.train[::3], splits.val, test, grid=(0.1, 1.0))
        return tfidf_logistic_regression(SENTIMENT, splits.train[::3], splits.val, test, grid=(1.0, 8.0),
                                         analyzer="word+char")
    honest, flipped_test = fit(splits.test), fit(flipped(splits.test))
    assert (honest.C, honest.val_accuracy) == (flipped_test.C, flipped_test.val_accuracy)
    assert getattr(honest, "alpha", None) == getattr(flipped_test, "alpha", None)
    assert flipped_test.test["accuracy"] == pytest.approx(1 - honest.test["accuracy"])


def test_nblr_picks_the_best_validation_pair(splits):
    """The full grid returns the first (alpha, C) whose single-pair run scores best on validation."""
    train = splits.train[::3]
    pairs = [(alpha, c) for alpha in (0.5, 1.0) for c in (0.1, 1.0, 10.0)]
    scores = [nb_logistic_regression(SENTIMENT, train, splits.val, splits.test, grid=(c,), alphas=(alpha,)).val_accuracy
              for alpha, c in pairs]
    result = nb_logistic_regression(SENTIMENT, train, splits.val, splits.test, grid=(0.1, 1.0, 10.0), alphas=(0.5, 1.0))
    assert result.val_accuracy == max(scores)
    assert (result.alpha, result.C) == pairs[scores.index(max(scores))]
    majority = max(sum(s.label == lab for s in SENTIMENT.select(splits.test)) for lab in ("fresh", "rotten"))
    assert result.test["accuracy"] > majority / len(SENTIMENT.select(splits.test)) + 0.1


def test_nblr_is_deterministic(splits):
    args = (SOURCE, splits.train[::4], splits.val, splits.test)
    assert nb_logistic_regression(*args, grid=(1.0,)) == nb_logistic_regression(*args, grid=(1.0,))


def test_nblr_is_for_binary_tasks():
    three = Task("three", CLASSIFICATION, "three classes", classes=(("fresh", 0), ("rotten", 1), ("plot", 2)),
                 class_names=("fresh", "rotten", "plot"))
    with pytest.raises(ValueError, match="binary classification"):
        nb_logistic_regression(three, separable_corpus(8), separable_corpus(4), separable_corpus(4))
    with pytest.raises(ValueError, match="binary classification"):
        nb_logistic_regression(GENERATION, separable_corpus(8), separable_corpus(4), separable_corpus(4))


def test_tfidf_unknown_analyzer():
    with pytest.raises(ValueError, match="valid analyzers are: word, word\\+char"):
        tfidf_logistic_regression(SENTIMENT, separable_corpus(8), separable_corpus(4), separable_corpus(4),
                                  analyzer="char")
