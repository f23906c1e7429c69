"""What each aggregator promises, checked on a seeded bank of Jacobians (table-driven over the registry)."""

from __future__ import annotations

import math

import pytest
import torch

from mtl_tutorial.aggregators import (
    AGGREGATORS,
    CAGrad,
    GradDrop,
    NashMTL,
    PCGrad,
    UPGrad,
    make_aggregator,
)
from mtl_tutorial.aggregators._solvers import MAX_TASKS, cosine_gramian, min_norm_point, unit_rows
from mtl_tutorial.aggregators.cagrad import cagrad_direction, cagrad_two_tasks
from mtl_tutorial.aggregators.imtl_g import imtl_g_direction, imtl_g_two_tasks
from mtl_tutorial.aggregators.mgda import mgda_direction, mgda_two_tasks
from mtl_tutorial.aggregators.nash_mtl import nash_weights
from mtl_tutorial.aggregators.upgrad import upgrad_direction

NAMES = list(AGGREGATORS)
NON_CONFLICTING = {"mgda", "upgrad", "nash_mtl"}  # J d >= 0 is guaranteed (CAGrad's is not: see below)
ORDER_INVARIANT = set(NAMES) - {"pcgrad"}  # PCGrad projects in a random order
LINEAR_UNDER_SCALING = {"mean", "upgrad"}  # A(diag(c) J) is linear in c > 0
HOMOGENEOUS = set(NAMES) - {"nash_mtl"}  # A(s J) = s A(J) for s > 0; Nash-MTL: A(s J) = A(J)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def jacobian_bank() -> list[tuple[str, torch.Tensor]]:
    """Named Jacobians: T from 1 to 8, n up to 10,000, zeros, duplicates, rank one, scales 1e-10..1e10."""
    g = seeded(0)

    def rows(T: int, n: int) -> torch.Tensor:
        return torch.randn(T, n, generator=g)

    bank = [(f"gaussian T={T} n={n}", rows(T, n)) for T in (1, 2, 3, 5, 8) for n in (2, 7, 10_000)]
    J = rows(4, 50)
    J[1] = 0
    bank += [("one zero row", J), ("all zero", torch.zeros(3, 5))]
    J = rows(4, 30)
    J[2] = J[0]
    bank.append(("duplicated row", J))
    J = rows(5, 30)
    J[3] = J[4] = J[1]
    bank.append(("row three times", J))
    v = rows(1, 40)
    bank.append(("rank one, both signs", torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) * v))
    bank.append(("rank one, aligned", torch.tensor([[1.0], [2.0], [0.5]]) * v))
    J = rows(2, 20)
    bank.append(("two opposite rows", torch.stack([J[0], -J[0]])))
    bank.append(("opposite rows and a third", torch.stack([J[0], -J[0], J[1]])))
    for k in (-10, -8, 8, 10):
        bank.append((f"all rows x 1e{k}", rows(3, 100) * 10.0**k))
        J = rows(3, 100)
        J[0] *= 10.0**k
        bank.append((f"row 0 of 3 x 1e{k}", J))
        J = rows(2, 100)
        J[1] *= 10.0**k
        bank.append((f"row 1 of 2 x 1e{k}", J))
    bank.append(("rows x 1e-10 .. 1e10", rows(5, 60) * (10.0 ** torch.tensor([-10.0, -5, 0, 5, 10]))[:, None]))
    base = rows(1, 100)
    bank.append(("aligned", base + 0.1 * rows(6, 100)))
    bank.append(("conflicting", torch.cat([base, -0.9 * base + 0.1 * rows(1, 100), -0.5 * base + 0.3 * rows(1, 100)])))
    J = rows(2, 100)
    J[1] = -1e-8 * J[0] + 1e-9 * rows(1, 100)[0]
    bank.append(("conflicting row x 1e-8", J))
    bank.append(("T=8 rows in R^2", rows(8, 2)))
    bank.append(("T=8 n=10000 scales 1e-10 .. 1e10", rows(8, 10_000) * (10.0 ** torch.linspace(-10, 10, 8))[:, None]))
    bank.append(("float64", rows(4, 9).double()))
    return bank


BANK = jacobian_bank()


def aggregate(name: str, J: torch.Tensor, seed: int = 0) -> torch.Tensor:
    return make_aggregator(name)(J, generator=seeded(seed))


