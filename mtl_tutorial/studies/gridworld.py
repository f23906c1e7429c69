r"""Reinforcement learning: several goals in one grid world, one Q-network with a head per goal.

A deterministic grid of free cells (``.``) and walls (``#``); four actions (up, down, left,
right); a move into a wall or off the grid leaves the agent where it is. Each goal cell defines a
task: reward $-1$ per step, the goal absorbing with value 0. Exact optimal values follow from
value iteration (Sutton & Barto, 2018, §4.4),

$$V^*_g(s) = \max_a \big[-1 + \gamma V^*_g(s'(s, a))\big],\quad V^*_g(g) = 0
\;\Rightarrow\; V^*_g(s) = -\frac{1-\gamma^{d_g(s)}}{1-\gamma}\ (\gamma<1),\quad -d_g(s)\ (\gamma=1),$$

with $d_g(s)$ the shortest-path distance, so every learned value can be scored against the truth.

The learners see a fixed batch of random transitions $(s, a, s')$. The dynamics are the same for
every goal, so one transition serves every task with its own reward and termination (the
relabelling of universal value functions, Schaul et al., 2015). Two learners get the same
transitions, the same number of updates and the same optimiser:

* ``shared``: one trunk over the one-hot state, one linear head per goal, $Q_g(s,\cdot) = W_g\,\phi(s)$;
* ``separate``: one network (trunk and head) per goal, as if each task were learned alone.

Both fit $Q$ by fitted Q-iteration with a target network (DQN's update, Mnih et al., 2015): the
loss of goal $g$ is $L_g = \operatorname{mean}_{(s,a,s'),\, s \ne g}\,
(Q_g(s,a) - y)^2$, $y = -1 + \gamma\,[s' \ne g] \max_{a'} \bar Q_g(s', a')$, and the objective is
the package's equal weighting $\tfrac1G \sum_g L_g$.

The command line runs chapter 3.2's comparison into ``book/results/domains_gridworld.json``::

    python -m mtl_tutorial.studies.gridworld [--sizes 40 80 160 all] [--seeds 0-9] [--threads 1]
        [--out FILE] [--force]

A call with fewer seeds or sizes merges its runs into the stored summary when both have the
same config (a run of the same learner, number of transitions and seed is replaced), so the
summary never shrinks; a summary of another config is refused unless ``--force``.
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from mtl_tutorial.studies import RESULTS
from mtl_tutorial.studies.cli import (
    StudyParser,
    add_force,
    add_out,
    add_seeds,
    add_threads,
    apply_threads,
    positive_int,
    run,
    seeds_text,
    study_parser,
)
from mtl_tutorial.studies.paired import paired_difference
from mtl_tutorial.studies.provenance import provenance, run_provenance
from mtl_tutorial.studies.store import (
    check_summary,
    load_summary,
    merge_runs,
    refuse_other_config,
    save_summary,
)
from mtl_tutorial.weightings import make_weighting

ACTIONS: dict[str, tuple[int, int]] = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
# Four rooms of 3 x 3 cells joined by four doors (a miniature of Sutton, Precup & Singh's
# four-room world); the goals are the four corners.
FOUR_ROOMS: tuple[str, ...] = (
    "...#...",
    "...#...",
    ".......",
    "#.###.#",
    "...#...",
    ".......",
    "...#...",
)
FOUR_ROOMS_GOALS: tuple[tuple[int, int], ...] = ((0, 0), (0, 6), (6, 0), (6, 6))


class GridWorld:
    """Free cells, walls and goals; the deterministic transition table and the exact values.

    >>> world = GridWorld(("..#", "...", "..."), goals=[(0, 0)])
    >>> world.num_states, world.distances(0)[world.index[(0, 1)]].item()
    (8, 1)
    """

    def __init__(self, layout: Sequence[str] = FOUR_ROOMS, goals: Sequence[tuple[int, int]] = FOUR_ROOMS_GOALS) -> None:
        layout = tuple(layout)
        if not layout or any(len(row) != len(layout[0]) for row in layout) or not layout[0]:
            raise ValueError(f"layout must be a non-empty rectangle of equal-length strings, got {layout}")
        bad = {ch for row in layout for ch in row} - {".", "#"}
        if bad:
            raise ValueError(f"layout may contain only '.' (free) and '#' (wall), found {sorted(bad)}")
        self.layout = layout
        self.cells: list[tuple[int, int]] = [(r, c) for r, row in enumerate(layout) for c, ch in enumerate(row) if ch == "."]
        self.index = {cell: i for i, cell in enumerate(self.cells)}
        goals = [tuple(g) for g in goals]
        missing = [g for g in goals if g not in self.index]
        if not goals or missing:
            raise ValueError(f"every goal must be a free cell of the layout; not free: {missing or 'no goals given'}")
        if len(set(goals)) != len(goals):
            raise ValueError(f"goals must be distinct, got {goals}")
        self.goals: list[tuple[int, int]] = goals
        self.goal_states = torch.tensor([self.index[g] for g in goals])  # (G,)
        table = []
        for r, c in self.cells:
            row = []
            for dr, dc in ACTIONS.values():
                target = (r + dr, c + dc)
                row.append(self.index.get(target, self.index[(r, c)]))  # a wall or the edge: stay
            table.append(row)
        self.next_state = torch.tensor(table)  # (S, A)

    @property
    def num_states(self) -> int:
        return len(self.cells)

    @property
    def num_goals(self) -> int:
        return len(self.goals)

    def _goal_state(self, goal: int) -> int:
        if not 0 <= goal < self.num_goals:
            raise IndexError(f"goal {goal} does not exist; this world has goals 0..{self.num_goals - 1}: {self.goals}")
        return int(self.goal_states[goal])

    def distances(self, goal: int) -> Tensor:
        """Shortest number of moves from every state to goal ``goal`` (breadth-first search): ``(S,)``.

        Unreachable states get -1.
        """
        target = self._goal_state(goal)
        dist = torch.full((self.num_states,), -1, dtype=torch.long)
        dist[target] = 0
        queue = deque([target])
        while queue:  # moves are reversible (a wall blocks both ways), so search from the goal
            s = queue.popleft()
            for t in self.next_state[s].tolist():
                if dist[t] < 0:
                    dist[t] = dist[s] + 1
                    queue.append(t)
        return dist

    def value_iteration(self, goal: int, gamma: float = 0.9, tol: float = 1e-10, max_sweeps: int = 10_000) -> Tensor:
        r"""Exact $Q^*_g$ ``(S, A)``: iterate $Q \leftarrow -1 + \gamma\,[s' \ne g]\max_{a'} Q(s', a')$.

        The goal's own row is 0 (absorbing). Stops when no entry changes by more than ``tol``.
        """
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma must lie in (0, 1], got {gamma}")
        target = self._goal_state(goal)
        q = torch.zeros(self.num_states, len(ACTIONS), dtype=torch.float64)  # (S, A)
        not_done = (self.next_state != target).double()  # (S, A): 0 when the move reaches the goal
        for _ in range(max_sweeps):
            v = q.max(dim=1).values  # (S,)
            new = -1.0 + gamma * not_done * v[self.next_state]  # (S, A)
            new[target] = 0.0
            change = (new - q).abs().max().item()
            q = new
            if change <= tol:
                return q
        raise RuntimeError(f"value iteration did not converge in {max_sweeps} sweeps (is every state connected to the goal?)")

    def optimal_values(self, gamma: float = 0.9) -> Tensor:
        """$V^*$ for every goal, ``(G, S)``."""
        return torch.stack([self.value_iteration(g, gamma).max(dim=1).values for g in range(self.num_goals)])

    def greedy_rollouts(self, q: Tensor, max_steps: int | None = None) -> tuple[Tensor, Tensor]:
        """Follow ``argmax_a q[g, s]`` from every state towards every goal.

        ``q`` is ``(G, S, A)``. Returns ``(reached (G, S) bool, steps (G, S))``; ``steps`` counts moves
        until the goal (``max_steps``, by default the number of states, when it is not reached).
        """
        if q.shape != (self.num_goals, self.num_states, len(ACTIONS)):
            raise ValueError(f"q must have shape (G, S, A) = {(self.num_goals, self.num_states, len(ACTIONS))}, got {tuple(q.shape)}")
        max_steps = self.num_states if max_steps is None else max_steps
        actions = q.argmax(dim=2)  # (G, S)
        state = torch.arange(self.num_states).expand(self.num_goals, -1).clone()  # (G, S)
        steps = torch.zeros_like(state)
        done = state == self.goal_states[:, None]
        for _ in range(max_steps):
            move = self.next_state[state, actions.gather(1, state)]  # (G, S)
            state = torch.where(done, state, move)
            steps += (~done).long()
            done = state == self.goal_states[:, None]
        return done, steps

    def __repr__(self) -> str:
        return f"GridWorld({len(self.layout)}x{len(self.layout[0])}, {self.num_states} free cells, goals={self.goals})"


class SharedQNetwork(nn.Module):
    """One trunk $\\phi$ over the one-hot state, one linear head per goal: ``(B,) states -> (B, G, A)``."""

    def __init__(self, num_states: int, num_goals: int, hidden: int = 64) -> None:
        super().__init__()
        self.num_states = num_states
        self.trunk = nn.Sequential(nn.Linear(num_states, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(hidden, len(ACTIONS)) for _ in range(num_goals))

    def forward(self, states: Tensor) -> Tensor:
        features = self.trunk(nn.functional.one_hot(states, self.num_states).float())  # (B, hidden)
        return torch.stack([head(features) for head in self.heads], dim=1)  # (B, G, A)


class SeparateQNetworks(nn.Module):
    """One network per goal, each a trunk and a head as in :class:`SharedQNetwork`: ``(B,) -> (B, G, A)``."""

    def __init__(self, num_states: int, num_goals: int, hidden: int = 64) -> None:
        super().__init__()
        self.nets = nn.ModuleList(SharedQNetwork(num_states, 1, hidden) for _ in range(num_goals))

    def forward(self, states: Tensor) -> Tensor:
        return torch.cat([net(states) for net in self.nets], dim=1)  # (B, G, A)


MODELS: dict[str, type[nn.Module]] = {"shared": SharedQNetwork, "separate": SeparateQNetworks}


def make_q_network(name: str, num_states: int, num_goals: int, hidden: int = 64) -> nn.Module:
    """Build a registered Q-network by name; an unknown name lists the valid ones."""
    if name not in MODELS:
        raise KeyError(f"unknown Q-network {name!r}; valid ones are: {', '.join(MODELS)}")
    return MODELS[name](num_states, num_goals, hidden)


@dataclass(frozen=True)
class GridConfig:
    """One learner on one batch of transitions."""

    model: str = "shared"  # "shared" or "separate"
    num_transitions: int | None = None  # (s, a) drawn uniformly with replacement; None: each of the
    # S x A pairs once (160 in the four rooms), for every goal
    relabel: bool = True  # True: every goal learns from every transition; False: each from its 1/G share
    updates: int = 1500  # full-batch Adam updates
    target_every: int = 25  # copy the network into the target network every this many updates
    hidden: int = 64
    lr: float = 3e-3
    gamma: float = 0.9
    eval_every: int = 50
    seed: int = 0  # the transitions and the initialisation

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise KeyError(f"unknown Q-network {self.model!r}; valid ones are: {', '.join(MODELS)}")
        if min(self.num_transitions or 1, self.updates, self.target_every, self.hidden, self.eval_every) < 1:
            raise ValueError("num_transitions, updates, target_every, hidden and eval_every must be positive")
        if not 0 < self.gamma < 1:
            raise ValueError(f"gamma must lie in (0, 1) for fitted Q-iteration, got {self.gamma}")


def sample_transitions(world: GridWorld, num_transitions: int | None, seed: int, relabel: bool = True) -> Transitions:
    """``num_transitions`` uniform random (s, a) pairs, their s', and which goals may learn from each.

    Returns ``(states, actions, next_states, owner)``: three ``(N,)`` vectors and an ``(N, G)``
    mask. With ``relabel`` every goal learns from every transition; without it transition ``i``
    belongs to goal ``i mod G`` only, as if each task had collected its own share of the budget.
    ``None`` gives every (s, a) pair once, for every goal: the exhaustive batch, as much as a
    model-free learner can know about a deterministic world.
    """
    if num_transitions is None:
        states = torch.arange(world.num_states).repeat_interleave(len(ACTIONS))  # (S·A,)
        actions = torch.arange(len(ACTIONS)).repeat(world.num_states)  # (S·A,)
        owner = torch.ones(len(states), world.num_goals, dtype=torch.bool)  # (S·A, G)
        return Transitions(states, actions, world.next_state[states, actions], owner)
    generator = torch.Generator().manual_seed(seed)
    states = torch.randint(world.num_states, (num_transitions,), generator=generator)  # (N,)
    actions = torch.randint(len(ACTIONS), (num_transitions,), generator=generator)  # (N,)
    collector = torch.arange(num_transitions) % world.num_goals  # (N,)
    owner = torch.ones(num_transitions, world.num_goals, dtype=torch.bool) if relabel else \
        collector[:, None] == torch.arange(world.num_goals)[None, :]  # (N, G)
    return Transitions(states, actions, world.next_state[states, actions], owner)


def td_losses(q_net: nn.Module, target_net: nn.Module, world: GridWorld, transitions: Transitions,
              gamma: float) -> Tensor:
    r"""Each goal's mean squared TD error, ``(G,)``: $(Q_g(s,a) - (-1 + \gamma [s'\ne g] \max_{a'} \bar Q_g(s',a')))^2$.

    $L_g$ uses the transitions that goal $g$ owns, except those that start at $g$ (absorbing).
    """
    states, actions, next_states, owner = transitions
    goals = world.goal_states[None, :]  # (1, G)
    q = q_net(states)  # (N, G, A)
    q_taken = q.gather(2, actions[:, None, None].expand(-1, world.num_goals, 1)).squeeze(2)  # (N, G)
    with torch.no_grad():
        v_next = target_net(next_states).max(dim=2).values  # (N, G)
        target = -1.0 + gamma * (next_states[:, None] != goals).float() * v_next  # (N, G)
    valid = (owner & (states[:, None] != goals)).float()  # (N, G)
    squared = valid * (q_taken - target) ** 2  # (N, G)
    return squared.sum(0) / valid.sum(0).clamp(min=1)  # (G,)


class Transitions(NamedTuple):
    states: Tensor  # (N,)
    actions: Tensor  # (N,)
    next_states: Tensor  # (N,)
    owner: Tensor  # (N, G) bool: the goals whose loss uses the transition


@dataclass
class GridResult:
    config: GridConfig
    updates: list[int]  # when the metrics below were measured
    value_rmse: list[float]  # RMSE of max_a Q against V*, over goals and non-goal states
    success: list[float]  # fraction of (goal, start) pairs whose greedy path reaches the goal
    excess_steps: list[float]  # mean (steps - shortest distance) over the successful pairs
    coverage: float  # fraction of the (goal, s, a) triples present in the goals' own transitions
    parameters: int
    seconds: float
    q: Tensor  # the final Q-values (G, S, A)


def evaluate_q(world: GridWorld, q: Tensor, v_star: Tensor, distances: Tensor) -> tuple[float, float, float]:
    """``(value RMSE, greedy success rate, mean excess steps of the successes)`` of ``q (G, S, A)``."""
    not_goal = torch.ones(world.num_goals, world.num_states, dtype=torch.bool)  # (G, S)
    not_goal[torch.arange(world.num_goals), world.goal_states] = False
    rmse = ((q.max(dim=2).values.double() - v_star)[not_goal] ** 2).mean().sqrt().item()
    reached, steps = world.greedy_rollouts(q)
    ok = reached & not_goal
    excess = (steps - distances)[ok].double().mean().item() if ok.any() else float("nan")
    return rmse, ok.sum().item() / not_goal.sum().item(), excess


def train_gridworld(config: GridConfig, world: GridWorld | None = None) -> GridResult:
    """Fitted Q-iteration of a shared or a separate Q-network on one batch of transitions."""
    started = time.perf_counter()
    world = world or GridWorld()
    transitions = sample_transitions(world, config.num_transitions, config.seed, config.relabel)
    v_star = world.optimal_values(config.gamma)  # (G, S)
    distances = torch.stack([world.distances(g) for g in range(world.num_goals)])  # (G, S)
    torch.manual_seed(config.seed)
    q_net = make_q_network(config.model, world.num_states, world.num_goals, config.hidden)
    target_net = make_q_network(config.model, world.num_states, world.num_goals, config.hidden)
    weighting = make_weighting("equal", world.num_goals)
    optimizer = torch.optim.Adam(q_net.parameters(), lr=config.lr)
    all_states = torch.arange(world.num_states)
    log: dict[str, list] = {"updates": [], "value_rmse": [], "success": [], "excess_steps": []}
    for update in range(config.updates + 1):
        if update % config.eval_every == 0 or update == config.updates:
            with torch.no_grad():
                q = q_net(all_states).transpose(0, 1)  # (G, S, A)
            for key, value in zip(("value_rmse", "success", "excess_steps"), evaluate_q(world, q, v_star, distances)):
                log[key].append(value)
            log["updates"].append(update)
        if update == config.updates:
            break
        if update % config.target_every == 0:
            target_net.load_state_dict(q_net.state_dict())
        losses = td_losses(q_net, target_net, world, transitions, config.gamma)  # (G,)
        optimizer.zero_grad()
        weighting(losses).backward()
        optimizer.step()
    seen = torch.zeros(world.num_goals, world.num_states, len(ACTIONS), dtype=torch.bool)  # (G, S, A)
    goal, i = torch.nonzero(transitions.owner.T, as_tuple=True)
    seen[goal, transitions.states[i], transitions.actions[i]] = True
    return GridResult(config=config, **log, coverage=seen.float().mean().item(),
                      parameters=sum(p.numel() for p in q_net.parameters()),
                      seconds=time.perf_counter() - started, q=q)


def parameter_matched_hidden(world: GridWorld, hidden: int = 64) -> int:
    """The widest trunk for :class:`SeparateQNetworks` with no more parameters than a shared one of ``hidden``."""
    def count(name: str, h: int) -> int:
        return sum(p.numel() for p in make_q_network(name, world.num_states, world.num_goals, h).parameters())

    budget = count("shared", hidden)
    return max(h for h in range(1, hidden + 1) if count("separate", h) <= budget)


def learners(world: GridWorld, hidden: int = 64) -> dict[str, dict]:
    """The three learners compared: ``{label: GridConfig options}``."""
    return {"shared": {"model": "shared", "hidden": hidden},
            "separate": {"model": "separate", "hidden": hidden},
            "separate, same parameters": {"model": "separate", "hidden": parameter_matched_hidden(world, hidden)}}


def gridworld_sweep(sizes: Sequence[int | None], seeds: Sequence[int], world: GridWorld | None = None,
                    **options) -> list[dict]:
    """Every learner of :func:`learners` for every number of transitions and seed; one record per run."""
    world = world or GridWorld()
    compared = learners(world, options.pop("hidden", 64))
    records = []
    for size in sizes:
        for seed in seeds:
            for label, learner in compared.items():
                r = train_gridworld(GridConfig(num_transitions=size, seed=seed, **learner, **options), world)
                records.append({"learner": label, "hidden": r.config.hidden, "num_transitions": size, "seed": seed,
                                "coverage": r.coverage, "parameters": r.parameters, "updates": r.updates,
                                "value_rmse": r.value_rmse, "success": r.success, "excess_steps": r.excess_steps,
                                "seconds": round(r.seconds, 3)})
    return records


def summarise_gridworld(records: Sequence[dict], baseline: str = "shared") -> list[dict]:
    """Per number of transitions and learner: final success and value RMSE, paired against ``baseline``."""
    rows = []
    for size in dict.fromkeys(r["num_transitions"] for r in records):
        runs = {}
        for r in records:
            if r["num_transitions"] == size:
                runs.setdefault(r["learner"], {})[r["seed"]] = r
        for label, by_seed in runs.items():
            if label == baseline:
                continue
            seeds = sorted(set(runs[baseline]) & set(by_seed))
            row = {"num_transitions": size, "a": baseline, "b": label, "seeds": seeds}
            for metric in ("success", "value_rmse"):
                row[metric] = paired_difference([runs[baseline][s][metric][-1] for s in seeds],
                                                [by_seed[s][metric][-1] for s in seeds])
            rows.append(row)
    return rows


SIZES: tuple[int | None, ...] = (40, 80, 160, None)  # None: every (s, a) pair once
COMMAND = "python -m mtl_tutorial.studies.gridworld"
LEARNERS = ("shared", "separate", "separate, same parameters")  # the labels of learners(), in order


def run_key(record: dict) -> tuple[float, int, int]:
    """Where a run sits in the summary: (transitions, 'all' last; seed; learner), in that order."""
    size = record["num_transitions"]
    return (float("inf") if size is None else size, record["seed"], LEARNERS.index(record["learner"]))


def transitions(text: str) -> int | None:
    """argparse type: a positive number of transitions, or ``all`` (every (s, a) pair once) -> None."""
    if text == "all":
        return None
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive number of transitions or 'all', got {text!r}") from None


def mergeable_summary(out: Path, config: dict, world: dict) -> dict | None:
    """The summary stored at ``out`` (None if there is none); one of another config or world is refused."""
    stored = load_summary(out)
    if stored is not None:
        refuse_other_config(out, len(stored.get("runs", [])), {**stored.get("config", {}), "world": stored.get("world")},
                            {**config, "world": world})
    return stored


def gridworld_study(sizes: Sequence[int | None] = SIZES, seeds: Sequence[int] = range(10),
                    out: str | Path = RESULTS / "domains_gridworld.json", updates: int = GridConfig.updates,
                    threads: int | None = 1, force: bool = False) -> dict:
    """Run :func:`gridworld_sweep` in the four rooms and write the summary to ``out``; return it.

    The summary never shrinks: when ``out`` holds a summary of the same config and world, its
    runs and this call's are merged (this call's replace those of the same :func:`run_key`) and
    the summary is recomputed from all of them; a summary of another config is refused before
    any training, unless ``force``, which replaces it with this call's runs. Every run
    names the call that trained it (``run["trained"]``, a key of ``"trainings"``).
    """
    sizes, seeds = list(dict.fromkeys(sizes)), sorted(set(seeds))
    if not sizes or not seeds or any(n is not None and n < 1 for n in sizes):
        raise ValueError(f"give positive numbers of transitions (or None for all) and seeds, got {sizes}, {seeds}")
    out = Path(out)
    config = asdict(GridConfig(updates=updates))
    world = {"layout": list(FOUR_ROOMS), "goals": list(FOUR_ROOMS_GOALS)}
    shown = " ".join("all" if n is None else str(n) for n in sizes)
    command = (f"{COMMAND} --sizes {shown} --seeds {seeds_text(seeds)}"
               + (f" --updates {updates}" if updates != GridConfig.updates else "")
               + (f" --threads {threads}" if threads else ""))
    stored = None if force else mergeable_summary(out, config, world)
    this_call = {(label, n, s) for label in LEARNERS for n in sizes for s in seeds}
    kept = {(r["learner"], r["num_transitions"], r["seed"]) for r in (stored or {}).get("runs", [])}
    check_summary(out, len(kept | this_call), force, rerun=f"`{COMMAND}` with every seed")
    apply_threads(threads)
    started = time.perf_counter()
    training = run_provenance() | {"command": command}
    records = gridworld_sweep(sizes, seeds, updates=updates)
    stored = None if force else mergeable_summary(out, config, world)  # again: another call may have written
    runs, trainings = merge_runs(stored, records, run_key, training)
    runs.sort(key=run_key)
    prov = provenance("domains_gridworld", started, threads, sorted({r["seed"] for r in runs}), command)
    prov["training_time_s"] = round(sum(r["seconds"] for r in runs), 1)  # every run the summary holds
    prov["run_commits"] = sorted({t.get("git_commit", "not recorded") for t in trainings.values()})
    result = {"provenance": prov, "config": config, "world": world, "summary": summarise_gridworld(runs),
              "runs": runs, "trainings": trainings}
    save_summary(out, result, force, rerun=f"`{COMMAND}` with every seed")
    return result


def make_parser() -> StudyParser:
    parser = study_parser("gridworld", __doc__)
    parser.add_argument("--sizes", type=transitions, nargs="+", default=list(SIZES),
                        help="transitions per run, relabelled for every goal; 'all': each (s, a) pair once "
                             "(default: 40 80 160 all)")
    add_seeds(parser, default=range(10))
    parser.add_argument("--updates", type=positive_int, default=GridConfig.updates,
                        help="full-batch Adam updates per run (default: %(default)s; fewer for a quick try)")
    add_threads(parser, default=1)
    add_out(parser, "domains_gridworld.json")
    add_force(parser)
    return parser


def _interval(v: dict) -> str:
    return "one seed, no interval" if v["ci95"] is None else f"95% CI {v['ci95'][0]:+.3f} .. {v['ci95'][1]:+.3f}"


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    result = gridworld_study(args.sizes, args.seeds, args.out, args.updates, args.threads, args.force)
    for row in result["summary"]:
        s, v = row["success"], row["value_rmse"]
        print(f"N={row['num_transitions'] or 'all'}: success {row['a']} {100 * s['mean_a']:.1f}%, {row['b']} "
              f"{100 * s['mean_b']:.1f}%; value RMSE {v['mean_a']:.3f} vs {v['mean_b']:.3f} "
              f"(paired difference {v['mean']:+.3f}, {_interval(v)})")
    print(f"wrote {args.out}: {len(result['runs'])} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
