import pytest
import torch

from mtl_tutorial.aggregators import AGGREGATORS, MGDA
from mtl_tutorial.toy import (
    AVERAGE_OPTIMUM,
    LOSS_OFFSET,
    PAPER_STARTS,
    TOY_OPTIONS,
    load_toy_runs,
    pareto_distance,
    pareto_set,
    record_toy_runs,
    run_toy,
    run_toy_many,
    toy_jacobian,
    toy_losses,
)
from mtl_tutorial.weightings import WEIGHTINGS, make_weighting


def test_losses_shape_and_a_known_value():
    x = torch.zeros(4, 3, 2)
    assert toy_losses(x).shape == (4, 3, 2)
    # at the average optimum x2 < 0: c1 = 0, c2 = tanh(4.1776); g1 = g2 = (49 + 0.1 * 0.3552^2) / 10 - 20
    c2 = torch.tanh(torch.tensor(8.3552 / 2, dtype=torch.float64))
    g = (49 + 0.1 * 0.3552**2) / 10 - 20
    torch.testing.assert_close(toy_losses(torch.tensor(AVERAGE_OPTIMUM, dtype=torch.float64)), (c2 * g).expand(2))


def test_analytic_jacobian_equals_autograd():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(300, 2, generator=g, dtype=torch.float64) * 6,
                   torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, -8.3552], *PAPER_STARTS], dtype=torch.float64)])
    losses, J = toy_jacobian(x)
    leaf = x.clone().requires_grad_()
    reference = toy_losses(leaf)
    rows = [torch.autograd.grad(reference[:, t].sum(), leaf, retain_graph=True)[0] for t in range(2)]
    torch.testing.assert_close(losses, reference.detach())
    torch.testing.assert_close(J, torch.stack(rows, dim=1))


def test_pareto_set_is_pareto_stationary():
    points = pareto_set(41)
    assert points[0, 0] == -7 and points[-1, 0] == 7
    assert points[20, 1].item() == pytest.approx(AVERAGE_OPTIMUM[1], abs=1e-4)  # x1 = 0: REFERENCE's -8.3552
    _, J = toy_jacobian(points)
    gap = MGDA().batch(J).norm(dim=-1)  # 0 iff some convex combination of the two gradients vanishes
    assert gap.max() < 1e-9
    assert pareto_distance(points).max() < 0.004
    assert pareto_distance(torch.tensor([[0.0, -7.3552], [9.0, -8.4]])).tolist() == pytest.approx([1.0, 2.0], abs=0.01)


def test_run_toy_is_adam_on_the_aggregated_direction():
    start = (2.0, -7.0)
    trajectory = run_toy("upgrad", start, steps=20)
    assert trajectory.shape == (21, 2) and trajectory[0].tolist() == list(start)
    x = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    optimizer = torch.optim.Adam([x], lr=1e-3)
    for k in range(20):
        _, J = toy_jacobian(x.detach())
        x.grad = AGGREGATORS["upgrad"]()(J)
        optimizer.step()
        assert torch.equal(trajectory[k + 1], x.detach())  # the hand-written Adam is torch's, bit for bit


@pytest.mark.parametrize("method", ["uncertainty", "gradnorm", "dwa", "static"])
def test_a_weighting_runs_as_in_a_training_step(method):
    """Reference: backward() through the weighting's objective of toy_losses, one Adam on x and its parameters."""
    start, steps = (-8.5, 7.5), 60
    extra = {"dwa": {"steps_per_epoch": 5}}.get(method, {})  # DWA: several epochs within the test
    trajectory = run_toy_many([method], [start], steps=steps, options={method: extra})[method][:, 0]
    x = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    if method == "gradnorm":
        extra = {"shared_parameters": [x]}
    weighting = make_weighting(method, 2, **{**TOY_OPTIONS.get(method, {}), **extra})
    optimizers = [torch.optim.Adam([x], lr=1e-3)]
    if list(weighting.parameters()):
        optimizers.append(torch.optim.Adam(weighting.parameters(), lr=1e-3))
    for k in range(steps):
        for optimizer in optimizers:
            optimizer.zero_grad()
        weighting(toy_losses(x) + LOSS_OFFSET).backward()
        for optimizer in optimizers:
            optimizer.step()
        torch.testing.assert_close(trajectory[k + 1], x.detach(), rtol=1e-12, atol=1e-12)


