import math

import pytest
import torch

from mtl_tutorial.weightings import (
    DWA,
    RLW,
    WEIGHTINGS,
    Equal,
    GradNorm,
    Static,
    Uncertainty,
    make_weighting,
)


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


@pytest.mark.parametrize("alpha", [float("nan"), -0.5, float("inf")])
def test_gradnorm_refuses_an_alpha_without_a_target(alpha):
    with pytest.raises(ValueError, match=rf"GradNorm's alpha must be finite and >= 0, got {alpha}"):
        GradNorm(2, LAST_LAYER.parameters(), alpha=alpha)
    assert GradNorm(2, LAST_LAYER.parameters(), alpha=0.0).alpha == 0.0  # equal gradient norms


@pytest.mark.parametrize("start", [float("nan"), float("inf"), -float("inf")])
def test_uncertainty_refuses_a_non_finite_start(start):
    with pytest.raises(ValueError, match=rf"initial_log_variance .* must be finite, got {start}"):
        Uncertainty(2, initial_log_variance=start)


# ------------------------------------------------------------------ every registered weighting
LAST_LAYER = torch.nn.Linear(3, 3)


def build(name: str, num_tasks: int = 3):
    """The options each weighting needs; a new weighting gets the common tests by adding a line."""
    options = {
        "static": {"weights": [1.0] * num_tasks},
        "dwa": {"steps_per_epoch": 2},
        "gradnorm": {"shared_parameters": LAST_LAYER.parameters()},
        "rlw": {"generator": torch.Generator().manual_seed(0)},
    }
    return make_weighting(name, num_tasks, **options.get(name, {}))


def toy_losses(num_tasks: int = 3) -> torch.Tensor:
    """Positive losses that depend on LAST_LAYER, so GradNorm has gradients to measure."""
    out = LAST_LAYER(torch.arange(1.0, 4.0))  # (3,)
    return (out[:num_tasks] ** 2 + torch.arange(1.0, num_tasks + 1))  # (T,)


@pytest.mark.parametrize("name", list(WEIGHTINGS))
def test_every_weighting_maps_losses_to_a_differentiable_scalar(name):
    weighting = build(name)
    for _ in range(5):  # a few calls, so the stateful ones move past their start
        losses = toy_losses()
        objective = weighting(losses)
        assert objective.dim() == 0 and torch.isfinite(objective)
        (grad,) = torch.autograd.grad(objective, losses, retain_graph=True)
        w = weighting.weights
        assert w.shape == (3,) and torch.isfinite(w).all() and (w >= 0).all()
        torch.testing.assert_close(grad, w)  # dObjective / dL_t is the weight the method reports
    assert repr(weighting).startswith(type(weighting).__name__ + "(")
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        weighting(torch.ones(2))


def test_registry_needs_and_checks_options():
    with pytest.raises(TypeError, match="'gradnorm' needs the option.*shared_parameters"):
        make_weighting("gradnorm", 2)
    with pytest.raises(TypeError, match="'dwa' needs the option.*steps_per_epoch"):
        make_weighting("dwa", 2)
    with pytest.raises(TypeError, match="'equal' has no option 'temperature'; its options are: none"):
        make_weighting("equal", 2, temperature=2.0)
    with pytest.raises(TypeError, match="its options are: steps_per_epoch, temperature"):
        make_weighting("dwa", 2, tau=2.0)


# ------------------------------------------------------------------ uncertainty weighting
def test_uncertainty_reaches_its_fixed_point():
    """For fixed losses, gradient descent on s_t converges to e^{s_t} = L_t (weight 1 / (2 L_t))."""
    losses = torch.tensor([0.5, 2.0, 8.0])
    weighting = Uncertainty(3)
    optimizer = torch.optim.SGD(weighting.parameters(), lr=1.0)  # f''(s*) = 1/2: a contraction
    for _ in range(100):
        optimizer.zero_grad()
        weighting(losses).backward()
        optimizer.step()
    torch.testing.assert_close(weighting.log_variances.detach().exp(), losses)
    torch.testing.assert_close(weighting.weights, 1 / (2 * losses))
    # at the fixed point the objective is sum_t (1 + log L_t) / 2
    assert weighting(losses).item() == pytest.approx((0.5 * (1 + losses.log())).sum().item(), rel=1e-5)


def test_uncertainty_leaves_an_absent_task_alone():
    weighting = Uncertainty(2, initial_log_variance=0.3)
    weighting(torch.tensor([1.5, 0.0])).backward()
    assert weighting.log_variances.grad[1].item() == 0.0
    assert weighting.log_variances.grad[0].item() == pytest.approx(0.5 - 0.5 * math.exp(-0.3) * 1.5)


# ------------------------------------------------------------------ DWA
def test_dwa_weights_sum_to_num_tasks_and_follow_the_loss_ratios():
    g = torch.Generator().manual_seed(0)
    dwa = DWA(4, steps_per_epoch=3, temperature=2.0)
    history = []
    for step in range(30):
        dwa(torch.rand(4, generator=g) + 0.1)
        history.append(dwa.weights)
        assert dwa.weights.sum().item() == pytest.approx(4.0)
    assert all(torch.equal(w, torch.ones(4)) for w in history[:5])  # epochs 1 and 2: equal weights
    assert not torch.equal(history[-1], torch.ones(4))
    # ratio of the last two epoch averages, by hand
    dwa = DWA(2, steps_per_epoch=2)
    for losses in ([1.0, 2.0], [3.0, 2.0], [1.0, 1.0], [1.0, 3.0]):  # averages (2, 2) then (1, 2)
        dwa(torch.tensor(losses))
    expected = 2 * torch.softmax(torch.tensor([0.5, 1.0]) / 2, dim=0)
    torch.testing.assert_close(dwa.weights, expected)