def conflicts(J: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """(J d)_i below rounding: -||g_i|| (1e-6 ||d|| + 1e-13 max_j ||g_j||), float32 output included."""
    J, d = J.double(), d.double()
    norms = J.norm(dim=1)
    tolerance = norms * (1e-6 * d.norm() + 1e-13 * norms.max())
    return (J @ d) < -tolerance


def close(a: torch.Tensor, b: torch.Tensor, J: torch.Tensor, rtol: float = 1e-5) -> bool:
    """a == b up to rtol relative to the size of the rows (directions can be much shorter than rows)."""
    scale = J.double().norm(dim=1).max().item()
    return torch.allclose(a.double(), b.double(), rtol=rtol, atol=rtol * scale + 1e-30)


# ------------------------------------------------------------------ properties on the whole bank
@pytest.mark.parametrize("name", NAMES)
def test_finite_output_of_the_right_shape_and_dtype(name):
    for case, J in BANK:
        d = aggregate(name, J)
        assert d.shape == (J.shape[1],) and d.dtype == J.dtype, case
        assert torch.isfinite(d).all(), f"{name} on {case}"


@pytest.mark.parametrize("name", sorted(NON_CONFLICTING))
def test_no_conflict_where_guaranteed(name):
    for case, J in BANK:
        bad = conflicts(J, aggregate(name, J))
        assert not bad.any(), f"{name} conflicts with rows {bad.nonzero().flatten().tolist()} on {case}"


@pytest.mark.parametrize("name", sorted(ORDER_INVARIANT))
def test_invariant_to_the_order_of_the_rows(name):
    for case, J in BANK:
        order = torch.randperm(J.shape[0], generator=seeded(1))
        assert close(aggregate(name, J[order]), aggregate(name, J), J), f"{name} on {case}"


@pytest.mark.parametrize("name", sorted(LINEAR_UNDER_SCALING))
def test_linear_under_scaling_of_the_rows(name):
    for case, J in BANK:
        J = J.double()
        c1 = torch.rand(J.shape[0], generator=seeded(2), dtype=J.dtype) + 0.1
        c2 = torch.rand(J.shape[0], generator=seeded(3), dtype=J.dtype) + 0.1
        combined = aggregate(name, (2 * c1 + 3 * c2)[:, None] * J)
        separate = 2 * aggregate(name, c1[:, None] * J) + 3 * aggregate(name, c2[:, None] * J)
        assert close(combined, separate, 5 * J), f"{name} on {case}"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scale", [1e-8, 1e8])
def test_positive_scaling(name, scale):
    """Homogeneous methods scale with J; Nash-MTL ignores the scale. Nothing collapses to 0."""
    for case, J in BANK:
        J = J.double()
        d, scaled = aggregate(name, J), aggregate(name, scale * J)
        if name in HOMOGENEOUS:
            assert close(scaled / scale, d, J, rtol=1e-7), f"{name} on {case} x {scale}"
        else:
            assert close(scaled, d, J / J.norm(dim=1, keepdim=True).clamp(min=1e-300), rtol=1e-7), case


def test_nash_mtl_ignores_the_scale_of_each_row():
    for case, J in BANK:
        c = 10.0 ** torch.linspace(-6, 6, J.shape[0], dtype=torch.float64)
        J = J.double()
        assert close(aggregate("nash_mtl", c[:, None] * J), aggregate("nash_mtl", J), J), case


@pytest.mark.parametrize("name", NAMES)
def test_one_task(name):
    """With one task every method follows its gradient (Nash-MTL: the unit gradient)."""
    g = torch.tensor([[3.0, -4.0]])
    expected = g[0] / 5 if name == "nash_mtl" else g[0]
    torch.testing.assert_close(aggregate(name, g), expected)


# ------------------------------------------------------------------ pinned values by hand
# g1 = (1, 0), g2 = (-1, 1): g1 . g2 = -1, the two tasks conflict; ||g1|| = 1, ||g2|| = sqrt 2.
HAND = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
S2 = math.sqrt(2)
PINNED = {
    # (g1 + g2) / 2
    "mean": (0.0, 0.5),
    # gamma = (g2 - g1) . g2 / ||g1 - g2||^2 = (-2, 1) . (-1, 1) / 5 = 3 / 5; d = 0.6 g1 + 0.4 g2
    "mgda": (0.2, 0.4),
    # g1 - (g1 . g2 / ||g2||^2) g2 = (1, 0) + (-1, 1) / 2 = (0.5, 0.5); g2 - (g2 . g1) g1 = (0, 1); sum
    "pcgrad": (0.5, 1.5),
    # g0 = (0, 0.5), sqrt(phi) = 0.5 * 0.5. Dual over w = (1 - t, t): F(t) = t / 2 + sqrt(5t^2 - 4t + 1) / 4,
    # F'(0) = 1/2 - 1 < 0 ... stationary where 10t - 4 = -4 sqrt(5t^2 - 4t + 1): t = 0, so g_w = g1 and
    # d = g0 + 0.25 g1 = (0.25, 0.5); / (1 + c) = (1/6, 1/3). Check: g1 . d = g2 . d = 1/6 (max-min).
    "cagrad": (1 / 6, 1 / 3),
    # d = a1 g1 + a2 g2 with a1 + a2 = 1 and u1 . d = u2 . d: 1 - 2 a2 = (3 a2 - 1) / sqrt 2,
    # a2 = 1 / (1 + sqrt 2) = sqrt 2 - 1, so d = (a1 - a2, a2) = (3 - 2 sqrt 2, sqrt 2 - 1)
    "imtl_g": (3 - 2 * S2, S2 - 1),
    # beta = 1 / sqrt(1 + cos) with cos = -1 / sqrt 2 for both unit rows; d = beta (u1 + u2)
    "nash_mtl": tuple(x / math.sqrt(1 - 1 / S2) for x in (1 - 1 / S2, 1 / S2)),
    # pi(g1) = (0.5, 0.5) (onto g2 . x = 0), pi(g2) = (0, 1) (onto x1 = 0); their mean
    "upgrad": (0.25, 0.75),
}


@pytest.mark.parametrize("name", sorted(set(NAMES) - {"graddrop"}))
def test_pinned_values_on_a_hand_checked_jacobian(name):
    torch.testing.assert_close(aggregate(name, HAND), torch.tensor(PINNED[name]), rtol=1e-6, atol=1e-6)


def test_pinned_values_with_three_tasks():
    # orthogonal rows e1, e2, 2 e3: MGDA's weights are proportional to 1 / ||g_i||^2 = (1, 1, 1/4),
    # w = (4, 4, 1) / 9, d = (4/9, 4/9, 2/9); every g_i . d = 4/9 = ||d||^2.
    J = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 2]])
    torch.testing.assert_close(aggregate("mgda", J), torch.tensor([4 / 9, 4 / 9, 2 / 9]))
    # IMTL-G: equal projections beta on u_i and sum alpha = beta (1 + 1 + 1/2) = 1: beta = 2/5
    torch.testing.assert_close(aggregate("imtl_g", J), torch.tensor([0.4, 0.4, 0.4]))
    # Nash-MTL: C = I, beta = 1 / beta so beta = 1: d = u1 + u2 + u3
    torch.testing.assert_close(aggregate("nash_mtl", J), torch.tensor([1.0, 1.0, 1.0]))
    # no conflict: UPGrad and PCGrad are the mean and the sum
    torch.testing.assert_close(aggregate("upgrad", J), J.mean(0))
    torch.testing.assert_close(aggregate("pcgrad", J), J.sum(0))


