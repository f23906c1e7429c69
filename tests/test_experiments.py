import dataclasses
import json

import pytest

from mtl_tutorial.config import ExperimentConfig, TokenizerConfig
from mtl_tutorial.evaluation import delta_m
from mtl_tutorial.studies import cli, experiments
from mtl_tutorial.studies.pipeline import CaseStudyData


def record(name, sentiment, perplexity, seconds_per_step=0.1):
    test = {}
    if sentiment is not None:
        test["sentiment"] = {"accuracy": sentiment}
    if perplexity is not None:
        test["generation"] = {"perplexity": perplexity}
    return {"name": name, "test": test, "seconds_per_step": seconds_per_step}


def test_summarise_means_spreads_and_delta_m():
    records = [
        record("multitask/seed0", 0.80, 90.0), record("multitask/seed1", 0.78, 110.0),
        record("single-sentiment/seed0", 0.75, None), record("single-sentiment/seed1", 0.77, None),
        record("single-generation/seed0", None, 100.0), record("single-generation/seed1", None, 100.0),
    ]
    summary = experiments.summarise(records)
    acc = summary["multitask"]["sentiment.accuracy"]
    assert acc["mean"] == pytest.approx(0.79) and acc["values"] == [0.80, 0.78]
    assert acc["std"] == pytest.approx(0.0141421, rel=1e-4)  # sample standard deviation of two values
    lower = {"sentiment": False, "generation": True}
    expected = [delta_m({"sentiment": 0.80, "generation": 90.0}, {"sentiment": 0.75, "generation": 100.0}, lower),
                delta_m({"sentiment": 0.78, "generation": 110.0}, {"sentiment": 0.77, "generation": 100.0}, lower)]
    assert summary["multitask"]["delta_m"]["values"] == pytest.approx(expected)  # pairs runs of one seed
    assert summary["multitask"]["delta_m"]["mean"] == pytest.approx(sum(expected) / 2)
    assert "delta_m" not in summary["single-sentiment"]


def main(argv):
    """The command line as ``python -m`` runs it: an expected error is one line and exit code 2."""
    try:
        return cli.run(experiments.main, argv)
    except SystemExit as exit:  # argparse rejects a value
        return exit.code


def test_unknown_experiment_lists_the_valid_ones(capsys):
    assert main(["no_such_experiment"]) == 2
    err = capsys.readouterr().err
    assert "no_such_experiment" in err and "case_study" in err and "article_lstm" in err
    with pytest.raises(cli.UsageError, match="valid experiments are"):
        experiments.run_experiment("no_such_experiment")


def test_list_and_bad_thread_count(capsys):
    assert main(["--list"]) == 0
    assert "case_study: 13 runs" in capsys.readouterr().out
    assert main(["case_study", "--threads", "0"]) == 2
    assert "--threads: expected a positive integer, got 0" in capsys.readouterr().err


def test_every_run_is_a_valid_config():
    for make in experiments.EXPERIMENTS.values():
        runs = make()
        assert len({r.name for r in runs}) == len(runs)
        for run in runs:
            assert run.config.model.max_length >= run.config.tokenizer.max_length


def test_run_one_trains_tests_and_samples(splits, tiny_tokenizer, tiny_data, tiny_model_config, tiny_train_config):
    encoded = {**tiny_data, "test": tiny_data["val"]}
    data = CaseStudyData(splits, tiny_tokenizer, encoded)
    config = ExperimentConfig(tokenizer=TokenizerConfig(vocab_size=400, max_length=32), model=tiny_model_config,
                              train=dataclasses.replace(tiny_train_config, tasks=("sentiment", "generation")))
    result = experiments.run_one(experiments.Run("multitask/seed0", config), data)
    json.dumps(result)  # the record is JSON-able
    assert set(result["test"]) == {"sentiment", "generation"}
    assert result["steps"] == tiny_train_config.max_steps
    assert result["history"]["eval_steps"] == [4, 8]
    assert set(result["samples"]) == {"fresh", "rotten", "plot"}
    assert all(len(texts) == 3 and all(isinstance(t, str) for t in texts) for texts in result["samples"].values())


def test_unknown_seed_is_refused(capsys):
    assert main(["case_study", "--seeds", "7"]) == 2
    assert "has no seeds [7]" in capsys.readouterr().err
    assert main(["case_study", "--seeds", "one"]) == 2
    assert "seed ids" in capsys.readouterr().err


