import dataclasses

import pytest
import torch

from mtl_tutorial.config import TrainConfig
from mtl_tutorial.models import MultiTaskModel
from mtl_tutorial.tasks import TASKS
from mtl_tutorial.trainer import Trainer, _lr_factor


def make_trainer(tiny_data, model_config, train_config):
    tasks = [TASKS[n] for n in train_config.tasks]
    torch.manual_seed(train_config.seed)
    model = MultiTaskModel(model_config, tasks, vocab_size=400)
    return Trainer(model, tasks, tiny_data["train"], tiny_data["val"], train_config)


def test_same_seed_same_history(tiny_data, tiny_model_config, tiny_train_config):
    a = make_trainer(tiny_data, tiny_model_config, tiny_train_config).fit()
    b = make_trainer(tiny_data, tiny_model_config, tiny_train_config).fit()
    assert a.train_loss == b.train_loss and a.val == b.val
    other = dataclasses.replace(tiny_train_config, seed=1)
    c = make_trainer(tiny_data, tiny_model_config, other).fit()
    assert c.train_loss != a.train_loss


@pytest.mark.parametrize("mixing", ["all", "proportional"])
def test_resume_equals_uninterrupted(tiny_data, tiny_model_config, tiny_train_config, tmp_path, mixing):
    """2N steps in one go == N steps, checkpoint, a new Trainer resumes, N more steps."""
    config = dataclasses.replace(tiny_train_config, mixing=mixing)
    straight = make_trainer(tiny_data, tiny_model_config, config)
    straight.fit()
    first = make_trainer(tiny_data, tiny_model_config, config)
    first.fit(until_step=config.max_steps // 2, checkpoint=tmp_path / "ckpt.pt")
    resumed = make_trainer(tiny_data, tiny_model_config, config)
    torch.manual_seed(12345)  # the checkpoint must restore the RNG, whatever happened in between
    resumed.load_checkpoint(tmp_path / "ckpt.pt")
    assert resumed.step == config.max_steps // 2
    resumed.fit()
    for (name, p), q in zip(straight.model.named_parameters(), resumed.model.parameters()):
        assert torch.equal(p, q), name
    for name, losses in straight.history.train_loss.items():  # NaN marks steps a task sat out
        torch.testing.assert_close(torch.tensor(losses), torch.tensor(resumed.history.train_loss[name]),
                                   rtol=0, atol=0, equal_nan=True)


def test_checkpoint_refuses_another_config(tiny_data, tiny_model_config, tiny_train_config, tmp_path):
    trainer = make_trainer(tiny_data, tiny_model_config, tiny_train_config)
    trainer.fit(until_step=2, checkpoint=tmp_path / "c.pt")
    other = make_trainer(tiny_data, tiny_model_config, dataclasses.replace(tiny_train_config, lr=0.5))
    with pytest.raises(ValueError, match="different TrainConfig"):
        other.load_checkpoint(tmp_path / "c.pt")
    with pytest.raises(FileNotFoundError, match="train with fit"):
        other.load_checkpoint(tmp_path / "missing.pt")


def test_per_task_best_states_and_early_stopping(tiny_data, tiny_model_config):
    config = TrainConfig(batch_size=8, max_steps=200, eval_every=2, warmup_steps=1, patience=2, lr=0.0)
    trainer = make_trainer(tiny_data, tiny_model_config, config)
    history = trainer.fit()
    # with lr = 0 nothing improves after the first evaluation: stop after 1 + patience evaluations
    assert history.stopped_early and history.eval_steps == [2, 4, 6]
    assert history.best_step == {"sentiment": 2, "source": 2, "generation": 2}
    best = trainer.best_model("sentiment")
    for p, q in zip(best.parameters(), trainer.model.parameters()):
        assert torch.equal(p, q)


def test_mixing_limit_reaches_the_schedule(tiny_data, tiny_model_config, tiny_train_config):
    config = dataclasses.replace(tiny_train_config, mixing="proportional", mixing_limit=1)
    model = MultiTaskModel(tiny_model_config, list(TASKS.values()), 400)
    trainer = Trainer(model, list(TASKS.values()), tiny_data["train"], tiny_data["val"], config)
    torch.testing.assert_close(trainer.schedule.rates, torch.full((3,), 1 / 3, dtype=torch.float64))


def test_single_task_mixing_trains_one_task_per_step(tiny_data, tiny_model_config, tiny_train_config):
    config = dataclasses.replace(tiny_train_config, mixing="round_robin", max_steps=6)
    history = make_trainer(tiny_data, tiny_model_config, config).fit()
    trained = [[n for n, losses in history.train_loss.items() if losses[s] == losses[s]] for s in range(6)]
    assert trained == [["sentiment"], ["source"], ["generation"]] * 2


def test_learning_rate_schedule():
    assert _lr_factor(0, 10, 100) == pytest.approx(0.1)
    assert _lr_factor(9, 10, 100) == pytest.approx(1.0)
    assert _lr_factor(100, 10, 100) == pytest.approx(0.1)


def test_bad_inputs(tiny_data, tiny_model_config, tiny_train_config):
    with pytest.raises(ValueError, match="valid choices are: all, round_robin"):
        TrainConfig(mixing="uniform")
    with pytest.raises(ValueError, match="mixing_limit is T5's cap K"):
        TrainConfig(mixing="proportional", mixing_limit=0)
    with pytest.raises(ValueError, match="unknown: \\['topic'\\]"):
        TrainConfig(tasks=("sentiment",), weights={"sentiment": 1.0, "topic": 1.0})
    model = MultiTaskModel(tiny_model_config, list(TASKS.values()), 400)
    with pytest.raises(ValueError, match="differ from TrainConfig.tasks"):
        Trainer(model, [TASKS["sentiment"]], tiny_data["train"], tiny_data["val"], tiny_train_config)
    with pytest.raises(ValueError, match="val_data lacks"):
        Trainer(model, list(TASKS.values()), tiny_data["train"], {}, tiny_train_config)


@pytest.mark.parametrize("weighting, options", [("uncertainty", {}), ("dwa", {"steps_per_epoch": 2}),
                                                 ("gradnorm", {"alpha": 1.5}), ("rlw", {})])
def test_the_config_names_the_weighting(weighting, options, tiny_data, tiny_model_config, tiny_train_config):
    from mtl_tutorial.weightings import WEIGHTINGS

    config = dataclasses.replace(tiny_train_config, weighting=weighting, weighting_options=options)
    tasks = [TASKS[n] for n in config.tasks]
    model = MultiTaskModel(tiny_model_config, tasks, vocab_size=400)
    trainer = Trainer(model, tasks, tiny_data["train"], tiny_data["val"], config)
    assert type(trainer.weighting) is WEIGHTINGS[weighting]
    history = trainer.fit(until_step=4)
    assert len(history.weights) == 4 and all(len(w) == 3 for w in history.weights)
    if weighting == "gradnorm":  # reads the trunk's last layer, and its weights moved off 1
        assert [id(p) for p in trainer.weighting._shared] == [id(p) for p in model.last_shared_parameters()]
        assert history.weights[-1] != [1.0, 1.0, 1.0]


def test_the_config_names_the_aggregator(tiny_data, tiny_model_config, tiny_train_config):
    from mtl_tutorial.aggregators import CAGrad

    config = dataclasses.replace(tiny_train_config, aggregator="cagrad", aggregator_options={"c": 0.3})
    tasks = [TASKS[n] for n in config.tasks]
    trainer = Trainer(MultiTaskModel(tiny_model_config, tasks, vocab_size=400), tasks, tiny_data["train"],
                      tiny_data["val"], config)
    assert isinstance(trainer.aggregator, CAGrad) and trainer.aggregator.c == 0.3
    history = trainer.fit(until_step=3)
    assert len(history.gramian) == 3 and all(len(g) == 3 for g in history.gramian)


@pytest.mark.parametrize("fields, message", [
    ({"weighting": "famo"}, "valid choices are: equal, static"),
    ({"weighting": "static"}, "set TrainConfig.weights"),
    ({"weighting": "dwa", "weights": {"sentiment": 1.0, "source": 1.0, "generation": 1.0}}, "Set one of the two"),
    ({"weighting_options": {"alpha": 1.0}}, "no weighting is named"),
    ({"aggregator": "mdga"}, "valid choices are: mean, mgda"),
    ({"aggregator_options": {"c": 0.4}}, "no aggregator is named"),
])
def test_bad_method_names_in_the_config(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**fields)


def test_the_lstm_trunk_exposes_its_top_layer():
    from mtl_tutorial.config import ModelConfig

    model = MultiTaskModel(ModelConfig(trunk="lstm", d_model=8, num_layers=2, dropout=0.0), [TASKS["sentiment"]], 50)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in model.last_shared_parameters()) == [
        "trunk.lstm.bias_hh_l1", "trunk.lstm.bias_ih_l1", "trunk.lstm.weight_hh_l1", "trunk.lstm.weight_ih_l1"]


