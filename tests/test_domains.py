"""Chapter 3's domains: the digits split and shared trunk, the grid world's exact values and learners."""

from __future__ import annotations

import math

import pytest
import torch

from mtl_tutorial.studies.digits import (
    DigitsConfig,
    DigitsNet,
    check_tasks,
    digits_sweep,
    load_digits_data,
    split_digits,
    summarise_sweep,
    task_labels,
    task_losses,
    train_digits,
    training_pool_size,
)
from mtl_tutorial.studies.gridworld import (
    ACTIONS,
    LEARNERS,
    GridConfig,
    GridWorld,
    gridworld_study,
    learners,
    make_q_network,
    parameter_matched_hidden,
    sample_transitions,
    summarise_gridworld,
    train_gridworld,
)
from mtl_tutorial.studies.paired import paired_difference

# ---------------------------------------------------------------- digits


def test_digits_data_is_the_bundled_uci_set():
    images, digits = load_digits_data()
    assert images.shape == (1797, 64) and digits.shape == (1797,)
    assert images.min() == 0 and images.max() == 1
    assert torch.bincount(digits).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_split_is_deterministic_disjoint_stratified_and_nested():
    _, digits = load_digits_data()
    train, test = split_digits(digits, seed=3)
    train2, test2 = split_digits(digits, seed=3)
    assert torch.equal(train, train2) and torch.equal(test, test2)
    assert not set(train.tolist()) & set(test.tolist())
    assert len(train) + len(test) == 1797 and len(test) == 599
    assert not torch.equal(split_digits(digits, seed=4)[1], test)  # another seed, another split
    # the first 10 k training images hold k images of each digit
    assert torch.bincount(digits[train[:50]], minlength=10).tolist() == [5] * 10


def test_auxiliary_labels_follow_their_definition():
    digits = torch.arange(10)
    assert task_labels(digits, "loop").tolist() == [1, 0, 0, 0, 0, 0, 1, 0, 1, 1]
    assert task_labels(digits, "parity").tolist() == [0, 1] * 5
    assert task_labels(digits, "ge5").tolist() == [0] * 5 + [1] * 5
    assert torch.equal(task_labels(digits, "digit"), digits)


def test_unknown_task_lists_the_valid_ones():
    with pytest.raises(KeyError, match="valid tasks are: digit, loop, parity, ge5"):
        check_tasks(["digit", "holes"])
    with pytest.raises(KeyError, match="valid tasks"):
        DigitsConfig(tasks=("colour",))
    with pytest.raises(ValueError, match="distinct"):
        DigitsConfig(tasks=("digit", "digit"))
    with pytest.raises(ValueError, match="train_size"):
        train_digits(DigitsConfig(train_size=5000, steps=1))
    with pytest.raises(ValueError, match=r"\(B, 64\)"):
        DigitsNet(("digit",))(torch.zeros(2, 8, 8))


def test_trunk_gets_gradient_from_both_tasks_and_a_head_only_from_its_own():
    torch.manual_seed(0)
    model = DigitsNet(("digit", "loop"), hidden=16)
    images, digits = load_digits_data()
    x, labels = images[:32], {t: task_labels(digits[:32], t) for t in ("digit", "loop")}
    losses = task_losses(model, x, labels)  # (2,)
    trunk = model.shared_parameters()
    grads = {}
    for t, name in enumerate(model.tasks):
        grads[name] = torch.autograd.grad(losses[t], [*trunk, *model.heads.parameters()], retain_graph=True,
                                          allow_unused=True, materialize_grads=True)
    n_trunk = len(trunk)
    for name in model.tasks:
        assert all(g.abs().sum() > 0 for g in grads[name][:n_trunk])  # every trunk tensor hears every task
    heads = list(model.heads)  # ["digit", "loop"]
    offset = {name: n_trunk + sum(len(list(model.heads[h].parameters())) for h in heads[:i]) for i, name in enumerate(heads)}
    for name in model.tasks:
        for other in model.tasks:
            head_grads = grads[name][offset[other]: offset[other] + 2]  # weight and bias
            assert all((g.abs().sum() > 0) == (name == other) for g in head_grads)