def test_graddrop_keeps_positive_entries_with_probability_the_sign_purity():
    # column 0: entries 1 and -3, purity (1 + (1 - 3) / 4) / 2 = 0.25 -> d_0 = 1 w.p. 0.25, else -3
    # column 1: entries 2 and 2 agree -> purity 1 -> d_1 = 4 always
    J = torch.tensor([[1.0, 2.0], [-3.0, 2.0]])
    d = GradDrop().batch(J.expand(4000, 2, 2), generator=seeded(0))
    assert (d[:, 1] == 4).all()
    assert set(d[:, 0].tolist()) == {1.0, -3.0}
    assert (d[:, 0] == 1).float().mean().item() == pytest.approx(0.25, abs=0.03)


# ------------------------------------------------------------------ exactness and cross-checks
def two_row_cases():
    return [(case, J) for case, J in BANK if J.shape[0] == 2]


def test_mgda_on_two_rows_equals_the_closed_form_and_the_general_solver():
    for case, J in two_row_cases():
        g1, g2 = J.double()
        diff = g1 - g2
        gamma = 0.5 if diff.norm() == 0 else ((g2 - g1) @ g2 / (diff @ diff)).clamp(0, 1)
        reference = gamma * g1 + (1 - gamma) * g2  # REFERENCE.md's formula, written out again
        torch.testing.assert_close(aggregate("mgda", J.double()), reference, msg=case)
        general = mgda_direction(J.double()[None])[0]
        assert close(general, reference, J, rtol=1e-7), case
        assert close(mgda_two_tasks(J[None])[0], reference, J, rtol=1e-12), case


