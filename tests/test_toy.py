import pytest
import torch

from mtl_tutorial.aggregators import AGGREGATORS, MGDA
from mtl_tutorial.studies.toy import (
    AVERAGE_OPTIMUM,
    PAPER_STARTS,
    pareto_distance,
    pareto_set,
    run_toy,
    run_toy_many,
    toy_jacobian,
    toy_losses,
)
from mtl_tutorial.studies.toy_batched import BATCHED_WEIGHTINGS, ElementwiseAdam, batched_weighting
from mtl_tutorial.studies.toy_record import load_toy_runs, main, record_toy_runs, run_in_processes
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
        assert torch.equal(trajectory[k + 1], x.detach())
    # the batched runner's hand-written Adam is torch's, bit for bit
    assert torch.equal(run_toy_many(["upgrad"], [start], steps=20)["upgrad"][:, 0], trajectory)


def test_elementwise_adam_is_torch_adam_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float64, torch.float32):
        mine = torch.randn(5, 3, 2, generator=g).to(dtype)
        reference = torch.nn.Parameter(mine.clone())
        adam, optimizer = ElementwiseAdam(mine, lr=1e-2), torch.optim.Adam([reference], lr=1e-2)
        for _ in range(50):
            grad = torch.randn(5, 3, 2, generator=g).to(dtype) * 10 ** torch.randint(-6, 3, (5, 3, 2), generator=g)
            adam.step(grad)
            reference.grad = grad
            optimizer.step()
            assert torch.equal(mine, reference.detach())


REFERENCE_STEPS = 300  # DWA (an epoch of 100 steps) changes its weights for the first time after step 200


@pytest.fixture(scope="module")
def batched_runs():
    return run_toy_many([*AGGREGATORS, *WEIGHTINGS], PAPER_STARTS, steps=REFERENCE_STEPS)


@pytest.mark.parametrize("method", [*AGGREGATORS, *WEIGHTINGS])
def test_the_batched_runs_are_the_reference_runs(method, batched_runs):
    """run_toy_many (all methods from all starts at once) against run_toy (one module, autograd, torch's Adam).

    The weightings' reference takes its gradients by autograd through toy_losses, the batched
    runner from toy_jacobian: they agree to rounding, and so do the trajectories.
    """
    randomised = method in AGGREGATORS and AGGREGATORS[method].needs_generator
    for s, start in enumerate(PAPER_STARTS):
        reference = run_toy(method, start, steps=REFERENCE_STEPS)
        if randomised:  # it draws for all starts at once: only a single-start batch is the reference run
            batched = run_toy_many([method], [start], steps=REFERENCE_STEPS)[method][:, 0]
        else:
            batched = batched_runs[method][:, s]
        torch.testing.assert_close(batched, reference, rtol=0, atol=1e-12)
    assert not torch.equal(reference[0], reference[-1])


def _module_weights_and_parameters(method, losses, jacobians, options):
    """One module per start, driven as a trainer drives it; per call, the weights d objective / d L
    ``(S, T)`` and the module's parameters ``(S, T)`` (or None) after its Adam step."""
    S = losses.shape[1]
    probes = [torch.zeros(2, dtype=torch.float64, requires_grad=True) for _ in range(S)]  # GradNorm's "last shared layer"
    extra = {"gradnorm": lambda s: {"shared_parameters": [probes[s]]},
             "rlw": lambda s: {"generator": torch.Generator().manual_seed(s)}}.get(method, lambda s: {})
    modules = [make_weighting(method, 2, **options, **extra(s)) for s in range(S)]
    parameters = [list(m.parameters()) for m in modules]
    optimizers = [torch.optim.Adam(p, lr=1e-2) for p in parameters if p]
    history = []
    for L, J in zip(losses, jacobians):  # (S, T), (S, T, n)
        for optimizer in optimizers:
            optimizer.zero_grad()
        seen = [L[s] + J[s] @ probes[s] for s in range(S)]  # the value L; the gradient J with respect to the probe
        objective = torch.stack([module(v) for module, v in zip(modules, seen)]).sum()
        grads = torch.autograd.grad(objective, [*seen, *(p for ps in parameters for p in ps)])
        for p, grad in zip((p for ps in parameters for p in ps), grads[S:]):
            p.grad = grad
        for optimizer in optimizers:
            optimizer.step()
        state = torch.stack([ps[0].detach().clone() for ps in parameters]) if parameters[0] else None
        history.append((torch.stack(grads[:S]), state))
    return history


@pytest.mark.parametrize("weighting_class", list(BATCHED_WEIGHTINGS), ids=lambda c: c.__name__)
def test_a_batched_weighting_is_its_module_for_each_start(weighting_class):
    """Random positive losses and Jacobians for 3 starts over 12 calls: the same weights and parameters as 3 modules."""
    method = next(name for name, cls in WEIGHTINGS.items() if cls is weighting_class)
    options = {"dwa": {"steps_per_epoch": 2}, "gradnorm": {"alpha": 1.5}}.get(method, {})
    g = torch.Generator().manual_seed(1)
    losses = torch.rand(12, 3, 2, generator=g, dtype=torch.float64) * 5 + 0.1  # (calls, S, T)
    jacobians = torch.randn(12, 3, 2, 2, generator=g, dtype=torch.float64)  # (calls, S, T, n)
    expected = _module_weights_and_parameters(method, losses, jacobians, options)
    module_kwargs = {"gradnorm": {"shared_parameters": [torch.zeros(2, requires_grad=True)]}}.get(method, {})
    batched = batched_weighting(make_weighting(method, 2, **options, **module_kwargs), 3, 1e-2,
                                [torch.Generator().manual_seed(s) for s in range(3)])
    for k in range(12):
        weights = batched(losses[k], jacobians[k])
        assert torch.equal(weights, expected[k][0])
        parameters = getattr(batched, "log_variances", getattr(batched, "raw_weights", None))
        assert (parameters is None) == (expected[k][1] is None)
        if parameters is not None:
            assert torch.equal(parameters, expected[k][1])
    if method == "dwa":
        assert not torch.equal(weights, torch.ones_like(weights))  # the weights did move


