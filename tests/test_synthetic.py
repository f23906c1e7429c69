import math

import pytest
import torch

from mtl_tutorial.studies.synthetic import (
    SyntheticConfig,
    SyntheticModel,
    SyntheticProblem,
    task_losses,
    train_synthetic,
)
from mtl_tutorial.weightings import WEIGHTINGS

# the paper's two tasks, sigma = (1, 100), on a smaller training set so that a run takes a second
SMALL = SyntheticConfig(num_train=1024, num_test=256, batch_size=64)


# ------------------------------------------------------------------ data
def test_problem_shapes_scales_and_determinism():
    config = SyntheticConfig(scales=(1.0, 10.0, 100.0))
    problem = SyntheticProblem(config, torch.Generator().manual_seed(0))
    assert problem.B.shape == (100, 250) and problem.epsilons.shape == (3, 100, 250)
    x, y = problem.sample(32, torch.Generator().manual_seed(1))
    assert x.shape == (32, 250) and y.shape == (32, 3, 100)
    for t, sigma in enumerate(config.scales):  # |f_t| <= sigma_t, and saturated tanh: close to it
        assert y[:, t].abs().max() <= sigma
        assert y[:, t].abs().mean() > 0.9 * sigma
    torch.testing.assert_close(y, problem.targets(x))
    again = SyntheticProblem(config, torch.Generator().manual_seed(0))
    torch.testing.assert_close(again.sample(32, torch.Generator().manual_seed(1)), (x, y), rtol=0, atol=0)
    other = SyntheticProblem(config, torch.Generator().manual_seed(2))
    assert not torch.equal(other.B, problem.B)


def test_variances_are_those_of_the_config():
    """B_ij ~ N(0, 10) and eps_ij ~ N(0, 3.5), read as variances."""
    problem = SyntheticProblem(SyntheticConfig(scales=(1.0,) * 4), torch.Generator().manual_seed(0))
    assert problem.B.var().item() == pytest.approx(10.0, rel=0.02)
    assert problem.epsilons.var().item() == pytest.approx(3.5, rel=0.02)
    tasks = problem.B + problem.epsilons  # (T, out, in): correlation between two tasks' matrices
    correlation = torch.corrcoef(tasks[:2].flatten(1))[0, 1].item()
    assert correlation == pytest.approx(10 / 13.5, abs=0.02)


def test_model_shapes_and_last_shared_layer():
    model = SyntheticModel(SMALL)
    assert model(torch.randn(5, 250)).shape == (5, 2, 100)
    weight, bias = model.last_shared_parameters()
    assert weight.shape == (100, 100) and bias.shape == (100,)
    assert weight is model.trunk[-2].weight  # the last Linear, before the last ReLU
    assert sum(isinstance(m, torch.nn.Linear) for m in model.trunk) == 4


def test_task_losses_are_per_task_mse():
    prediction, target = torch.zeros(4, 2, 3), torch.ones(4, 2, 3)
    target[:, 1] *= 10
    torch.testing.assert_close(task_losses(prediction, target), torch.tensor([1.0, 100.0]))


# ------------------------------------------------------------------ training
def test_train_synthetic_is_deterministic_and_records_what_it_says():
    a = train_synthetic("equal", SMALL, steps=20, eval_every=10)
    b = train_synthetic("equal", SMALL, steps=20, eval_every=10)
    for field in ("losses", "weights", "grad_norms", "test_losses"):
        torch.testing.assert_close(getattr(a, field), getattr(b, field), rtol=0, atol=0)
    assert a.losses.shape == a.weights.shape == a.grad_norms.shape == (20, 2)
    assert a.test_steps.tolist() == [0, 10, 20] and a.test_losses.shape == (3, 2)
    torch.testing.assert_close(a.weights, torch.full((20, 2), 0.5))
    torch.testing.assert_close(a.loss_ratios[0], torch.ones(2))
    # the first step's losses are those of the initial model, the same for every weighting
    c = train_synthetic("gradnorm", SMALL, steps=1)
    torch.testing.assert_close(c.losses[0], a.losses[0])
    assert a.losses[0, 1] > 1000 * a.losses[0, 0]  # sigma = 100 against 1: losses 10^4 apart


