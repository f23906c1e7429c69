"""The architecture benchmark: every architecture timed against hard sharing, T5's step counted per step."""

import pytest
import torch

from mtl_tutorial.architectures import ARCHITECTURES, make_architecture
from mtl_tutorial.batching import TaskStream
from mtl_tutorial.studies import bench, bench_architectures
from mtl_tutorial.studies.bench_architectures import (
    BASELINE,
    ONE_TASK_PER_STEP,
    architecture_configurations,
    parameter_summary,
    ratio_rows,
)
from mtl_tutorial.studies.bench_methods import Configuration, Timings, interleaved_timings
from mtl_tutorial.tasks import TASKS

TASK_LIST = list(TASKS.values())


def tiny_models(config, vocab=400):
    models = {}
    for name in ARCHITECTURES:
        torch.manual_seed(0)
        models[name] = make_architecture(name, config, TASK_LIST, vocab)
    return models


def prepared(tiny_data, count=2, batch_size=4):
    streams = {n: TaskStream(tiny_data["train"][n], batch_size, seed=0) for n in TASKS}
    return [{n: s.next() for n, s in streams.items()} for _ in range(count)]


def test_every_architecture_takes_real_steps_and_is_timed_against_hard_sharing(tiny_data, tiny_model_config):
    models = tiny_models(tiny_model_config)
    configs, steps_per_call = architecture_configurations(models, TASK_LIST)
    assert [c.name for c in configs] == [*ARCHITECTURES, ONE_TASK_PER_STEP]
    assert steps_per_call[ONE_TASK_PER_STEP] == len(TASK_LIST) and steps_per_call[BASELINE] == 1
    before = {name: [p.detach().clone() for p in m.parameters()] for name, m in models.items()}
    timings = interleaved_timings(configs, prepared(tiny_data), rounds=2, steps=1, warmup=0)
    for name, model in models.items():  # the optimiser really stepped every model
        assert any(not torch.equal(a, p) for a, p in zip(before[name], model.parameters())), name
    rows = ratio_rows(configs, timings, steps_per_call)
    assert rows[BASELINE]["wall_ratio"] == rows[BASELINE]["cpu_ratio"] == 1.0
    for name, row in rows.items():
        assert row["wall_ms"] > 0 and 0 < row["wall_ratio"] < float("inf"), name
        assert len(row["cpu_ratio_per_round"]) == 2


def test_t5_mixing_is_timed_as_one_step_per_task(tiny_data, tiny_model_config, monkeypatch):
    seen = []
    monkeypatch.setattr(bench_architectures, "train_step", lambda model, batches, *a, **k: seen.append(list(batches)))
    configs, _ = architecture_configurations(tiny_models(tiny_model_config), TASK_LIST)
    one = next(c for c in configs if c.name == ONE_TASK_PER_STEP)
    one.run(prepared(tiny_data, count=1)[0])
    assert seen == [[t.name] for t in TASK_LIST]
    seen.clear()
    next(c for c in configs if c.name == BASELINE).run(prepared(tiny_data, count=1)[0])
    assert seen == [list(TASKS)]


def test_ratios_are_per_training_step_and_per_round_medians():
    configs = [Configuration(n, "architecture", "ours", n, lambda b: None) for n in (BASELINE, "x", "t5")]
    timings = Timings(
        wall={BASELINE: [[1.0, 1.0], [2.0, 2.0], [1.0, 1.0]], "x": [[2.0, 2.0], [2.0, 2.0], [3.0, 3.0]],
              "t5": [[3.0, 3.0], [6.0, 6.0], [3.0, 3.0]]},
        cpu={n: [[1.0]] * 3 for n in (BASELINE, "x", "t5")},
    )
    rows = ratio_rows(configs, timings, {"t5": 3})
    assert rows["x"]["wall_ratio_per_round"] == [2.0, 1.0, 3.0] and rows["x"]["wall_ratio"] == 2.0
    assert rows["t5"]["wall_ratio"] == 1.0 and rows["t5"]["wall_ms"] == pytest.approx(1e3)  # 3 s for 3 steps
    assert rows["t5"]["train_steps_per_call"] == 3 and rows["x"]["train_steps_per_call"] == 1


def test_parameter_summary_counts_tied_weights_once(tiny_model_config):
    models = tiny_models(tiny_model_config)
    for name, model in models.items():
        counts = parameter_summary(model)
        assert counts["total"] == sum(p.numel() for p in set(model.parameters())), name
        assert counts["total"] == counts["shared"] + sum(counts[t] for t in TASKS), name
    assert parameter_summary(models["text_to_text"])["sentiment"] == 0


def test_hard_sharing_must_be_there_and_the_cli_refuses_mixed_benchmarks(tiny_model_config, capsys):
    models = tiny_models(tiny_model_config)
    del models[BASELINE]
    with pytest.raises(ValueError, match="include it among the models"):
        architecture_configurations(models, TASK_LIST)
    with pytest.raises(SystemExit):
        bench.main(["--architectures", "--methods"])
    assert "run it without --methods" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--architectures", "--threads", "0"])
    assert "argument --threads: expected a positive integer, got 0" in capsys.readouterr().err


def test_the_record_names_the_code_and_machine_that_timed_it():
    record = bench_architectures.provenance("python -m mtl_tutorial.studies.bench --architectures")
    assert len(record["git_commit"]) == 40 or record["git_commit"] == "unknown"
    assert isinstance(record["package_modified_since_commit"], bool) and "torch" in record["versions"]
    assert record["threads"] == torch.get_num_threads() and record["command"].endswith("--architectures")
