"""The method-overhead benchmark: its harness, and torchjd 0.18 side by side (skipped without torchjd)."""

import json

import pytest
import torch

from mtl_tutorial.aggregators import AGGREGATORS, make_aggregator
from mtl_tutorial.batching import TaskStream
from mtl_tutorial.models import MultiTaskModel
from mtl_tutorial.step import train_step
from mtl_tutorial.studies import bench, bench_methods
from mtl_tutorial.studies.bench_methods import (
    BASELINE,
    Configuration,
    interleaved_timings,
    method_configurations,
    overhead_rows,
)
from mtl_tutorial.tasks import TASKS
from mtl_tutorial.weightings import WEIGHTINGS, Equal, Static

TASK_LIST = list(TASKS.values())


def prepared(tiny_data, count=3, batch_size=8):
    streams = {n: TaskStream(tiny_data["train"][n], batch_size, seed=0) for n in TASKS}
    return [{n: s.next() for n, s in streams.items()} for _ in range(count)]


def model_for(config, dropout=None, seed=0):
    if dropout is not None:
        config = config.__class__(**{**config.__dict__, "dropout": dropout})
    torch.manual_seed(seed)
    return MultiTaskModel(config, TASK_LIST, 400)


# ------------------------------------------------------------------ the harness (no torchjd needed)
def test_every_aggregator_and_weighting_is_timed_against_the_equal_step(tiny_data, tiny_model_config):
    model = model_for(tiny_model_config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    configs, notes = method_configurations(model, TASK_LIST, optimizer)
    names = [c.name for c in configs]
    assert names[0] == BASELINE and notes == []
    assert {c.method for c in configs if c.kind == "aggregator"} == set(AGGREGATORS)
    assert {c.method for c in configs if c.kind == "weighting"} == set(WEIGHTINGS) - {"equal"}
    weighted = sum(len(g["params"]) for g in optimizer.param_groups)
    assert weighted > len(list(model.parameters()))  # uncertainty's and GradNorm's parameters are optimised
    rows = overhead_rows(configs, interleaved_timings(configs, prepared(tiny_data), rounds=2, steps=1, warmup=0))
    assert rows[BASELINE]["wall_ratio"] == rows[BASELINE]["cpu_ratio"] == 1.0
    for name, row in rows.items():
        assert row["wall_ms"] > 0 and 0 < row["wall_ratio"] < float("inf"), name
        assert len(row["wall_ratio_per_round"]) == 2


def test_interleaving_gives_every_configuration_the_same_batches_in_a_seeded_order():
    seen, order = {}, []

    def recorder(name):
        def run(batches):
            seen.setdefault(name, []).append(batches["id"])
            order.append(name)
        return run

    configs = [Configuration(n, "aggregator", "ours", n, recorder(n)) for n in ("equal", "a", "b", "c")]
    batches = [{"id": i} for i in range(5)]
    timings = interleaved_timings(configs, batches, rounds=4, steps=2, warmup=1, seed=3)
    assert all(s == [0, 1, 2, 3, 4, 0, 1, 2, 3] for s in seen.values())  # 1 warm-up + 4 x 2 timed
    assert all(len(timings.wall[n]) == 4 and len(timings.cpu[n][0]) == 2 for n in seen)
    rounds = [tuple(order[4 + 8 * r: 4 + 8 * (r + 1): 2]) for r in range(4)]
    assert len(set(rounds)) > 1  # the order changes between rounds
    order.clear()
    seen.clear()
    interleaved_timings(configs, batches, rounds=4, steps=2, warmup=1, seed=3)
    assert rounds == [tuple(order[4 + 8 * r: 4 + 8 * (r + 1): 2]) for r in range(4)]  # seeded


def test_ratios_are_per_round_medians():
    configs = [Configuration(n, "aggregator", "ours", n, lambda b: None) for n in ("equal", "x")]
    timings = bench_methods.Timings(
        wall={"equal": [[1.0, 1.0], [2.0, 2.0], [4.0, 4.0]], "x": [[1.5, 1.5], [2.0, 2.0], [4.4, 4.4]]},
        cpu={"equal": [[1.0], [1.0], [1.0]], "x": [[3.0], [1.0], [2.0]]},
    )
    rows = overhead_rows(configs, timings)
    assert rows["x"]["wall_ratio_per_round"] == pytest.approx([1.5, 1.0, 1.1])
    assert rows["x"]["wall_ratio"] == pytest.approx(1.1)  # drift between rounds (1, 2, 4) cancels
    assert rows["x"]["cpu_ratio"] == 2.0 and rows["x"]["wall_ms"] == pytest.approx(2000.0)


def test_harness_rejects_bad_arguments():
    run = Configuration("equal", "baseline", "ours", "equal", lambda b: None)
    with pytest.raises(ValueError, match="rounds >= 1"):
        interleaved_timings([run], [{}], rounds=0)
    with pytest.raises(ValueError, match="unique"):
        interleaved_timings([run, run], [{}])
    with pytest.raises(ValueError, match="no prepared batches"):
        interleaved_timings([run], [])


def test_cli_asks_for_methods_with_torchjd(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--torchjd"])
    assert "add --methods" in capsys.readouterr().err


# ------------------------------------------------------------------ torchjd 0.18 side by side
def grads(model):
    return [p.grad.clone() if p.grad is not None else None for p in model.parameters()]


@pytest.mark.parametrize("layout", ["per_task", "concatenated"])
@pytest.mark.parametrize("name", ["mean", "upgrad", "mgda"])
def test_torchjd_step_computes_our_update(name, layout, tiny_data, tiny_model_config):
    """Same weighted Jacobian, same aggregator: θ_s.grad and the heads' grads agree (tied embedding included)."""
    pytest.importorskip("torchjd")
    from torchjd.aggregation import MGDA, UPGrad
    from torchjd.linalg import QuadprogProjector

    exact = {  # torchjd's defaults are approximations: run them to the exact answer to compare
        "mgda": lambda: MGDA(epsilon=1e-12, max_iters=10_000),  # Frank-Wolfe, stopped at a 1e-3 step
        "upgrad": lambda: UPGrad(projector=QuadprogProjector(reg_eps=0.0)),  # default: G / tr G + 1e-4 I
        "mean": lambda: bench_methods.make_torchjd_aggregator("mean", 3),
    }
    batches = prepared(tiny_data, count=1)[0]
    for weighting in (Equal(3), Static([0.2, 0.2, 1.0])):
        ours, theirs = model_for(tiny_model_config, dropout=0.0), model_for(tiny_model_config, dropout=0.0)
        train_step(ours, batches, torch.optim.SGD(ours.parameters(), lr=0.0), weighting, TASK_LIST,
                   grad_clip=None, aggregator=make_aggregator(name))
        bench_methods.torchjd_step(theirs, batches, torch.optim.SGD(theirs.parameters(), lr=0.0), weighting,
                                   TASK_LIST, exact[name](), grad_clip=None, layout=layout)
        shared = {id(p) for p in ours.shared_parameters()}
        assert any(id(p) in shared for p in ours.heads["generation"].parameters())  # the tied case is tested
        scale = max(g.abs().max().item() for g in grads(ours) if g is not None)
        for (label, p), q in zip(ours.named_parameters(), theirs.parameters()):
            assert (p.grad is None) == (q.grad is None), label
            if p.grad is not None:
                torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5 * scale, msg=label)


def test_torchjd_step_draws_the_same_dropout_masks_per_task(tiny_data, tiny_model_config):
    pytest.importorskip("torchjd")
    batches = prepared(tiny_data, count=1)[0]
    ours, theirs = model_for(tiny_model_config), model_for(tiny_model_config)
    assert tiny_model_config.dropout > 0
    torch.manual_seed(5)
    log = train_step(ours, batches, torch.optim.SGD(ours.parameters(), lr=0.0), Equal(3), TASK_LIST,
                     grad_clip=None, aggregator=make_aggregator("mean"))
    torch.manual_seed(5)
    losses = bench_methods.torchjd_step(theirs, batches, torch.optim.SGD(theirs.parameters(), lr=0.0), Equal(3),
                                        TASK_LIST, bench_methods.make_torchjd_aggregator("mean", 3), grad_clip=None)
    assert losses == pytest.approx([log.losses[t.name] for t in TASK_LIST], rel=1e-6)
    for p, q in zip(ours.shared_parameters(), theirs.shared_parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-7)


def test_torchjd_step_errors(tiny_data, tiny_model_config):
    pytest.importorskip("torchjd")
    from mtl_tutorial.weightings import Uncertainty

    batches = prepared(tiny_data, count=1)[0]
    model = model_for(tiny_model_config)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    mean = bench_methods.make_torchjd_aggregator("mean", 3)
    with pytest.raises(ValueError, match="valid layouts are: per_task, concatenated"):
        bench_methods.torchjd_step(model, batches, optimizer, Equal(3), TASK_LIST, mean, layout="stacked")
    with pytest.raises(ValueError, match="missing: source"):
        bench_methods.torchjd_step(model, {k: v for k, v in batches.items() if k != "source"}, optimizer,
                                   Equal(3), TASK_LIST, mean)
    with pytest.raises(ValueError, match="without parameters"):
        bench_methods.torchjd_step(model, batches, optimizer, Uncertainty(3), TASK_LIST, mean)
    with pytest.raises(KeyError, match="compared aggregators are"):
        bench_methods.make_torchjd_aggregator("fairgrad", 3)


def test_torchjd_configurations_run_every_compared_aggregator(tiny_data, tiny_model_config):
    pytest.importorskip("torchjd")
    model = model_for(tiny_model_config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    configs, notes = method_configurations(model, TASK_LIST, optimizer, torchjd=True, weightings=[])
    assert notes == []
    torchjd = [c for c in configs if c.implementation == "torchjd"]
    assert {c.method for c in torchjd if c.layout == "per_task"} == set(bench_methods.TORCHJD_NAMES)
    assert [c.method for c in torchjd if c.layout == "concatenated"] == ["mean"]
    rows = overhead_rows(configs, interleaved_timings(configs, prepared(tiny_data), rounds=1, steps=1, warmup=0))
    assert all(r["wall_ratio"] > 0 for r in rows.values())


def test_torchjd_mgda_conflicts_and_cagrad_returns_zero_where_ours_gives_the_true_answer():
    """The issue's claim, by the benchmark's own table (20 seeded Jacobians per family)."""
    pytest.importorskip("torchjd")
    rows = {(r["family"], r["implementation"]): r for r in bench_methods.robustness_table()}
    for (family, implementation), r in rows.items():
        if implementation == "ours":
            assert r["conflicting"] == 0 and r["zero"] == 0, family
    assert rows["MGDA, a row x 1e-8", "torchjd"]["conflicting"] > 0
    assert rows["MGDA, a row x 1e-8", "torchjd"]["min_cosine"] < -0.01  # a real conflict, not rounding
    assert rows["CAGrad, no row scaled", "torchjd"]["median_distance_to_ours"] < 1e-4  # the same method
    for family in ("CAGrad, a row x 1e-8", "CAGrad, a row x 1e-8, all x 1e-8", "CAGrad, a row x 1e-8, all x 1e8",
                   "CAGrad, a row x 1e8"):
        assert rows[family, "torchjd"]["zero"] == rows[family, "torchjd"]["trials"], family


def test_cli_robustness_writes_the_table(tmp_path, capsys):
    pytest.importorskip("torchjd")
    out = tmp_path / "bench.json"
    assert bench.main(["--robustness", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["torchjd"].startswith("0.18") and len(record["robustness"]) == 2 * 6
    assert "MGDA, a row x 1e-8" in capsys.readouterr().out


def test_every_bench_record_carries_commit_versions_and_threads(tmp_path, capsys, monkeypatch):
    rows = {name: {"ms_per_step": 1.0, "examples_per_s": 32.0} for name in
            ("single: a", "single: b", "single: c", "multi-task (equal weights)", "sum of single-task steps")}
    monkeypatch.setattr(bench, "run_benchmark", lambda steps, trunk: rows)  # no timing: the record is the point
    out = tmp_path / "bench.json"
    assert bench.main(["--steps", "2", "--threads", "1", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["command"] == f"python -m mtl_tutorial.studies.bench --steps 2 --threads 1 --out {out}"
    assert len(record["git_commit"]) == 40 or record["git_commit"] == "unknown"
    assert isinstance(record["package_modified_since_commit"], bool) and record["threads"] == 1
    assert record["versions"]["torch"] == torch.__version__ and record["rows"] == rows
    assert record["ratio_multi_to_sum_of_single"] == 1.0


def test_a_smaller_table_is_refused_before_any_timing(tmp_path, capsys, monkeypatch):
    from mtl_tutorial.studies.cli import UsageError

    out = tmp_path / "bench_methods.json"
    out.write_text(json.dumps({"rows": {str(i): {} for i in range(30)}, "robustness": [{}] * 12}))
    monkeypatch.setattr(bench_methods, "run_methods_benchmark", lambda *a, **k: pytest.fail("timed anyway"))
    with pytest.raises(UsageError, match="holds 42 runs and this call has only 14.*--force"):
        bench.main(["--methods", "--out", str(out)])
    assert bench.count_rows(json.loads(out.read_text())) == 42
