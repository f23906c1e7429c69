import math

import pytest

from mtl_tutorial.baselines import KneserNeyLM, tfidf_logistic_regression
from mtl_tutorial.tasks import SOURCE

SEQS = [[1, 7, 8, 9, 2], [1, 7, 8, 2], [1, 9, 8, 7, 2], [1, 8, 8, 9, 2]]


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