def test_recorded_gradient_norms_are_weighted_norms_on_the_last_shared_layer():
    """G_t = w_t ||grad_W L_t||, checked at step 0 by hand on a fresh model."""
    record = train_synthetic("static", SMALL, steps=1, weighting_options={"weights": [3.0, 0.5]})
    generator = torch.Generator().manual_seed(SMALL.seed)
    problem = SyntheticProblem(SMALL, generator)
    x, y = problem.sample(SMALL.num_train, generator)
    problem.sample(SMALL.num_test, generator)
    torch.manual_seed(SMALL.seed)
    model = SyntheticModel(SMALL)
    index = torch.randint(SMALL.num_train, (SMALL.batch_size,), generator=generator)
    losses = task_losses(model(x[index]), y[index])
    norms = torch.stack([torch.cat([g.flatten() for g in torch.autograd.grad(losses[t], model.last_shared_parameters(),
                                                                             retain_graph=True)]).norm() for t in range(2)])
    torch.testing.assert_close(record.losses[0], losses.detach())
    torch.testing.assert_close(record.grad_norms[0], torch.tensor([3.0, 0.5]) * norms)


@pytest.mark.parametrize("name", list(WEIGHTINGS))
def test_every_registered_weighting_trains(name):
    options = {"static": {"weights": [1.0, 0.01]}, "dwa": {"steps_per_epoch": 5}}.get(name, {})
    record = train_synthetic(name, SMALL, steps=30, weighting_options=options)
    assert torch.isfinite(record.losses).all() and torch.isfinite(record.grad_norms).all()
    assert (record.weights >= 0).all()
    assert record.test_losses[-1, 1] < record.test_losses[0, 1]  # the large task learns something in 30 steps


def test_gradnorm_moves_the_gradient_norm_ratio_to_its_target():
    """Equal weights: G(sigma=100) / G(sigma=1) stays far above 1. GradNorm with alpha = 0.12:
    the ratio approaches its target (r_1 / r_0)^alpha, which is close to 1."""
    alpha, steps = 0.12, 150
    equal = train_synthetic("equal", SMALL, steps=steps)
    gradnorm = train_synthetic("gradnorm", SMALL, steps=steps, weighting_options={"alpha": alpha})
    late = slice(steps - 50, steps)

    def log_ratio(record):  # median over the last 50 steps of log(G_1 / G_0)
        return (record.grad_norms[late, 1] / record.grad_norms[late, 0]).log().median().item()

    ratios = gradnorm.loss_ratios[late]  # (50, 2): L_t / L_t(0)
    log_target = (alpha * (ratios[:, 1] / ratios[:, 0]).log()).median().item()
    assert abs(log_target) < math.log(1.2)
    assert log_ratio(equal) > math.log(10)  # the large task dominates the shared layer
    assert abs(log_ratio(gradnorm) - log_target) < math.log(2)  # within a factor 2 of the target
    assert abs(log_ratio(gradnorm) - log_target) < 0.25 * abs(log_ratio(equal) - log_target)
    # GradNorm gets there by up-weighting the small task; the weights keep summing to T = 2
    torch.testing.assert_close(gradnorm.weights.sum(1), torch.full((steps,), 2.0))
    assert gradnorm.weights[-1, 0] > 10 * gradnorm.weights[-1, 1]


# ------------------------------------------------------------------ errors
def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="scales must be one positive number per task"):
        SyntheticConfig(scales=())
    with pytest.raises(ValueError, match="scales must be one positive number per task"):
        SyntheticConfig(scales=(1.0, -2.0))
    with pytest.raises(ValueError, match="batch_size 64 exceeds num_train 32"):
        SyntheticConfig(num_train=32, batch_size=64)
    with pytest.raises(ValueError, match="hidden_dim must be at least 1"):
        SyntheticConfig(hidden_dim=0)
    with pytest.raises(ValueError, match="task_variance must be non-negative"):
        SyntheticConfig(task_variance=-1.0)
    with pytest.raises(ValueError, match="lr must be positive"):
        SyntheticConfig(lr=0.0)


def test_training_errors_name_the_problem():
    with pytest.raises(KeyError, match="valid weightings are: " + ", ".join(WEIGHTINGS)):
        train_synthetic("gradnrom", SMALL, steps=5)
    with pytest.raises(ValueError, match="leave shared_parameters out"):
        train_synthetic("gradnorm", SMALL, steps=5, weighting_options={"shared_parameters": []})
    with pytest.raises(TypeError, match="'dwa' needs the option.*steps_per_epoch"):
        train_synthetic("dwa", SMALL, steps=5)
    with pytest.raises(ValueError, match="steps and eval_every must be at least 1"):
        train_synthetic("equal", SMALL, steps=0)
    with pytest.raises(ValueError, match="num_examples must be at least 1"):
        SyntheticProblem(SMALL, torch.Generator().manual_seed(0)).sample(0, torch.Generator())