def test_many_equals_one_by_one_and_weightings_match_aggregators():
    out = run_toy_many(["mean", "equal", "cagrad", "static"], PAPER_STARTS, steps=30, options={"cagrad": {"c": 0.4}})
    assert set(out) == {"mean", "equal", "cagrad", "static"} and out["mean"].shape == (31, 3, 2)
    assert torch.equal(out["mean"], out["equal"])  # equal weights 1/2 = the mean of the two gradients
    assert torch.equal(out["static"], out["equal"])  # TOY_OPTIONS writes them as static weights
    torch.testing.assert_close(out["cagrad"][:, 1], run_toy("cagrad", PAPER_STARTS[1], steps=30, c=0.4))


@pytest.mark.parametrize("method", list(AGGREGATORS) + list(WEIGHTINGS))
def test_every_method_runs_deterministically(method):
    a = run_toy(method, (-8.5, 7.5), steps=5)
    assert torch.isfinite(a).all() and not torch.equal(a[0], a[-1])
    assert torch.equal(a, run_toy(method, (-8.5, 7.5), steps=5))


def test_near_the_front_every_aggregator_reaches_the_pareto_set():
    """From (1, -8), 0.36 above the front, 1,500 Adam steps of 1e-3 suffice (the paper's runs take 100,000)."""
    start = (1.0, -8.0)
    assert pareto_distance(torch.tensor(start)).item() > 0.3
    out = run_toy_many(["mgda", "cagrad", "mean"], [start], steps=1500)
    for method, trajectory in out.items():
        assert pareto_distance(trajectory[-1, 0]).item() < 0.01, method
    # MGDA stops at the first Pareto point it meets; CAGrad and the mean go on to the average optimum
    assert abs(out["mgda"][-1, 0, 0].item()) > 0.5
    assert abs(out["cagrad"][-1, 0, 0].item()) < 0.1


def test_a_methods_randomness_does_not_depend_on_its_companions():
    alone = run_toy_many(["graddrop"], PAPER_STARTS, steps=40)["graddrop"]
    together = run_toy_many(["rlw", "graddrop", "pcgrad"], PAPER_STARTS, steps=40)["graddrop"]
    assert torch.equal(alone, together)


def test_processes_split_the_methods():
    out = run_toy_many(["mean", "mgda", "uncertainty"], PAPER_STARTS, steps=3, processes=2)
    same = run_toy_many(["mean", "mgda", "uncertainty"], PAPER_STARTS, steps=3)
    assert list(out) == ["mean", "mgda", "uncertainty"]
    for method in out:
        assert torch.equal(out[method], same[method])


def test_a_method_may_appear_once():
    with pytest.raises(ValueError, match="once"):
        run_toy_many(["mean", "mgda", "mean"], PAPER_STARTS, steps=1)


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(KeyError, match="valid methods are the aggregators mean, mgda.* and the weightings equal"):
        run_toy("adam", (0.0, 0.0), steps=1)


def test_recorded_runs_load_back_with_their_provenance(tmp_path):
    runs = {"two": {"methods": ["mean", "rlw"], "steps": 10}, "c": {"methods": ["cagrad"], "steps": 10, "options": {"cagrad": {"c": 0.2}}}}
    path = tmp_path / "toy.pt"
    record_toy_runs(path, runs, stride=5, processes=1)
    loaded = load_toy_runs(path)
    assert set(loaded["runs"]) == {"two", "c"} and loaded["provenance"]["git_commit"]
    two = loaded["runs"]["two"]
    assert two["stored_steps"] == [0, 5, 10] and two["arguments"]["starts"] == [list(s) for s in PAPER_STARTS]
    again = run_toy_many(["mean", "rlw"], PAPER_STARTS, steps=10)
    for method in ("mean", "rlw"):
        assert torch.equal(two["trajectories"][method], again[method][[0, 5, 10]])
        assert torch.equal(two["end"][method], again[method][-1])
    assert torch.equal(loaded["runs"]["c"]["end"]["cagrad"], run_toy_many(["cagrad"], PAPER_STARTS, 10, options={"cagrad": {"c": 0.2}})["cagrad"][-1])