def test_mgda_satisfies_its_optimality_conditions():
    """d is the min-norm point of the hull iff d is in the hull and g_i . d >= ||d||^2 for all i."""
    for case, J in BANK:
        J = J.double()
        d = aggregate("mgda", J)
        norms = J.norm(dim=1)
        slack = J @ d - d @ d  # >= 0
        assert (slack >= -1e-9 * norms * norms.max()).all(), case


def test_min_norm_solver_is_exact_on_a_random_hull():
    g = seeded(4)
    for T in range(2, 9):
        J = torch.randn(T, 3, generator=g, dtype=torch.float64) + 2.0  # 0 outside the hull
        norms, directions = unit_rows(J[None])
        u = min_norm_point(cosine_gramian(directions), norms.max() / norms)[0]
        w = u * norms.max() / norms[0]  # weights on the rows
        d = norms.max() * (u @ directions[0])
        assert w.min() >= 0 and w.sum().item() == pytest.approx(1.0)
        assert (J @ d >= d @ d - 1e-12).all()  # KKT: the point is optimal


def test_upgrad_on_two_rows_is_half_of_pcgrad_and_matches_the_general_solver():
    for case, J in two_row_cases():
        J = J.double()
        upgrad = aggregate("upgrad", J)
        assert close(upgrad, aggregate("pcgrad", J) / 2, J, rtol=1e-9), case
        assert close(upgrad_direction(J[None])[0], upgrad, J, rtol=1e-9), case


def test_upgrad_projections_match_nonnegative_least_squares():
    optimize = pytest.importorskip("scipy.optimize")
    for case, J in BANK:
        if not 3 <= J.shape[0] <= 5 or J.shape[1] > 100 or J.abs().max() > 1e3 or J.abs().max() < 1e-3:
            continue
        J = J.double()
        projections = []
        for g in J:  # pi_K(g) = g + J^T mu, mu = argmin_{mu >= 0} ||J^T mu + g||
            mu, _ = optimize.nnls(J.T.numpy(), -g.numpy())
            projections.append(g + J.T @ torch.from_numpy(mu))
        assert close(aggregate("upgrad", J), torch.stack(projections).mean(0), J, rtol=1e-8), case


def test_imtl_g_matches_the_papers_closed_form():
    g = seeded(5)
    for T in (2, 3, 5):
        J = torch.randn(T, 8, generator=g, dtype=torch.float64) * torch.rand(T, 1, generator=g, dtype=torch.float64)
        units = J / J.norm(dim=1, keepdim=True)
        D = J[0] - J[1:]  # rows g_1 - g_t
        U = units[0] - units[1:]  # rows u_1 - u_t
        alpha_rest = J[0] @ U.T @ torch.linalg.inv(D @ U.T)  # alpha_{2:T} = g_1 U^T (D U^T)^-1
        alpha = torch.cat([1 - alpha_rest.sum(0, keepdim=True), alpha_rest])
        torch.testing.assert_close(aggregate("imtl_g", J), alpha @ J)
        d = aggregate("imtl_g", J)
        projections = units @ d
        torch.testing.assert_close(projections, projections[:1].expand(T))  # impartial
        if T == 2:
            torch.testing.assert_close(imtl_g_direction(J[None])[0], imtl_g_two_tasks(*unit_rows(J[None]))[0])


def test_nash_mtl_solves_its_bargaining_equations():
    """With alpha_i = 1 / (g_i . d): alpha > 0 and J^T alpha = d, i.e. (G alpha)_i = 1 / alpha_i."""
    for case, J in BANK:
        J = J.double()
        d = aggregate("nash_mtl", J)
        rows = J[J.norm(dim=1) > 0]
        if len(rows) == 0:
            assert (d == 0).all()
            continue
        if d.norm() == 0:  # no bargain: 0 is in the hull of the rows
            u = min_norm_point(cosine_gramian(unit_rows(rows[None])[1]), torch.ones(1, len(rows), dtype=J.dtype))
            assert (u @ cosine_gramian(unit_rows(rows[None])[1]) @ u.mT).item() < 1e-10, case
            continue
        gains = rows @ d
        assert (gains > 0).all(), case
        assert close(rows.T @ (1 / gains), d, rows / rows.norm(dim=1, keepdim=True), rtol=1e-7), case