def test_old_run_records_without_new_config_fields_are_reused():
    current = json.loads(json.dumps(dataclasses.asdict(ExperimentConfig())))
    old = json.loads(json.dumps(current))
    for field in ("weighting", "weighting_options", "aggregator", "aggregator_options"):
        del old["train"][field]  # a record written before these fields existed
    assert experiments.same_config(old, current)
    changed = json.loads(json.dumps(current))
    changed["train"]["aggregator"] = "mgda"
    assert not experiments.same_config(old, changed)  # a missing field counts at its default only
    assert not experiments.same_config({**old, "train": {**old["train"], "lr": 1.0}}, current)


def test_methods_experiment_covers_every_weighting_and_aggregator():
    from mtl_tutorial.aggregators import AGGREGATORS
    from mtl_tutorial.weightings import WEIGHTINGS

    runs = experiments.methods_runs()
    trains = [r.config.train for r in runs if r.name.startswith("multitask-")]
    assert {t.weighting for t in trains if t.weighting} | {"equal", "static"} == set(WEIGHTINGS)
    assert {t.aggregator for t in trains if t.aggregator} == set(AGGREGATORS)
    assert {r.config.train.seed for r in runs} == set(experiments.SEEDS)
    assert all(r.config.train.max_steps == experiments.METHOD_STEPS for r in runs)


def test_shard_splits_the_runs(capsys):
    assert main(["methods", "--shard", "2/2", "--out", "/nonexistent/x.json"]) == 2
    assert "0 <= K < N" in capsys.readouterr().err
    assert main(["methods", "--shard", "1", "--out", "/nonexistent/x.json"]) == 2
    assert "expected K/N" in capsys.readouterr().err
    with pytest.raises(cli.UsageError, match="selects no run"):  # K below N but past the runs
        experiments.select_runs("article_lstm", seeds=[0], shard=(5, 6))
    runs = experiments.methods_runs()
    shares = [experiments.select_runs("methods", shard=(k, 3)) for k in range(3)]
    assert sorted(r.name for share in shares for r in share) == sorted(r.name for r in runs)


def test_architectures_experiment_covers_every_architecture():
    from mtl_tutorial.architectures import ARCHITECTURES

    runs = experiments.architecture_runs()
    multi = [r.config for r in runs if r.name.startswith("multitask-")]
    assert {c.model.architecture for c in multi} == set(ARCHITECTURES)
    assert all(c.train.weights == experiments.CASE_STUDY_WEIGHTS for c in multi)
    t5 = next(r.config.train for r in runs if r.name == "multitask-text_to_text_t5mix/seed0")
    assert t5.mixing == "temperature" and t5.max_steps == 3 * experiments.METHOD_STEPS
    methods = {r.name: r.config for r in experiments.methods_runs()}  # single-task runs are shared
    assert all(dataclasses.asdict(r.config) == dataclasses.asdict(methods[r.name])
               for r in runs if r.name.startswith("single-"))
    t2t_alone = [r.config for r in runs if r.name.startswith("text_to_text-single-generation/")]
    assert len(t2t_alone) == len(experiments.SEEDS)
    assert all(c.train.tasks == ("generation",) and c.model.architecture == "text_to_text" for c in t2t_alone)


def test_summarise_skips_delta_m_for_a_seed_without_its_single_task_runs():
    records = [record("multitask/seed0", 0.80, 90.0), record("single-sentiment/seed0", 0.75, None),
               record("single-generation/seed0", None, 100.0), record("multitask/seed1", 0.70, 95.0)]
    summary = experiments.summarise(records)  # seed 1 has no single-task runs among the records
    assert summary["multitask"]["delta_m"]["values"] == [pytest.approx(8.3333333)]
    assert "delta_m" not in experiments.summarise(records[3:])["multitask"]  # no seed has its singles


def test_the_ablation_changes_only_the_prefixes_and_the_batches():
    case = {r.name: r.config for r in experiments.case_study_runs()}
    runs = experiments.ablation_runs()
    assert len(runs) == 6 * len(experiments.SEEDS)
    for run in runs:
        group, seed = run.name.split("/")
        task = group.split("-")[1] if group.startswith("single-") else None
        base = case[f"single-{task}/{seed}" if task else f"multitask/{seed}"]
        changed = {k for k, v in dataclasses.asdict(run.config.train).items()
                   if v != dataclasses.asdict(base.train)[k]}
        assert changed and changed <= {"prefix_dropout", "batch_sampling"}, (run.name, changed)
        assert run.config.model == base.model and run.config.tokenizer == base.tokenizer
        if "no_prefix" in group:
            assert run.config.train.prefix_dropout == 1.0
        if "by_class" in group:
            assert run.config.train.batch_sampling == "length_pools_by_class"
