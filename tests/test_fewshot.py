"""The WordNet few-shot benchmark: no leaks, honest intervals, the same episodes for all, determinism."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from mtl_tutorial.meta.adaptation import accuracy, adapt
from mtl_tutorial.meta.evaluation import finetune_curve, mean_ci95, paired_difference
from mtl_tutorial.meta.features import HashedNgrams, LazyTextFeatures, PrecomputedTextFeatures
from mtl_tutorial.meta.transfer import (
    fewshot_mlp,
    pretrain_classifier,
    pretrained_initialisations,
    prototype_head,
    random_initialisations,
    training_examples,
)
from mtl_tutorial.meta.wordnet import CategorySplit, WordNetData, load_wordnet, split_categories
from mtl_tutorial.studies.fewshot import (
    METHODS,
    FewShotConfig,
    FewShotData,
    meta_train,
    run_setting,
    score,
    shared_initialisation,
    table,
)

NUM_FEATURES = 64


class SpyFeatures:
    """Features that remember every example index they hand out."""

    def __init__(self, inner) -> None:
        self.inner, self.seen = inner, []

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, indices):
        self.seen.append(torch.as_tensor(indices).clone())
        return self.inner[indices]

    def seen_indices(self) -> torch.Tensor:
        return torch.cat(self.seen) if self.seen else torch.zeros(0, dtype=torch.long)


def toy_corpus(num_classes: int = 9, per_class: int = 24) -> WordNetData:
    """Definitions made of class-specific and shared words, so a few shots carry some signal."""
    generator = torch.Generator().manual_seed(0)
    texts, labels = [], []
    for c in range(num_classes):
        for i in range(per_class):
            own = torch.randint(6, (2,), generator=generator).tolist()
            texts.append(f"kind{c}x{own[0]} kind{c}y{own[1]} common{i % 5}")
            labels.append(c)
    return WordNetData(tuple(texts), torch.tensor(labels), (), "definition")


@pytest.fixture()
def toy_bench() -> FewShotData:
    data = toy_corpus()
    features = SpyFeatures(PrecomputedTextFeatures(data.texts, HashedNgrams(NUM_FEATURES)))
    return FewShotData(data, CategorySplit(train=(0, 1, 2, 3, 4), val=(5, 6), test=(7, 8)), features)


def tiny_config(**changes) -> FewShotConfig:
    base = {
        "num_ways": 2, "shots": (1,), "num_queries": 3, "num_features": NUM_FEATURES, "hidden": 8,
        "meta_steps": 3, "meta_batch_size": 2, "inner_steps": 1, "inner_lr_grid": (0.5,),
        "meta_test_steps_grid": (1, 2), "pretrain_steps": 5, "pretrain_batch_size": 8,
        "finetune_lr_grid": (0.1,), "pretrain_steps_grid": (0, 2), "scratch_lr_grid": (0.5, 1.0),
        "scratch_steps_grid": (2,), "val_episodes": 4, "test_episodes": 6,
    }  # fmt: skip
    return FewShotConfig(**(base | changes))


# ---------------------------------------------------------------- features computed once


def test_precomputed_features_equal_the_lazy_ones_bit_for_bit():
    texts = ["a small dog", "", "to run fast", "the act of running", "dog"] * 3
    featurizer = HashedNgrams(num_features=128)
    table = PrecomputedTextFeatures(texts, featurizer, chunk=4)  # several chunks
    lazy = LazyTextFeatures(texts, featurizer)
    indices = torch.tensor([14, 0, 1, 7, 7, 3])
    assert torch.equal(table[indices], lazy[indices])
    assert table[torch.tensor([1])].abs().sum() == 0 and len(table) == 15
    with pytest.raises(IndexError, match="rows are 0..14"):
        table[torch.tensor([15])]


def test_precomputed_wordnet_features_match_lazy_ones():
    data = load_wordnet("definition")
    texts = data.texts[::997]  # 118 definitions from all over WordNet
    rows = torch.arange(len(texts)).flip(0)
    assert torch.equal(PrecomputedTextFeatures(texts)[rows], LazyTextFeatures(texts)[rows])


# ---------------------------------------------------------------- intervals


def test_mean_ci95_is_1_96_standard_errors():
    values = torch.tensor([0.2, 0.4, 0.6, 0.8])
    mean, half = mean_ci95(values)
    assert mean == pytest.approx(0.5)
    assert half == pytest.approx(1.96 * math.sqrt(((values - 0.5) ** 2).sum().item() / 3) / 2)
    assert mean_ci95([0.7] * 600) == pytest.approx((0.7, 0.0))
    with pytest.raises(ValueError, match="at least 2"):
        mean_ci95([0.5])
    with pytest.raises(ValueError, match="NaN"):
        mean_ci95([0.5, float("nan")])


def test_paired_interval_is_narrower_when_episodes_are_shared():
    generator = torch.Generator().manual_seed(0)
    difficulty = torch.rand(600, generator=generator)  # the episode's own difficulty, shared
    a = difficulty + 0.02 + 0.01 * torch.randn(600, generator=generator)
    b = difficulty + 0.01 * torch.randn(600, generator=generator)
    mean, half = paired_difference(a, b)
    assert (mean, half) == pytest.approx(mean_ci95(a.double() - b.double()), rel=1e-12)
    assert half < 0.2 * mean_ci95(a)[1]  # the shared difficulty cancels
    assert mean - half > 0  # a real 0.02 gain is resolved by the paired test
    with pytest.raises(ValueError, match="one value per episode"):
        paired_difference(a, b[:10])


# ---------------------------------------------------------------- fine-tuning and starting points


def test_finetune_curve_equals_sgd_episode_by_episode(toy_bench):
    config = tiny_config()
    sampler = toy_bench.sampler("test", config, shots=2, seed=5)
    episodes = sampler.episodes(5)
    model = fewshot_mlp(NUM_FEATURES, 8, 2, seed=1)
    params = random_initialisations(NUM_FEATURES, 8, 2, seed=3, indices=range(5))
    curve = finetune_curve(model, params, episodes, lr=0.7, steps=(0, 3), chunk=2)
    for i, e in enumerate(episodes):
        start = {name: p[i] for name, p in params.items()}
        for k in (0, 3):
            adapted = adapt(model, e.support_x, e.support_y, F.cross_entropy, k, 0.7, start)
            assert curve[k][i] == accuracy(functional_call(model, adapted, (e.query_x,)), e.query_y)
    with pytest.raises(ValueError, match="one set of starting weights per episode"):
        finetune_curve(model, params, episodes[:4], lr=0.7, steps=(1,))


def test_prototype_head_is_the_nearest_class_mean_classifier():
    torch.manual_seed(0)
    body = fewshot_mlp(10, 6, 3)[:-1]
    support_x, support_y = torch.randn(9, 10), torch.tensor([0, 1, 2] * 3)
    weight, bias = prototype_head(body, support_x, support_y, num_ways=3)
    z, query_z = body(support_x), body(torch.randn(20, 10))
    means = torch.stack([z[support_y == c].mean(0) for c in range(3)])  # (N, H)
    logits = query_z @ weight.T + bias  # (Q, N)
    expected = (query_z**2).sum(1, keepdim=True) - torch.cdist(query_z, means) ** 2
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="every class needs a support example"):
        prototype_head(body, support_x[:2], support_y[:2], num_ways=3)


def test_pretrained_start_keeps_the_body_and_builds_one_head_per_episode(toy_bench):
    config = tiny_config()
    model = fewshot_mlp(NUM_FEATURES, 8, 5, seed=2)  # a 5-way "pre-trained" classifier
    episodes = toy_bench.sampler("test", config, shots=2, seed=0).episodes(3)
    params = pretrained_initialisations(model, episodes, num_ways=2)
    assert params["2.weight"].shape == (3, 2, 8) and torch.equal(params["0.weight"][2], model[0].weight)
    torch.testing.assert_close(params["2.weight"][1], prototype_head(model[:-1], episodes[1].support_x,
                                                                      episodes[1].support_y, 2)[0])


def test_backbone_is_seeded_and_scratch_starts_differ_by_episode():
    a, b = fewshot_mlp(16, 4, 2, seed=(3, 1)), fewshot_mlp(16, 4, 2, seed=(3, 1))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    starts = random_initialisations(16, 4, 2, seed=3, indices=[0, 1])
    assert torch.equal(starts["0.weight"][1], a[0].weight) and not torch.equal(starts["0.weight"][0], a[0].weight)
    with pytest.raises(ValueError, match="sizes must be positive"):
        fewshot_mlp(16, 0, 2)


# ---------------------------------------------------------------- no leaks


def test_wordnet_pretraining_pool_holds_meta_train_categories_only():
    data, split = load_wordnet("definition"), split_categories(seed=0)
    pool = training_examples(data.labels, split.train)
    assert set(data.labels[pool].tolist()) == set(split.train)
    assert len(pool) == sum(data.counts()[name] for name in split.names("train"))


def test_pretraining_never_reads_a_held_out_example(toy_bench):
    model, losses = pretrain_classifier(toy_bench.features, toy_bench.data.labels, toy_bench.split.train,
                                        hidden=8, steps=20, batch_size=16, lr=1e-2, seed=0)
    read = toy_bench.data.labels[toy_bench.features.seen_indices()]
    assert set(read.tolist()) == set(toy_bench.split.train)  # 320 draws reach every training class
    assert model[2].out_features == 5 and losses[-1] < losses[0]
    with pytest.raises(ValueError, match="no pre-training classes"):
        pretrain_classifier(toy_bench.features, toy_bench.data.labels, [], hidden=8, steps=1)


@pytest.mark.parametrize("method", ["maml", "fomaml", "reptile"])
def test_meta_training_never_reads_a_held_out_example(toy_bench, method):
    config = tiny_config(num_ways=3)
    meta_train(config, method, toy_bench.sampler("train", config, shots=1, seed=0), inner_lr=0.5)
    read = toy_bench.data.labels[toy_bench.features.seen_indices()]
    assert set(read.tolist()) <= set(toy_bench.split.train) and len(read) == 3 * 2 * 3 * (1 + 3)


# ---------------------------------------------------------------- the benchmark


def test_every_method_is_scored_on_the_same_episodes(toy_bench):
    config = tiny_config()
    model = fewshot_mlp(NUM_FEATURES, 8, 2, seed=0)
    starts = {
        "shared": shared_initialisation(model),
        "scratch": lambda e, i: random_initialisations(NUM_FEATURES, 8, 2, 0, i),
    }
    reads = []
    for initialise in starts.values():
        toy_bench.features.seen.clear()
        score(config, initialise, toy_bench.sampler("test", config, 1, seed=2), count=7, lr=0.5, steps=(1,), chunk=3)
        reads.append(toy_bench.features.seen_indices())
    assert torch.equal(reads[0], reads[1]) and len(reads[0]) == 7 * 2 * (1 + 3)
    assert set(toy_bench.data.labels[reads[0]].tolist()) <= set(toy_bench.split.test)


def test_run_setting_selects_on_val_and_is_deterministic(toy_bench):
    config = tiny_config()
    pretrained, _ = pretrain_classifier(toy_bench.features, toy_bench.data.labels, toy_bench.split.train, 8, 5)
    first = run_setting(config, toy_bench, 1, pretrained)
    second = run_setting(config, toy_bench, 1, pretrained)
    for record in (first, second):
        for method in record["methods"].values():
            method.pop("cpu_s")
    assert first == second
    assert list(first["methods"]) == list(METHODS) and len(first["paired"]) == 10
    for method, record in first["methods"].items():
        assert len(record["per_episode"]) == config.test_episodes
        best = max(c["val_accuracy"] for c in record["candidates"])
        first_best = next(c for c in record["candidates"] if c["val_accuracy"] == best)
        assert (first_best["lr"], first_best["steps"]) == (record["chosen"]["lr"], record["chosen"]["steps"])
        assert record["test_accuracy"] == pytest.approx(sum(record["per_episode"]) / config.test_episodes, abs=1e-3)
    pair = first["paired"]["maml - scratch"]
    gaps = torch.tensor(first["methods"]["maml"]["per_episode"]) - torch.tensor(first["methods"]["scratch"]["per_episode"])
    assert pair["mean"] == pytest.approx(gaps.mean().item(), abs=1e-4)


def test_table_reads_percent_with_intervals():
    setting = {"methods": {m: {"test_accuracy": 0.4567, "test_ci95": 0.0123} for m in METHODS}}
    lines = table({"1-shot": setting, "5-shot": setting}).splitlines()
    assert lines[0] == "| method | 1-shot | 5-shot |" and lines[2] == "| maml | 45.7 ± 1.2 | 45.7 ± 1.2 |"


def test_config_rejects_empty_grids_and_bad_sizes():
    with pytest.raises(ValueError, match="inner_lr_grid is empty"):
        FewShotConfig(inner_lr_grid=())
    with pytest.raises(ValueError, match="at least 2"):
        FewShotConfig(test_episodes=1)
    with pytest.raises(ValueError, match="shots must be positive"):
        FewShotConfig(shots=(0,))
    assert dataclasses.asdict(FewShotConfig())["shots"] == (1, 5)


def stored_setting(tmp_path, shots: int = 1, provenance: dict | None = None) -> dict:
    """A finished 5-way setting of the default config under ``tmp_path``, as a previous call left it."""
    config = {k: v for k, v in dataclasses.asdict(FewShotConfig(test_episodes=600)).items() if k != "shots"}
    stored = {
        "config": json.loads(json.dumps(config)),
        "methods": {m: {"test_accuracy": 0.5, "test_ci95": 0.01} for m in METHODS},
        "process_cpu_s": {"featurise_s": 10.0, "setting_s": 200.0},
    } | ({"provenance": provenance} if provenance else {})
    (tmp_path / f"5way{shots}shot.json").write_text(json.dumps(stored))
    return stored


def test_command_line_reuses_a_finished_setting_and_records_provenance(tmp_path):
    from mtl_tutorial.studies.fewshot import fewshot_study, main

    trained = {"git_commit": "0" * 40, "trained_at": "2020-01-01T00:00:00+00:00", "command": "an old call"}
    stored = stored_setting(tmp_path, provenance=trained)
    out = tmp_path / "out.json"
    assert main(["--shots", "1", "--runs", str(tmp_path), "--out", str(out)]) == 0
    result = fewshot_study([1], runs=tmp_path, out=out)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["cpu_s_total"] == 210.0 and "| maml | 50.0 ± 1.0 |" in result["table"]
    assert result["provenance"]["command"].startswith("python -m mtl_tutorial.studies.fewshot")
    assert len(result["split"]["test"]) == 10 and "git_commit" in result["provenance"]
    # the reused setting keeps the provenance it was computed with; the summary names its commit
    assert result["settings"]["1-shot"]["provenance"] == trained
    assert json.loads((tmp_path / "5way1shot.json").read_text()) == stored  # not rewritten
    assert result["provenance"]["run_commits"] == ["0" * 40]


def test_summary_merges_settings_and_never_shrinks(tmp_path):
    from mtl_tutorial.studies.cli import UsageError
    from mtl_tutorial.studies.fewshot import fewshot_study

    stored_setting(tmp_path, 1)
    stored_setting(tmp_path, 5)
    out = tmp_path / "out.json"
    assert list(fewshot_study([1, 5], runs=tmp_path, out=out)["settings"]) == ["1-shot", "5-shot"]
    (tmp_path / "5way5shot.json").unlink()  # the stored summary still holds the 5-shot setting
    assert list(fewshot_study([1], runs=tmp_path, out=out)["settings"]) == ["1-shot", "5-shot"]
    before = out.read_bytes()
    with pytest.raises(UsageError, match="holds 2 runs of another config .test_episodes 600 stored, 50 here.*--force"):
        fewshot_study([1, 5], episodes=50, runs=tmp_path / "elsewhere", out=out)  # refused before any work
    assert out.read_bytes() == before


def test_a_stored_setting_of_another_config_is_refused_unless_fresh(tmp_path, monkeypatch):
    from mtl_tutorial.studies import fewshot
    from mtl_tutorial.studies.cli import UsageError

    stored = stored_setting(tmp_path, 1)
    monkeypatch.setattr(fewshot, "prepare", lambda config: pytest.fail("computed anyway"))
    with pytest.raises(UsageError, match=r"5way1shot\.json holds a setting of another config.*--fresh"):
        fewshot.fewshot_study([1], episodes=50, runs=tmp_path, out=tmp_path / "out.json")
    assert json.loads((tmp_path / "5way1shot.json").read_text()) == stored


def test_a_broken_setting_names_its_file_and_the_repair(tmp_path):
    from mtl_tutorial.files import CorruptFileError
    from mtl_tutorial.studies.fewshot import fewshot_study

    (tmp_path / "5way1shot.json").write_text('{"config": {"text": ')
    with pytest.raises(CorruptFileError, match=r"5way1shot\.json is not valid JSON.*delete it and rerun"):
        fewshot_study([1], runs=tmp_path, out=tmp_path / "out.json")


def test_a_new_setting_is_saved_at_once_with_the_provenance_of_its_training(tmp_path, monkeypatch):
    from mtl_tutorial.studies import fewshot

    stored_setting(tmp_path, 1)  # reused as it is
    fake = FewShotData(toy_corpus(), CategorySplit(train=(0, 1, 2, 3, 4), val=(5, 6), test=(7, 8)), None)
    monkeypatch.setattr(fewshot, "prepare", lambda config: fake)
    monkeypatch.setattr(fewshot, "pretrain_classifier", lambda *args: ("pretrained", [1.0] * 100))
    monkeypatch.setattr(fewshot, "run_setting", lambda config, bench, shots, pretrained: {
        "shots": shots, "methods": {m: {"test_accuracy": 0.6, "test_ci95": 0.02} for m in METHODS}})
    result = fewshot.fewshot_study([1, 5], runs=tmp_path, out=tmp_path / "out.json", threads=None)
    saved = json.loads((tmp_path / "5way5shot.json").read_text())
    assert saved == json.loads(json.dumps(result["settings"]["5-shot"]))
    assert {"git_commit", "package_modified_since_commit", "versions", "threads", "trained_at"} <= set(saved["provenance"])
    assert saved["provenance"]["command"] == "python -m mtl_tutorial.studies.fewshot --shots 5 --episodes 600"
    assert "provenance" not in result["settings"]["1-shot"]  # the stored setting had none: none is invented
    assert result["provenance"]["run_commits"] == sorted({saved["provenance"]["git_commit"], "not recorded"})