def test_a_weighting_without_a_batched_formulation_is_named():
    class Halves(type(make_weighting("equal", 2))):
        pass

    with pytest.raises(KeyError, match="no batched toy formulation for Halves.*knows Uncertainty, DWA, GradNorm, RLW"):
        batched_weighting(Halves(2), 3, 1e-3, [])


def test_many_equals_one_by_one_and_weightings_match_aggregators():
    out = run_toy_many(["mean", "equal", "cagrad", "static"], PAPER_STARTS, steps=30, options={"cagrad": {"c": 0.4}})
    assert set(out) == {"mean", "equal", "cagrad", "static"} and out["mean"].shape == (31, 3, 2)
    assert torch.equal(out["mean"], out["equal"])  # equal weights 1/2 = the mean of the two gradients
    assert torch.equal(out["static"], out["equal"])  # TOY_OPTIONS writes them as static weights
    assert torch.equal(out["cagrad"][:, 1], run_toy("cagrad", PAPER_STARTS[1], steps=30, c=0.4))


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
    alone = run_toy_many(["graddrop", "rlw"], PAPER_STARTS, steps=40)
    together = run_toy_many(["rlw", "uncertainty", "graddrop", "pcgrad"], PAPER_STARTS, steps=40)
    for method in ("graddrop", "rlw"):
        assert torch.equal(alone[method], together[method])
    # RLW's draws follow the start, not its place among the starts
    assert torch.equal(run_toy_many(["rlw"], PAPER_STARTS[::-1], steps=40)["rlw"][:, 0], alone["rlw"][:, 2])


def test_a_method_may_appear_once():
    with pytest.raises(ValueError, match="once"):
        run_toy_many(["mean", "mgda", "mean"], PAPER_STARTS, steps=1)


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(KeyError, match="valid methods are the aggregators mean, mgda.* and the weightings equal"):
        run_toy("adam", (0.0, 0.0), steps=1)


def test_processes_split_the_methods():
    runs = {"a": {"methods": ["mean", "mgda", "uncertainty"], "steps": 3}, "b": {"methods": ["cagrad"], "steps": 4}}
    split = run_in_processes(runs, processes=2)
    whole = run_toy_many(["mean", "mgda", "uncertainty"], PAPER_STARTS, steps=3)
    assert list(split) == ["a", "b"] and list(split["a"]["trajectories"]) == ["mean", "mgda", "uncertainty"]
    for method in whole:
        assert torch.equal(split["a"]["trajectories"][method], whole[method])
    assert torch.equal(split["b"]["end"]["cagrad"], run_toy_many(["cagrad"], PAPER_STARTS, steps=4)["cagrad"][-1])


def test_recorded_runs_load_back_with_their_provenance(tmp_path):
    runs = {"two": {"methods": ["mean", "rlw"], "steps": 12}, "c": {"methods": ["cagrad"], "steps": 10, "options": {"cagrad": {"c": 0.2}}}}
    path = tmp_path / "toy.pt"
    record_toy_runs(path, runs, stride=5, processes=1)
    loaded = load_toy_runs(path)
    assert set(loaded["runs"]) == {"two", "c"} and loaded["provenance"]["git_commit"]
    assert loaded["provenance"]["wall_s"] >= 0 and loaded["provenance"]["cpu_s"] >= 0
    two = loaded["runs"]["two"]
    assert two["stored_steps"] == [0, 5, 10] and two["arguments"]["starts"] == [list(s) for s in PAPER_STARTS]
    again = run_toy_many(["mean", "rlw"], PAPER_STARTS, steps=12)
    for method in ("mean", "rlw"):
        assert torch.equal(two["trajectories"][method], again[method][[0, 5, 10]])
        assert torch.equal(two["end"][method], again[method][-1])  # the last step, also off the stride
    assert torch.equal(loaded["runs"]["c"]["end"]["cagrad"], run_toy_many(["cagrad"], PAPER_STARTS, 10, options={"cagrad": {"c": 0.2}})["cagrad"][-1])


def test_a_broken_record_names_its_file_and_the_repair(tmp_path):
    from mtl_tutorial.files import CorruptFileError

    path = tmp_path / "toy.pt"
    record_toy_runs(path, {"one": {"methods": ["mean"], "steps": 3}}, stride=1, processes=1)
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(CorruptFileError, match=r"cannot load .*toy\.pt .*record it again"):
        load_toy_runs(path)
    assert not [p.name for p in tmp_path.iterdir() if p.name != "toy.pt"]  # no temporary file left behind


def test_the_benchmark_command_checks_its_arguments(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--steps", "0"])
    assert "argument --steps: expected a positive integer, got 0" in capsys.readouterr().err
    assert main(["bench", "--steps", "20", "--processes", "1"]) == 0  # below 100,000 steps it only reports
    assert "CPU ms per step" in capsys.readouterr().out
