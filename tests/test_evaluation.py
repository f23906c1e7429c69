import math

import pytest
import torch

from mtl_tutorial.evaluation import accuracy, delta_m, evaluate, macro_f1, sample
from mtl_tutorial.models import MultiTaskModel
from mtl_tutorial.tasks import TASKS


def test_accuracy_and_macro_f1_by_hand():
    predictions = torch.tensor([1, 1, 0, 0, 1])
    targets = torch.tensor([1, 0, 0, 0, 1])
    assert accuracy(predictions, targets) == pytest.approx(0.8)
    # class 0: TP 2, FP 0, FN 1 -> F1 = 4/5; class 1: TP 2, FP 1, FN 0 -> F1 = 4/5
    assert macro_f1(predictions, targets, 2) == pytest.approx(0.8)
    # always predicting the majority class: F1 0 for the minority class
    assert macro_f1(torch.zeros(4, dtype=torch.long), torch.tensor([0, 0, 0, 1]), 2) == pytest.approx((6 / 7) / 2)


def test_delta_m_sign_convention():
    lower = {"acc": False, "ppl": True}
    assert delta_m({"acc": 0.8, "ppl": 90.0}, {"acc": 0.75, "ppl": 100.0}, lower) == pytest.approx(
        100 * (0.05 / 0.75 + 0.1) / 2
    )
    assert delta_m({"acc": 0.7, "ppl": 110.0}, {"acc": 0.75, "ppl": 100.0}, lower) < 0
    with pytest.raises(ValueError, match="same tasks"):
        delta_m({"acc": 0.8}, {"acc": 0.7, "ppl": 1.0}, lower)


def test_untrained_model_perplexity_near_vocabulary_size(tiny_data, tiny_model_config):
    torch.manual_seed(0)
    model = MultiTaskModel(tiny_model_config, list(TASKS.values()), 400)
    metrics = evaluate(model, TASKS["generation"], tiny_data["val"]["generation"])
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
    assert 300 < metrics["perplexity"] < 500  # N(0, 0.02) weights: nearly uniform over 400 tokens
    cls = evaluate(model, TASKS["sentiment"], tiny_data["val"]["sentiment"])
    assert set(cls) == {"loss", "accuracy", "macro_f1"} and 0 <= cls["accuracy"] <= 1


def test_sampling_is_seeded_and_conditioned(tiny_tokenizer, tiny_model_config):
    torch.manual_seed(0)
    model = MultiTaskModel(tiny_model_config, list(TASKS.values()), tiny_tokenizer.vocab_size)
    a = sample(model, tiny_tokenizer, "fresh", num_samples=3, max_new_tokens=10, seed=5)
    b = sample(model, tiny_tokenizer, "fresh", num_samples=3, max_new_tokens=10, seed=5)
    c = sample(model, tiny_tokenizer, "fresh", num_samples=3, max_new_tokens=10, seed=6)
    assert a == b and a != c and len(a) == 3
    with pytest.raises(ValueError, match="temperature must be positive"):
        sample(model, tiny_tokenizer, temperature=0.0)
    with pytest.raises(KeyError, match="valid labels"):
        sample(model, tiny_tokenizer, "positive")
