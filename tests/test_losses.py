"""The article's losses: hand-derived gradients against autograd, stability, the objective."""

import doctest
import math

import pytest
import torch
import torch.nn.functional as F

from mtl_tutorial import losses
from mtl_tutorial.losses import article_objective, cross_entropy, cross_entropy_grad, mse, mse_grad
from mtl_tutorial.weightings import Equal

# (B, C) and the scale of the logits: one example, two classes, many classes, large scores
CLASSIFICATION_CASES = [(2, 4, 0.0), (1, 2, 1.0), (5, 2, 1.0), (4, 7, 3.0), (16, 50, 10.0), (3, 3, 1e-3)]


def classification_batch(batch: int, classes: int, scale: float, seed: int, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(batch, classes, generator=generator, dtype=dtype)
    targets = torch.randint(classes, (batch,), generator=generator)
    return logits, targets


@pytest.mark.parametrize("batch,classes,scale", CLASSIFICATION_CASES)
def test_cross_entropy_equals_torch(batch, classes, scale):
    for dtype in (torch.float32, torch.float64):
        logits, targets = classification_batch(batch, classes, scale, seed=batch * classes, dtype=dtype)
        torch.testing.assert_close(cross_entropy(logits, targets), F.cross_entropy(logits, targets))


@pytest.mark.parametrize("batch,classes,scale", CLASSIFICATION_CASES)
def test_cross_entropy_grad_equals_autograd(batch, classes, scale):
    logits, targets = classification_batch(batch, classes, scale, seed=batch + classes)
    logits.requires_grad_(True)
    (autograd,) = torch.autograd.grad(cross_entropy(logits, targets), logits)
    by_hand = cross_entropy_grad(logits.detach(), targets)
    torch.testing.assert_close(by_hand, autograd)
    # what the derivation promises: rows sum to zero, entries in [-1/B, 1/B]
    torch.testing.assert_close(by_hand.sum(dim=1), torch.zeros(batch, dtype=torch.float64))
    assert by_hand.abs().max() <= 1.0 / batch + 1e-12


def test_gradcheck_on_the_losses():
    logits, targets = classification_batch(4, 5, 2.0, seed=0)
    assert torch.autograd.gradcheck(lambda z: cross_entropy(z, targets), (logits.requires_grad_(True),))
    generator = torch.Generator().manual_seed(1)
    pred = torch.randn(3, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.randn(3, 4, generator=generator, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: mse(p, target), (pred,))
    task_losses = torch.rand(3, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(article_objective, (task_losses,))


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 4), (2, 3, 5)])
def test_mse_and_its_gradient(shape):
    generator = torch.Generator().manual_seed(len(shape))
    pred = torch.randn(shape, generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.randn(shape, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(mse(pred, target), F.mse_loss(pred, target))
    (autograd,) = torch.autograd.grad(mse(pred, target), pred)
    torch.testing.assert_close(mse_grad(pred.detach(), target), autograd)


@pytest.mark.parametrize("magnitude", [1e2, 1e4, 1e30])
def test_cross_entropy_is_stable_for_extreme_logits(magnitude):
    logits = torch.tensor([[magnitude, -magnitude], [-magnitude, magnitude], [magnitude, magnitude]])
    targets = torch.tensor([0, 0, 1])
    # row 1: right and sure, loss 0; row 2: wrong and sure, loss 2M; row 3: a tie, loss ln 2
    expected = (0.0 + 2 * magnitude + math.log(2)) / 3
    value = cross_entropy(logits, targets)
    grad = cross_entropy_grad(logits, targets)
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    assert value.item() == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(value, F.cross_entropy(logits, targets))
    expected_grad = torch.tensor([[0.0, 0.0], [-1.0, 1.0], [0.5, -0.5]]) / 3
    torch.testing.assert_close(grad, expected_grad)


def test_naive_softmax_overflows_where_ours_does_not():
    """The reason for the max shift: exp(1e4) is inf, and inf / inf is NaN."""
    logits = torch.tensor([[1e4, 0.0]])
    naive = -(logits.exp() / logits.exp().sum(dim=1, keepdim=True)).log()[0, 0]
    assert torch.isnan(naive)
    assert cross_entropy(logits, torch.tensor([0])).item() == 0.0


def test_pinned_value_by_hand():
    # logits (0, ln 3) for two examples with targets 0 and 1:
    #   softmax = (1/4, 3/4) for both rows (e^0 = 1, e^{ln 3} = 3, sum 4)
    #   losses: -ln(1/4) = ln 4 and -ln(3/4) = ln 4 - ln 3; mean = ln 4 - ½ ln 3 = 0.8369882...
    #   gradient: ((1/4 - 1, 3/4) and (1/4, 3/4 - 1)) / 2 = ((-3/8, 3/8), (1/8, -1/8))
    logits = torch.tensor([[0.0, math.log(3)], [0.0, math.log(3)]], dtype=torch.float64)
    targets = torch.tensor([0, 1])
    assert cross_entropy(logits, targets).item() == pytest.approx(math.log(4) - 0.5 * math.log(3), abs=1e-15)
    assert cross_entropy(logits, targets).item() == pytest.approx(0.8369882167858358, abs=1e-15)
    expected = torch.tensor([[-3 / 8, 3 / 8], [1 / 8, -1 / 8]], dtype=torch.float64)
    torch.testing.assert_close(cross_entropy_grad(logits, targets), expected)
    # mse of pred (1, 2, 3) against (0, 0, 0): (1 + 4 + 9) / 3 = 14/3; gradient 2/3 * (1, 2, 3)
    pred, target = torch.tensor([1.0, 2.0, 3.0]), torch.zeros(3)
    assert mse(pred, target).item() == pytest.approx(14 / 3)
    torch.testing.assert_close(mse_grad(pred, target), torch.tensor([2 / 3, 4 / 3, 2.0]))


@pytest.mark.parametrize("num_tasks", [1, 2, 3, 7])
def test_article_objective_is_the_equal_weighting(num_tasks):
    task_losses = torch.rand(num_tasks, generator=torch.Generator().manual_seed(num_tasks)) * 10
    torch.testing.assert_close(article_objective(task_losses), Equal(num_tasks)(task_losses))
    # and its gradient puts the weight 1/T on every task
    task_losses.requires_grad_(True)
    (weights,) = torch.autograd.grad(article_objective(task_losses), task_losses)
    torch.testing.assert_close(weights, Equal(num_tasks).weights)


def test_article_objective_for_two_tasks_on_the_same_samples():
    """½ · (1/m) Σ_i (L1_i + L2_i) == ½ (mean L1 + mean L2) when both losses use the same m samples."""
    generator = torch.Generator().manual_seed(0)
    per_example = torch.rand(2, 9, generator=generator, dtype=torch.float64)  # (T, m)
    article = 0.5 * (per_example[0] + per_example[1]).sum() / 9
    torch.testing.assert_close(article_objective(per_example.mean(dim=1)), article)


def test_errors_name_the_problem():
    logits = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"class index 3 is out of range: valid class indices are 0\.\.2"):
        cross_entropy(logits, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"class index -1 is out of range"):
        cross_entropy_grad(logits, torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match=r"logits must have shape \(B, C\)"):
        cross_entropy(torch.zeros(2, 3, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"targets must have shape \(B,\) = \(2,\)"):
        cross_entropy(logits, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="integer class indices"):
        cross_entropy(logits, torch.tensor([0.0, 1.0]))
    with pytest.raises(TypeError, match="floating-point"):
        cross_entropy(torch.zeros(2, 3, dtype=torch.long), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="empty"):
        cross_entropy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"must match .*view_as"):
        mse(torch.zeros(3), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="must match"):
        mse_grad(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="empty"):
        mse(torch.zeros(0), torch.zeros(0))
    with pytest.raises(ValueError, match=r"non-empty vector \(T,\)"):
        article_objective(torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"non-empty vector \(T,\)"):
        article_objective(torch.zeros(0))


def test_docstring_examples():
    result = doctest.testmod(losses, extraglobs={"torch": torch})
    assert result.attempted >= 5 and result.failed == 0
