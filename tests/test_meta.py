"""What the meta-learners promise: exact gradients, the known equivalences, and honest samplers."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtl_tutorial.meta import (
    FOMAML,
    MAML,
    META_LEARNERS,
    Episode,
    EpisodeSampler,
    JointTraining,
    Reptile,
    accuracy,
    adapt,
    adaptation_curve,
    make_meta_learner,
    meta_train_step,
    stack_episodes,
)
from mtl_tutorial.studies.sine import SineConfig, SineTaskSampler, run_sine, sine_mlp


def tiny_tanh_net(seed: int = 0) -> nn.Module:
    """1 -> 3 -> tanh -> 1 in float64: smooth, so finite differences are exact to ~1e-9."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(1, 3), nn.Tanh(), nn.Linear(3, 1)).double()


def sine_episodes(count: int = 3, seed: int = 0, dtype: torch.dtype = torch.float64) -> list[Episode]:
    episodes = SineTaskSampler(num_shots=5, num_queries=4, seed=seed).episodes(count)
    return [
        Episode(e.support_x.to(dtype), e.support_y.to(dtype), e.query_x.to(dtype), e.query_y.to(dtype))
        for e in episodes
    ]


def flat(direction: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([d.reshape(-1) for d in direction.values()])


def labelled_toy(num_classes: int = 6, per_class: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs that remember their own index and class: x[i] = (i, class of i)."""
    labels = torch.arange(num_classes).repeat(per_class)  # (M,)
    x = torch.stack([torch.arange(len(labels)).double(), labels.double()], dim=1)  # (M, 2)
    return x, labels


# ---------------------------------------------------------------- the episodic sampler


def test_episode_has_n_ways_times_k_shots_and_labels_0_to_n_minus_1():
    x, y = labelled_toy()
    sampler = EpisodeSampler(x, y, num_ways=4, num_shots=3, num_queries=2, seed=0)
    for e in sampler.episodes(20):
        assert e.support_x.shape == (4 * 3, 2) and e.query_x.shape == (4 * 2, 2)
        assert torch.bincount(e.support_y).tolist() == [3, 3, 3, 3]
        assert torch.bincount(e.query_y).tolist() == [2, 2, 2, 2]
        assert len(set(e.classes)) == 4
        # label i is original class classes[i], in support and query alike
        for x_, y_ in ((e.support_x, e.support_y), (e.query_x, e.query_y)):
            assert x_[:, 1].long().tolist() == [e.classes[i] for i in y_.tolist()]
        assert not set(e.support_indices) & set(e.query_indices)  # no example on both sides
        assert e.support_x[:, 0].long().tolist() == list(e.support_indices)


def test_sampler_is_deterministic_given_seed_and_index():
    x, y = labelled_toy()
    a = EpisodeSampler(x, y, 3, 2, 2, seed=5)
    b = EpisodeSampler(x, y, 3, 2, 2, seed=5)
    assert all(
        torch.equal(a.episode(i).support_x, b.episode(i).support_x) for i in (0, 7, 3)
    )  # any order
    assert a.episode(0).support_indices != a.episode(1).support_indices
    assert a.episode(0).support_indices != EpisodeSampler(x, y, 3, 2, 2, seed=6).episode(0).support_indices


def test_sampler_never_leaks_held_out_classes():
    x, y = labelled_toy(num_classes=10)
    train_classes, test_classes = [0, 2, 3, 5, 8, 9], [1, 4, 6, 7]
    sampler = EpisodeSampler(x, y, num_ways=5, num_shots=2, num_queries=3, classes=train_classes)
    seen = set()
    for e in sampler.episodes(200):
        seen |= set(e.classes)
        indices = list(e.support_indices) + list(e.query_indices)
        assert set(y[indices].tolist()) <= set(train_classes)
        assert not set(e.classes) & set(test_classes)
    assert seen == set(train_classes)  # and every training class does get used


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_ways": 7}, "lower num_ways to at most 6"),
        ({"num_shots": 9, "num_queries": 2}, "lower num_shots or num_queries"),
        ({"num_shots": 0}, "at least 1"),
        ({"classes": [0, 42]}, "42 have no examples"),
    ],
)
def test_sampler_errors_say_what_to_do(kwargs, message):
    x, y = labelled_toy(num_classes=6, per_class=10)
    options = {"num_ways": 3, "num_shots": 2, "num_queries": 2} | kwargs
    with pytest.raises(ValueError, match=message):
        EpisodeSampler(x, y, **options)


def test_too_small_class_is_named():
    x, y = labelled_toy(num_classes=3, per_class=10)
    y = torch.cat([y, torch.tensor([3, 3])])  # class 3 has two examples
    x = torch.cat([x, torch.zeros(2, 2)])
    with pytest.raises(ValueError, match=r"3 \('tiny'\).*smallest has 2"):
        EpisodeSampler(x, y, 2, 1, 2, class_names=["a", "b", "c", "tiny"])


def test_stacking_episodes_of_different_shapes_fails_clearly():
    a, b = sine_episodes(1)[0], SineTaskSampler(num_shots=6, num_queries=4).episode(0)
    with pytest.raises(ValueError, match="same N, K"):
        stack_episodes([a, b])


# ---------------------------------------------------------------- sine-wave tasks


def test_sine_tasks_follow_the_paper_distribution():
    sampler = SineTaskSampler(num_shots=10, num_queries=10, seed=3)
    tasks = [sampler.task(i) for i in range(500)]
    assert all(0.1 <= t.amplitude <= 5.0 and 0.0 <= t.phase <= math.pi for t in tasks)
    e = sampler.episode(7)
    t = sampler.task(7)
    assert e.support_x.abs().max() <= 5.0
    torch.testing.assert_close(e.query_y, t.amplitude * torch.sin(e.query_x - t.phase))
    assert torch.equal(e.support_x, SineTaskSampler(10, 10, seed=3).episode(7).support_x)


def test_sine_mlp_is_the_papers_1_40_40_1_network():
    model = sine_mlp()
    assert [m.weight.shape for m in model if isinstance(m, nn.Linear)] == [(40, 1), (40, 40), (1, 40)]


# ---------------------------------------------------------------- the mathematics of the learners


def test_maml_meta_gradient_matches_central_finite_differences():
    """F(θ) = mean query loss after two inner steps; its exact gradient needs the Hessian terms."""
    model, episodes = tiny_tanh_net(), sine_episodes(3)
    maml = MAML(F.mse_loss, inner_steps=2, inner_lr=0.1)
    analytic = flat(maml.meta_gradient(model, episodes).direction)
    params = list(model.parameters())
    numeric, eps = [], 1e-6

    def meta_loss_with(p: torch.Tensor, j: int, value: float) -> torch.Tensor:
        with torch.no_grad():
            p.view(-1)[j] = value
        return maml.meta_gradient(model, episodes).loss

    for p in params:
        for j in range(p.numel()):
            value = p.view(-1)[j].item()
            up, down = meta_loss_with(p, j, value + eps), meta_loss_with(p, j, value - eps)
            meta_loss_with(p, j, value)
            numeric.append((up - down) / (2 * eps))
    numeric = torch.stack(numeric)
    torch.testing.assert_close(analytic, numeric, rtol=1e-6, atol=1e-9)
    # the first-order approximation is measurably off here, so the check above has teeth
    first_order = flat(FOMAML(F.mse_loss, inner_steps=2, inner_lr=0.1).meta_gradient(model, episodes).direction)
    assert (first_order - numeric).norm() > 1e-3 * numeric.norm()


def test_maml_with_zero_inner_steps_is_joint_training():
    model, episodes = tiny_tanh_net(), sine_episodes(4)
    maml = flat(MAML(F.mse_loss, inner_steps=0).meta_gradient(model, episodes).direction)
    # joint training's gradient of the mean per-task query loss, by plain autograd
    model.zero_grad()
    torch.stack([F.mse_loss(model(e.query_x), e.query_y) for e in episodes]).mean().backward()
    plain = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(maml, plain)
    # and the JointTraining learner on the same examples (support := query, so pooling changes nothing)
    same = [Episode(e.query_x, e.query_y, e.query_x, e.query_y) for e in episodes]
    torch.testing.assert_close(maml, flat(JointTraining(F.mse_loss).meta_gradient(model, same).direction))


def linear_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """⟨prediction, target⟩ / n: linear in the outputs, hence in a linear model's parameters."""
    return (prediction * target).mean()


def test_fomaml_equals_maml_when_the_inner_loss_is_linear_in_the_parameters():
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    episodes = [
        Episode(torch.randn(5, 3).double(), torch.randn(5, 2).double(), torch.randn(4, 3).double(), torch.randn(4, 2).double())
        for _ in range(3)
    ]
    for steps in (1, 3):
        maml = MAML(linear_loss, inner_steps=steps, inner_lr=0.5).meta_gradient(model, episodes)
        fomaml = FOMAML(linear_loss, inner_steps=steps, inner_lr=0.5).meta_gradient(model, episodes)
        torch.testing.assert_close(flat(maml.direction), flat(fomaml.direction))
    # with a quadratic loss the Hessian is not zero and the two differ
    maml = MAML(F.mse_loss, inner_steps=1, inner_lr=0.5).meta_gradient(model, episodes)
    fomaml = FOMAML(F.mse_loss, inner_steps=1, inner_lr=0.5).meta_gradient(model, episodes)
    assert not torch.allclose(flat(maml.direction), flat(fomaml.direction))


def test_reptile_with_one_inner_step_moves_along_the_scaled_task_gradient():
    model, episode = tiny_tanh_net(), sine_episodes(1)[0]
    direction = Reptile(F.mse_loss, inner_steps=1, inner_lr=0.03).meta_gradient(model, [episode]).direction
    model.zero_grad()
    F.mse_loss(model(episode.all_x), episode.all_y).backward()
    gradient = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(flat(direction), 0.03 * gradient)


def test_reptile_with_several_steps_is_the_mean_displacement():
    model, episodes = tiny_tanh_net(), sine_episodes(2)
    direction = Reptile(F.mse_loss, inner_steps=4, inner_lr=0.05).meta_gradient(model, episodes).direction
    start = flat(dict(model.named_parameters())).detach()
    ends = [flat(adapt(model, e.all_x, e.all_y, F.mse_loss, 4, 0.05)).detach() for e in episodes]
    torch.testing.assert_close(flat(direction), start - torch.stack(ends).mean(0))


def test_adapt_takes_plain_sgd_steps_and_leaves_the_model_alone():
    model, e = tiny_tanh_net(), sine_episodes(1)[0]
    before = [p.detach().clone() for p in model.parameters()]
    adapted = adapt(model, e.support_x, e.support_y, F.mse_loss, steps=1, lr=0.1)
    model.zero_grad()
    F.mse_loss(model(e.support_x), e.support_y).backward()
    for (name, p), b in zip(model.named_parameters(), before):
        torch.testing.assert_close(adapted[name], b - 0.1 * p.grad)
        assert torch.equal(p.detach(), b)


def test_adaptation_curve_scores_each_episode_after_k_steps():
    model, episodes = tiny_tanh_net(), sine_episodes(3)
    curve = adaptation_curve(model, episodes, F.mse_loss, lr=0.1, steps=(0, 2))
    for i, e in enumerate(episodes):
        torch.testing.assert_close(curve[0][i], F.mse_loss(model(e.query_x), e.query_y).detach())
        after = adapt(model, e.support_x, e.support_y, F.mse_loss, 2, 0.1)
        expected = F.mse_loss(torch.func.functional_call(model, after, (e.query_x,)), e.query_y)
        torch.testing.assert_close(curve[2][i], expected.detach())


def test_accuracy_counts_argmax_hits():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1])).item() == pytest.approx(2 / 3)


