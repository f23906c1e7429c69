import pytest
import torch

from mtl_tutorial.weightings import WEIGHTINGS, Equal, Static, make_weighting


def test_equal_is_the_article_objective():
    """½(L_cls + L_gen) for two tasks."""
    losses = torch.tensor([0.69, 8.29])
    assert Equal(2)(losses).item() == pytest.approx(0.5 * (0.69 + 8.29))


def test_static_weights():
    w = Static([0.9, 0.1])
    assert w(torch.tensor([1.0, 10.0])).item() == pytest.approx(1.9)
    assert w.weights.tolist() == pytest.approx([0.9, 0.1])
    assert "0.9" in repr(w)


def test_registry_and_errors():
    assert isinstance(make_weighting("equal", 3), Equal)
    assert make_weighting("static", 2, weights=[1.0, 2.0]).weights.tolist() == [1.0, 2.0]
    with pytest.raises(KeyError, match="valid weightings are: " + ", ".join(WEIGHTINGS)):
        make_weighting("gradnorm2", 2)
    with pytest.raises(ValueError, match="2 entries for 3 tasks"):
        make_weighting("static", 3, weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="non-negative"):
        Static([1.0, -1.0])
    with pytest.raises(ValueError, match="at least 1"):
        Equal(0)