def test_multitask_and_single_task_start_from_the_same_trunk_and_training_is_deterministic():
    a = train_digits(DigitsConfig(tasks=("digit", "loop"), train_size=50, steps=20))
    b = train_digits(DigitsConfig(tasks=("digit", "loop"), train_size=50, steps=20))
    assert a.test_accuracy == b.test_accuracy and a.final_losses == b.final_losses
    torch.manual_seed(0)
    multi = DigitsNet(("digit", "loop"))
    torch.manual_seed(0)
    single = DigitsNet(("digit",))
    for p, q in zip(multi.trunk.parameters(), single.trunk.parameters()):
        assert torch.equal(p, q)


def test_training_learns_the_digits():
    result = train_digits(DigitsConfig(tasks=("digit", "loop"), train_size=200, steps=150))
    assert result.test_accuracy["digit"] > 0.8  # chance is 0.1
    assert result.test_accuracy["loop"] > 0.85  # the majority class (no loop) is 60%


def test_paired_difference_counts_and_interval():
    r = paired_difference([1.0, 2.0, 3.0], [0.0, 1.0, 1.0])  # differences 1, 1, 2
    assert math.isclose(r["mean"], 4 / 3) and (r["wins"], r["ties"], r["losses"]) == (3, 0, 0)
    half = 4.302652729911275 * math.sqrt(1 / 3) / math.sqrt(3)  # t_{0.975, 2} · s / √k, s² = 1/3
    assert math.isclose(r["ci95"][1] - r["mean"], half, rel_tol=1e-9)
    with pytest.raises(ValueError, match="same length"):
        paired_difference([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least 1 seed"):
        paired_difference([], [])


def test_one_seed_gives_a_difference_without_spread_or_interval():
    r = paired_difference([0.75], [0.5])
    assert r["mean"] == 0.25 and (r["wins"], r["ties"], r["losses"]) == (1, 0, 0)
    assert r["std"] is None and r["std_a"] is None and r["std_b"] is None and r["ci95"] is None


def test_a_sweep_of_one_seed_is_summarised():
    rows = summarise_sweep(digits_sweep([10], [3], "parity", steps=2))
    assert len(rows) == 1 and rows[0]["seeds"] == [3] and rows[0]["train_size"] == 10
    assert rows[0]["ci95"] is None and 0 <= rows[0]["mean_a"] <= 1


def test_the_training_pool_holds_1198_images_for_every_seed():
    _, digits = load_digits_data()
    assert training_pool_size() == 1198
    assert {len(split_digits(digits, seed)[0]) for seed in range(3)} == {1198}


# ---------------------------------------------------------------- grid world

CORRIDOR = ("....",)  # four cells in a row


def test_the_summary_orders_runs_by_the_learners_of_the_comparison():
    assert tuple(learners(GridWorld())) == LEARNERS


def test_gridworld_study_of_one_seed_summarises_and_merges(tmp_path):
    out = tmp_path / "grid.json"
    first = gridworld_study([6], [0], out, updates=2, threads=None)
    assert [r["learner"] for r in first["runs"]] == list(LEARNERS)
    assert all(row["value_rmse"]["ci95"] is None for row in first["summary"])  # one seed: no interval
    second = gridworld_study([None], [1], out, updates=2, threads=None)  # another size, another seed: merged
    assert [(r["num_transitions"], r["seed"]) for r in second["runs"]] == [(6, 0)] * 3 + [(None, 1)] * 3
    assert second["summary"] == summarise_gridworld(second["runs"]) and len(second["trainings"]) == 2
    assert second["runs"][0]["trained"] == first["runs"][0]["trained"]  # the stored run keeps its training


def test_walls_and_edges_block_moves():
    world = GridWorld((".#.", "..."), goals=[(1, 2)])
    up, down, left, right = (world.next_state[:, i] for i in range(len(ACTIONS)))
    s = world.index
    assert right[s[(0, 0)]] == s[(0, 0)]  # the wall
    assert up[s[(0, 0)]] == s[(0, 0)]  # the edge
    assert down[s[(0, 0)]] == s[(1, 0)] and left[s[(0, 2)]] == s[(0, 2)]
    assert world.distances(0)[s[(0, 0)]] == 3  # around the wall: down, right, right


def test_value_iteration_gives_shortest_path_values():
    world = GridWorld(("...#", ".#..", "...."), goals=[(0, 2), (2, 0)])
    for goal in range(world.num_goals):
        d = world.distances(goal).double()
        v1 = world.value_iteration(goal, gamma=1.0).max(dim=1).values
        torch.testing.assert_close(v1, -d)  # V = -distance without discounting
        gamma = 0.9
        v = world.value_iteration(goal, gamma=gamma).max(dim=1).values
        torch.testing.assert_close(v, -(1 - gamma ** d) / (1 - gamma))  # -(1 + γ + ... + γ^{d-1})


def test_optimal_q_greedy_policy_follows_shortest_paths():
    world = GridWorld()
    q = torch.stack([world.value_iteration(g) for g in range(world.num_goals)])  # (G, S, A)
    reached, steps = world.greedy_rollouts(q)
    assert reached.all()
    assert torch.equal(steps, torch.stack([world.distances(g) for g in range(world.num_goals)]))


def test_bad_worlds_and_names_give_clear_errors():
    with pytest.raises(ValueError, match="free cell"):
        GridWorld(("..", "#."), goals=[(1, 0)])
    with pytest.raises(ValueError, match="only '.'"):
        GridWorld(("..", ".G"), goals=[(0, 0)])
    with pytest.raises(ValueError, match="rectangle"):
        GridWorld(("...", ".."), goals=[(0, 0)])
    with pytest.raises(KeyError, match="valid ones are: shared, separate"):
        make_q_network("dueling", 4, 1)
    with pytest.raises(KeyError, match="valid ones are"):
        GridConfig(model="tabular")
    with pytest.raises(IndexError, match="goals 0..0"):
        GridWorld(CORRIDOR, goals=[(0, 0)]).distances(1)


def test_shared_trunk_gets_gradient_from_every_goal_and_a_head_only_from_its_own():
    torch.manual_seed(0)
    net = make_q_network("shared", num_states=6, num_goals=3, hidden=8)
    q = net(torch.arange(6))  # (B, G, A)
    for g in range(3):
        grads = torch.autograd.grad(q[:, g].sum(), list(net.parameters()), retain_graph=True,
                                    allow_unused=True, materialize_grads=True)
        named = dict(zip([n for n, _ in net.named_parameters()], grads))
        assert all(named[n].abs().sum() > 0 for n in named if n.startswith("trunk."))
        for h in range(3):
            assert (named[f"heads.{h}.weight"].abs().sum() > 0) == (g == h)


def test_separate_networks_share_nothing_and_parameter_matching():
    torch.manual_seed(0)
    net = make_q_network("separate", num_states=6, num_goals=2, hidden=8)
    q = net(torch.arange(6))
    grads = torch.autograd.grad(q[:, 0].sum(), list(net.nets[1].parameters()), allow_unused=True,
                                materialize_grads=True)
    assert all(g.abs().sum() == 0 for g in grads)
    world = GridWorld()
    h = parameter_matched_hidden(world, 64)

    def count(name: str, hidden: int) -> int:
        return sum(p.numel() for p in make_q_network(name, world.num_states, world.num_goals, hidden).parameters())

    assert count("separate", h) <= count("shared", 64) < count("separate", h + 1)


def test_transitions_are_exhaustive_or_owned_per_goal():
    world = GridWorld()
    every = sample_transitions(world, None, seed=0)
    assert len(every.states) == world.num_states * len(ACTIONS) and every.owner.all()
    own = sample_transitions(world, 40, seed=0, relabel=False)
    assert own.owner.sum(0).tolist() == [10] * world.num_goals and own.owner.sum(1).eq(1).all()
    again = sample_transitions(world, 40, seed=0, relabel=False)
    assert torch.equal(own.states, again.states) and torch.equal(own.actions, again.actions)


def test_trained_shared_network_reaches_every_goal_on_a_tiny_grid_deterministically():
    world = GridWorld(("...", ".#.", "..."), goals=[(0, 0), (2, 2)])
    config = GridConfig(model="shared", hidden=16, updates=300, target_every=10, lr=1e-2, eval_every=100, seed=0)
    result = train_gridworld(config, world)
    assert result.success[-1] == 1.0 and result.excess_steps[-1] == 0.0  # shortest paths from every start
    assert result.value_rmse[-1] < 0.1 < result.value_rmse[0]
    again = train_gridworld(config, world)
    assert torch.equal(result.q, again.q)