# ---------------------------------------------------------------- the registry, table-driven


@pytest.mark.parametrize("name", list(META_LEARNERS))
def test_every_learner_gives_a_finite_direction_per_parameter_and_trains(name):
    model, episodes = tiny_tanh_net(), sine_episodes(4)
    learner = make_meta_learner(name, F.mse_loss, inner_steps=2, inner_lr=0.05)
    meta = learner.meta_gradient(model, episodes)
    assert {k: v.shape for k, v in meta.direction.items()} == {k: p.shape for k, p in model.named_parameters()}
    assert torch.isfinite(flat(meta.direction)).all() and flat(meta.direction).abs().sum() > 0
    assert repr(learner) == f"{type(learner).__name__}(inner_steps=2, inner_lr=0.05)"
    # a few outer SGD steps on a fixed meta-batch lower the loss the learner reports
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05 if name != "reptile" else 1.0)
    losses = [meta_train_step(model, episodes, learner, optimizer) for _ in range(30)]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name", list(META_LEARNERS))
def test_meta_training_is_deterministic(name):
    def train() -> torch.Tensor:
        model = sine_mlp(seed=1)
        learner = make_meta_learner(name, F.mse_loss)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        sampler = SineTaskSampler(seed=2)
        for step in range(3):
            meta_train_step(model, sampler.episodes(4, start=4 * step), learner, optimizer)
        return flat(dict(model.named_parameters())).detach()

    assert torch.equal(train(), train())