def test_dwa_skips_absent_tasks_and_checkpoints_its_state():
    dwa = DWA(2, steps_per_epoch=2)
    for losses in ([1.0, 0.0], [1.0, 4.0], [0.5, 0.0], [0.5, 2.0]):  # task 1 averages 4 then 2, not 2 then 1
        dwa(torch.tensor(losses))
    torch.testing.assert_close(dwa.weights, 2 * torch.softmax(torch.tensor([0.5, 0.5]) / 2, dim=0))
    copy = DWA(2, steps_per_epoch=2)
    copy.load_state_dict(dwa.state_dict())
    losses = torch.tensor([0.2, 1.0])
    assert copy(losses).item() == dwa(losses).item()


# ------------------------------------------------------------------ GradNorm
def two_task_problem():
    torch.manual_seed(0)
    shared = torch.nn.Linear(4, 4)
    heads = [torch.nn.Linear(4, 1), torch.nn.Linear(4, 1)]
    x = torch.randn(16, 4)
    hidden = shared(x)
    losses = torch.stack([heads[0](hidden).pow(2).mean(), 100 * heads[1](hidden).pow(2).mean()])
    return shared, heads, losses


def test_gradnorm_targets_are_constants_in_its_own_loss():
    shared, heads, losses = two_task_problem()
    gradnorm = GradNorm(2, shared.parameters(), alpha=1.5)
    with torch.no_grad():
        gradnorm.raw_weights.copy_(torch.tensor([0.5, 1.5]))
    gradnorm(losses.detach().requires_grad_())  # first call records L(0) (a graph-free call: no balancing)
    objective = gradnorm(losses * torch.tensor([0.8, 0.4]))  # L~ = (0.8, 0.4): task 0 has trained less
    objective.backward(retain_graph=True)
    norms = []
    for t in range(2):
        grads = torch.autograd.grad(losses[t] * [0.8, 0.4][t], list(shared.parameters()), retain_graph=True)
        norms.append(torch.cat([g.flatten() for g in grads]).norm())
    norms = torch.stack(norms)
    w = torch.tensor([0.5, 1.5])
    G = w * norms
    r = torch.tensor([0.8, 0.4]) / 0.6
    target = G.mean() * r**1.5
    # target held constant: dL_grad/dw_t = sign(G_t - target_t) ||grad_W L_t||, nothing through mean(G)
    torch.testing.assert_close(gradnorm.raw_weights.grad, torch.sign(G - target) * norms)
    assert gradnorm.balance_loss.item() == pytest.approx((G - target).abs().sum().item(), rel=1e-5)
    # the model sees the weighted loss only
    assert objective.item() == pytest.approx((w * losses.detach() * torch.tensor([0.8, 0.4])).sum().item(), rel=1e-6)
    model_grad = heads[1].weight.grad.clone()
    heads[1].weight.grad = None
    (1.5 * 0.4 * losses[1]).backward(retain_graph=True)
    torch.testing.assert_close(model_grad, heads[1].weight.grad)


def test_gradnorm_renormalises_and_balances_gradient_norms():
    torch.manual_seed(0)
    shared, heads = torch.nn.Linear(8, 8), [torch.nn.Linear(8, 1), torch.nn.Linear(8, 1)]
    gradnorm = GradNorm(2, shared.parameters(), alpha=0.12)
    params = list(shared.parameters()) + [p for h in heads for p in h.parameters()]
    optimizer = torch.optim.Adam([{"params": params, "lr": 1e-3}, {"params": gradnorm.parameters(), "lr": 0.05}])
    x, scales = torch.randn(64, 8), torch.tensor([1.0, 100.0])

    def step():
        hidden = shared(x)
        losses = torch.stack([s * h(hidden).pow(2).mean() for s, h in zip(scales, heads)]) + 0.1
        optimizer.zero_grad()
        gradnorm(losses).backward()
        optimizer.step()
        return gradnorm.balance_loss.item()

    first = step()
    for _ in range(150):
        last = step()
    assert gradnorm.weights.sum().item() == pytest.approx(2.0)
    assert gradnorm.weights[0] > 1.5  # the small-gradient task is up-weighted ...
    assert last < 0.2 * first  # ... until the gradient norms meet their targets


def test_gradnorm_needs_the_shared_layer():
    with pytest.raises(ValueError, match="last shared layer"):
        GradNorm(2, [])


# ------------------------------------------------------------------ RLW
def test_rlw_draws_fresh_weights_on_the_simplex_from_its_generator():
    losses = torch.tensor([1.0, 2.0, 3.0])
    a, b = RLW(3, generator=torch.Generator().manual_seed(1)), RLW(3, generator=torch.Generator().manual_seed(1))
    draws = []
    for _ in range(500):
        assert a(losses).item() == b(losses).item()
        draws.append(a.weights)
    draws = torch.stack(draws)
    torch.testing.assert_close(draws.sum(1), torch.ones(500))
    assert (draws > 0).all() and len({tuple(w.tolist()) for w in draws}) == 500
    torch.testing.assert_close(draws.mean(0), torch.full((3,), 1 / 3), atol=0.03, rtol=0)