def test_nash_mtl_closed_form_for_two_tasks_equals_newton():
    for case, J in two_row_cases():
        norms, directions = unit_rows(J[None])
        C = cosine_gramian(directions)
        if (norms == 0).any() or 1 + C[0, 0, 1] < 1e-6:
            continue
        beta = nash_weights(C)[0]
        torch.testing.assert_close(aggregate("nash_mtl", J.double()), beta @ directions[0], msg=case)


def test_cagrad_solves_its_dual_exactly():
    """Primal value min_i g_i . d of our d equals the dual optimum found by SLSQP, and d is in the ball."""
    optimize = pytest.importorskip("scipy.optimize")
    c = 0.5
    for case, J in BANK:
        if J.shape[1] > 100 or J.abs().max() > 1e3 or J.abs().max() < 1e-3 or (J.norm(dim=1) == 0).any():
            continue
        J = J.double()
        G = (J @ J.T).numpy()
        T = len(G)
        g0 = J.mean(0)
        b, sqrt_phi = (J @ g0).numpy(), c * g0.norm().item()

        def dual(w, b=b, G=G, sqrt_phi=sqrt_phi):
            return w @ b + sqrt_phi * math.sqrt(max(w @ G @ w, 0.0))

        starts = [torch.full((T,), 1 / T)] + [0.9 * torch.eye(T)[i] + 0.1 / T for i in range(T)]
        best = min(
            optimize.minimize(dual, w.numpy(), method="SLSQP", bounds=[(0, 1)] * T, options={"ftol": 1e-15},
                              constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}]).fun
            for w in starts
        )
        d = (1 + c) * aggregate("cagrad", J)
        assert (d - g0).norm().item() <= sqrt_phi * (1 + 1e-9) + 1e-12, case
        assert (J @ d).min().item() == pytest.approx(best, abs=1e-8 * J.norm(dim=1).max().item() ** 2), case


def test_cagrad_closed_form_for_two_tasks_equals_the_general_solver():
    g = seeded(10)
    cases = two_row_cases() + [(f"random {k}", torch.randn(2, 3, generator=g) * torch.rand(2, 1, generator=g)) for k in range(30)]
    cases.append(("zero row", torch.tensor([[0.0, 0.0], [1.0, 2.0]])))
    for case, J in cases:
        J = J.double()
        for c in (0.2, 0.5, 2.0):
            general = cagrad_direction(J[None], c)[0]
            assert close(cagrad_two_tasks(J[None], c)[0], general, J, rtol=1e-9), (case, c)


def test_cagrad_limits():
    J = torch.randn(3, 6, generator=seeded(6), dtype=torch.float64)
    torch.testing.assert_close(CAGrad(c=0.0)(J), J.mean(0))  # c = 0 is the mean
    same = J[:1].expand(4, 6)
    torch.testing.assert_close(CAGrad(c=0.5)(same), J[0])  # agreeing rows: the mean, thanks to / (1 + c)
    torch.testing.assert_close(CAGrad(c=0.5)(torch.stack([J[0], -J[0]])), torch.zeros(6, dtype=J.dtype))


def test_cagrad_can_conflict_when_no_direction_in_its_ball_helps_every_task():
    """REFERENCE.md lists CAGrad as non-conflicting; it is not. With g0 = (-0.5, 0.05) the ball of
    radius 0.25 around g0 lies in x1 < 0, where g1 = (1, 0) gets worse: CAGrad trades task 1 away."""
    J = torch.tensor([[1.0, 0.0], [-2.0, 0.1]])
    d = CAGrad(c=0.5)(J)
    assert (J[0] @ d).item() < 0
    assert not conflicts(J, aggregate("mgda", J)).any()


def test_robust_where_torchjd_fails():
    """torchjd 0.18: MGDA conflicts when a row is scaled by 1e-8; CAGrad returns exactly 0 at 1e-8/1e8."""
    g = seeded(7)
    for _ in range(20):
        J = torch.randn(3, 50, generator=g)
        J[torch.randint(3, (1,), generator=g)] *= 1e-8
        assert not conflicts(J, aggregate("mgda", J)).any()
        for scale in (1e-8, 1e8):
            d = aggregate("cagrad", scale * J)
            assert d.abs().max() > 0 and torch.isfinite(d).all()
            torch.testing.assert_close(d / scale, aggregate("cagrad", J), rtol=1e-4, atol=1e-12)