def test_unknown_method_or_option_lists_the_valid_ones():
    with pytest.raises(KeyError, match="valid methods are: maml, fomaml, reptile, joint"):
        make_meta_learner("protonet", F.mse_loss)
    with pytest.raises(TypeError, match="its options are: inner_steps, inner_lr"):
        make_meta_learner("maml", F.mse_loss, outer_lr=0.1)
    with pytest.raises(ValueError, match="valid methods are"):
        SineConfig(method="anil")
    with pytest.raises(ValueError, match="inner_lr must be positive"):
        MAML(F.mse_loss, inner_lr=0.0)


def test_run_sine_smoke_and_determinism():
    """A smoke run (a few steps, not a quality check) that returns the curve and repeats exactly."""
    config = SineConfig(method="maml", meta_steps=5, meta_batch_size=2, eval_tasks=5, eval_queries=10)
    a, b = run_sine(config), run_sine(config)
    assert set(a.mse) == {0, 1, 10} and a.mse == b.mse and a.train_losses == b.train_losses
    assert all(math.isfinite(v) and v > 0 for v in a.mse.values())
    assert a.mse[1] == pytest.approx(a.per_task[1].mean().item())
    assert json.loads(json.dumps(a.as_dict()))["config"]["inner_steps"] == 1


def test_sine_command_line_stores_weights_that_reproduce_its_curves(tmp_path):
    """The stored weights are the trained ones bit for bit: adapting them again gives the stored MSE."""
    from mtl_tutorial.meta.adaptation import adaptation_curve as curve_of
    from mtl_tutorial.studies.sine import main, model_from_json

    out = tmp_path / "sine.json"
    assert main(["--out", str(out), "--meta-steps", "3", "--eval-tasks", "4", "--methods", "maml", "joint"]) == 0
    record = json.loads(out.read_text())
    assert list(record["runs"]) == ["maml", "joint"]
    assert record["provenance"]["command"].endswith("--methods maml joint")
    assert {"git_commit", "versions", "threads", "trained_at"} <= set(record["runs"]["maml"]["provenance"])
    run = record["runs"]["maml"]
    config = SineConfig(**run["config"])
    assert config.meta_steps == 3 and config.eval_steps == tuple(range(11))
    model = model_from_json(run["weights"])
    held_out = SineTaskSampler(config.num_shots, config.eval_queries, seed=config.seed + 10_000)
    again = curve_of(model, held_out.episodes(config.eval_tasks), F.mse_loss, config.eval_lr, config.eval_steps)
    for k, values in again.items():
        assert values.mean().item() == pytest.approx(run["mse"][str(k)], abs=1e-5)
    # the joint model was trained differently, so its weights differ
    assert not torch.equal(flat(dict(model.named_parameters())),
                           flat(dict(model_from_json(record["runs"]["joint"]["weights"]).named_parameters())))
    with pytest.raises(ValueError, match="hidden sizes"):
        model_from_json(run["weights"], hidden=(40,))