@pytest.mark.parametrize("sampling", ["uniform", "length_pools_by_class"])
def test_batch_sampling_reaches_every_stream(tiny_data, tiny_model_config, tiny_train_config, sampling):
    from mtl_tutorial.batching import TaskStream

    config = dataclasses.replace(tiny_train_config, batch_sampling=sampling)
    trainer = make_trainer(tiny_data, tiny_model_config, config)
    assert {s.sampling for s in trainer.streams.values()} == {sampling}
    for i, name in enumerate(config.tasks):  # the trainer's seeds: seed * 1000 + task index
        alone = TaskStream(tiny_data["train"][name], 8, seed=i, sampling=sampling)
        pools = TaskStream(tiny_data["train"][name], 8, seed=i)
        assert torch.equal(trainer.streams[name].order, alone.order)
        assert torch.equal(alone.order, pools.order) == (name == "generation")  # generation: length pools
    with pytest.raises(ValueError, match="valid choices are: length_pools, uniform"):
        TrainConfig(batch_sampling="stratified")


@pytest.mark.parametrize("prefix_dropout", [0.0, 1.0])
def test_prefix_dropout_reaches_the_generation_stream(tiny_data, tiny_model_config, tiny_train_config,
                                                       prefix_dropout):
    """0: every snippet starts with its label token; 1: none does, all start with <bos>."""
    config = dataclasses.replace(tiny_train_config, prefix_dropout=prefix_dropout)
    stream = make_trainer(tiny_data, tiny_model_config, config).streams["generation"]
    data = tiny_data["train"]["generation"]
    bos, label_tokens = data.ids[0][0], {ids[0] for ids in data.prefixed}
    first = torch.cat([stream.next().inputs[:, 0] for _ in range(40)]).tolist()  # past an epoch
    if prefix_dropout == 0.0:
        assert set(first) <= label_tokens and len(label_tokens) == 3 and bos not in label_tokens
    else:
        assert set(first) == {bos}


@pytest.mark.parametrize("sampling", ["uniform", "length_pools_by_class"])
def test_resume_equals_uninterrupted_with_unmixed_batches(tiny_data, tiny_model_config, tiny_train_config,
                                                          tmp_path, sampling):
    """The resume test under the samplings with uniform class counts, in batches of 32 so that the
    second half crosses an epoch (9 batches of the 300 tiny snippets): the reshuffle after a resume
    is checked too."""
    config = dataclasses.replace(tiny_train_config, batch_sampling=sampling, batch_size=32, max_steps=12,
                                 eval_every=6)
    test_resume_equals_uninterrupted(tiny_data, tiny_model_config, config, tmp_path, "all")
    resumed = make_trainer(tiny_data, tiny_model_config, config)
    resumed.load_checkpoint(tmp_path / "ckpt.pt")
    assert resumed.streams["source"].epoch == 0
    resumed.fit()
    assert resumed.streams["source"].epoch == 1