# ------------------------------------------------------------------ randomness
@pytest.mark.parametrize("name", ["pcgrad", "graddrop"])
def test_randomness_only_through_the_generator(name):
    J = torch.randn(5, 40, generator=seeded(8))
    J[1] = -J[0] + 0.1 * J[1]
    assert torch.equal(aggregate(name, J, seed=3), aggregate(name, J, seed=3))
    outputs = {tuple(aggregate(name, J, seed=s).tolist()) for s in range(10)}
    assert len(outputs) > 1  # the order (PCGrad) or the mask (GradDrop) does depend on the draw


def test_batch_equals_one_by_one():
    Js = torch.randn(4, 3, 6, generator=seeded(9))
    for name in sorted(set(NAMES) - {"pcgrad", "graddrop"}):
        agg = make_aggregator(name)
        torch.testing.assert_close(agg.batch(Js), torch.stack([agg(J) for J in Js]), msg=name)
    torch.testing.assert_close(PCGrad().batch(Js[:, :2]), torch.stack([PCGrad()(J) for J in Js[:, :2]]))


# ------------------------------------------------------------------ errors
def test_bad_input_names_the_problem_and_the_fix():
    agg = UPGrad()
    with pytest.raises(ValueError, match=r"shape \(T, n\).*got shape \(4,\).*task_jacobian"):
        agg(torch.ones(4))
    with pytest.raises(ValueError, match=r"got shape \(2, 3, 4\).*\.batch\(\)"):
        agg(torch.ones(2, 3, 4))
    with pytest.raises(TypeError, match=r"floating-point.*torch.int64.*J.float\(\)"):
        agg(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor"):
        agg([[1.0, 2.0]])
    with pytest.raises(ValueError, match="at least one task"):
        agg(torch.ones(0, 3))
    J = torch.ones(3, 4)
    J[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"row 2 of the Jacobian \(task 2\) contains NaN.*lower the learning rate"):
        agg(J)
    J[2, 1] = float("inf")
    with pytest.raises(ValueError, match="row 2 .* infinite"):
        agg(J)
    Js = torch.ones(2, 3, 4)
    Js[1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="matrix 1, row 0"):
        agg.batch(Js)
    with pytest.raises(ValueError, match=f"at most {MAX_TASKS} tasks"):
        make_aggregator("mgda")(torch.randn(MAX_TASKS + 1, 3))


def test_registry_and_errors():
    assert all(isinstance(make_aggregator(n), AGGREGATORS[n]) for n in NAMES)
    assert make_aggregator("cagrad", c=0.4).c == 0.4
    assert repr(make_aggregator("cagrad", c=0.4)) == "CAGrad(c=0.4)" and repr(make_aggregator("mgda")) == "MGDA()"
    with pytest.raises(KeyError, match="valid aggregators are: " + ", ".join(NAMES)):
        make_aggregator("pcgrad2")
    with pytest.raises(TypeError, match="'mgda' has no option 'c'; its options are: none"):
        make_aggregator("mgda", c=0.5)
    with pytest.raises(TypeError, match="its options are: c"):
        make_aggregator("cagrad", alpha=0.5)
    with pytest.raises(ValueError, match="finite and >= 0, got -1"):
        CAGrad(c=-1)
    assert isinstance(NashMTL(max_iterations=5), NashMTL)


@pytest.mark.parametrize("c", [float("inf"), float("nan"), -1e-9])
def test_cagrad_refuses_a_radius_that_gives_no_direction(c):
    with pytest.raises(ValueError, match=rf"radius c must be finite and >= 0, got {c}"):
        CAGrad(c=c)


def test_an_infinite_radius_would_give_nan():  # why c = inf is refused: the mean direction scaled by inf / inf
    J = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert torch.isfinite(CAGrad(c=1e300)(J)).all()
    assert torch.isnan(cagrad_two_tasks(J[None], float("inf"))).any()


@pytest.mark.parametrize("iterations", [0, -3, 2.5, True, None])
def test_nash_mtl_refuses_iterations_that_are_not_a_positive_integer(iterations):
    with pytest.raises(ValueError, match=rf"max_iterations \(Newton steps\) must be an integer >= 1, got {iterations}"):
        NashMTL(max_iterations=iterations)
    with pytest.raises(ValueError, match="max_iterations"):
        nash_weights(torch.eye(3)[None], max_iterations=iterations)