def test_sine_study_merges_runs_of_the_same_config_and_never_shrinks(tmp_path):
    """A call with fewer methods keeps the stored runs and their provenance; another config is refused
    (the book's runs used 20,000 steps: a default call must not replace them)."""
    from mtl_tutorial.studies.cli import UsageError
    from mtl_tutorial.studies.sine import sine_study

    out = tmp_path / "sine.json"
    first = sine_study(["maml", "joint"], meta_steps=2, eval_tasks=3, out=out, threads=None)
    second = sine_study(["joint"], meta_steps=2, eval_tasks=3, out=out, threads=None)
    assert list(second["runs"]) == ["maml", "joint"]
    assert second["runs"]["maml"] == json.loads(json.dumps(first["runs"]["maml"]))  # provenance kept
    assert second["runs"]["joint"]["mse"] == json.loads(json.dumps(first["runs"]["joint"]["mse"]))  # deterministic
    assert second["provenance"]["cpu_time_s"] == round(sum(r["cpu_s"] for r in second["runs"].values()), 1)
    before = out.read_bytes()
    with pytest.raises(UsageError, match="holds 2 runs of another config .meta_steps 2 stored, 3 here.*--force"):
        sine_study(["maml", "joint"], meta_steps=3, eval_tasks=3, out=out)  # as many runs, but not those
    assert out.read_bytes() == before
    assert list(sine_study(["joint"], meta_steps=3, eval_tasks=3, out=out, threads=None, force=True)["runs"]) == ["joint"]
