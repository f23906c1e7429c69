"""Faults a training run must survive or refuse: non-finite steps, invalid settings, checkpoints
written half way or resumed on another run, empty evaluation data."""

import dataclasses
import math

import pytest
import torch

from mtl_tutorial.aggregators import MGDA
from mtl_tutorial.batching import EncodedTask, TaskStream
from mtl_tutorial.config import TrainConfig
from mtl_tutorial.evaluation import evaluate
from mtl_tutorial.files import CorruptFileError
from mtl_tutorial.models import MultiTaskModel
from mtl_tutorial.step import NonFiniteError, NonFiniteLossError, train_step
from mtl_tutorial.tasks import TASKS
from mtl_tutorial.trainer import Trainer
from mtl_tutorial.weightings import Equal, GradNorm, Uncertainty

TASK_LIST = list(TASKS.values())
NAN = float("nan")


def make_trainer(tiny_data, model_config, train_config, vocab_size=400, val=None, **kwargs):
    tasks = [TASKS[n] for n in train_config.tasks]
    torch.manual_seed(train_config.seed)
    model = MultiTaskModel(model_config, tasks, vocab_size=vocab_size)
    return Trainer(model, tasks, tiny_data["train"], val or tiny_data["val"], train_config, **kwargs)


def batches(tiny_data):
    return {n: TaskStream(tiny_data["train"][n], 8, seed=0).next() for n in TASKS}


def snapshot(*modules):
    return [p.detach().clone() for m in modules for p in m.parameters()]


def unchanged(before, *modules):
    return all(torch.equal(p, q) for p, q in zip(before, (p for m in modules for p in m.parameters())))


def nan_into_the_trunk_from(model, task):
    """A NaN gradient with a finite loss that reaches the shared trunk only: the head's input
    gradient becomes NaN, the head's own parameters keep finite gradients."""
    def hook(module, inputs, output):
        inputs[0].register_hook(lambda g: torch.full_like(g, NAN))
    return model.heads[task].register_forward_hook(hook)


# ------------------------------------------------------------------ 1. non-finite steps apply nothing
@pytest.mark.parametrize("aggregator", [None, MGDA()], ids=["weighted backward", "mgda"])
def test_a_nan_gradient_with_a_finite_loss_names_its_task_and_applies_nothing(
        aggregator, tiny_data, tiny_model_config):
    torch.manual_seed(0)
    model = MultiTaskModel(tiny_model_config, TASK_LIST, 400)
    nan_into_the_trunk_from(model, "source")
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    before = snapshot(model)
    with pytest.raises(NonFiniteError, match=r"step 7: the gradient .*task 'source'.* is not finite") as error:
        train_step(model, batches(tiny_data), optimizer, Equal(3), TASK_LIST, step=7, aggregator=aggregator)
    assert "nothing was applied" in str(error.value) and "'sentiment'" not in str(error.value)
    assert not isinstance(error.value, NonFiniteLossError)  # every loss was finite
    assert unchanged(before, model) and not optimizer.state  # AdamW never stepped


def test_a_nan_gradient_that_does_not_come_back_is_traced_through_its_head(tiny_data, tiny_model_config):
    """NaN once, in the step's own backward pass: recomputing the task's gradient finds nothing,
    but the head's gradient (its task's alone) still names the task."""
    model = MultiTaskModel(tiny_model_config, TASK_LIST, 400)
    calls = []
    model.heads["sentiment"].linear.weight.register_hook(
        lambda g: calls.append(1) or (torch.full_like(g, NAN) if len(calls) == 1 else g))
    before = snapshot(model)
    with pytest.raises(NonFiniteError, match=r"step 2: the gradient norm is nan .* the gradient of task "
                                             r"'sentiment' is not finite"):
        train_step(model, batches(tiny_data), torch.optim.SGD(model.parameters(), lr=0.1), Equal(3), TASK_LIST,
                   step=2)
    assert unchanged(before, model) and len(calls) == 2  # the step, then the recomputation


def test_nan_weighting_parameters_are_named_before_anything_is_applied(tiny_data, tiny_model_config):
    model = MultiTaskModel(tiny_model_config, TASK_LIST, 400)
    weighting = Uncertainty(3)
    with torch.no_grad():
        weighting.log_variances[1] = NAN
    optimizer = torch.optim.SGD(list(model.parameters()) + list(weighting.parameters()), lr=0.1)
    before = snapshot(model, weighting)
    with pytest.raises(NonFiniteError, match=r"step 4: the objective is nan .* the weighting's parameters "
                                             r"\(log_variances\) are not finite"):
        train_step(model, batches(tiny_data), optimizer, weighting, TASK_LIST, step=4)
    assert unchanged(before, model) and torch.isnan(weighting.log_variances[1])  # left for the reader to see


def test_nan_gradnorm_weights_and_gradients_are_named(tiny_data, tiny_model_config):
    model = MultiTaskModel(tiny_model_config, TASK_LIST, 400)
    gradnorm = GradNorm(3, model.last_shared_parameters())
    optimizer = torch.optim.SGD(list(model.parameters()) + list(gradnorm.parameters()), lr=0.1)
    hook = gradnorm.raw_weights.register_hook(lambda g: torch.full_like(g, NAN))
    before = snapshot(model, gradnorm)
    with pytest.raises(NonFiniteError, match=r"the gradient of the weighting's parameters \(raw_weights\) is not"):
        train_step(model, batches(tiny_data), optimizer, gradnorm, TASK_LIST, step=1)
    assert unchanged(before, model, gradnorm)
    hook.remove()
    with torch.no_grad():
        gradnorm.raw_weights[0] = NAN
    with pytest.raises(NonFiniteError, match=r"the weighting's parameters \(raw_weights\) are not finite"):
        train_step(model, batches(tiny_data), optimizer, gradnorm, TASK_LIST, step=2)
    assert unchanged(before, model)


def test_a_nan_loss_is_found_before_the_weighting_records_it(tiny_data, tiny_model_config):
    from mtl_tutorial.weightings import DWA

    model = MultiTaskModel(tiny_model_config, TASK_LIST, 400)
    with torch.no_grad():
        model.heads["source"].linear.bias.fill_(math.inf)
    dwa = DWA(3, steps_per_epoch=10)
    with pytest.raises(NonFiniteLossError, match="step 3: the loss of task 'source' is nan"):
        train_step(model, batches(tiny_data), torch.optim.SGD(model.parameters(), lr=0.1), dwa, TASK_LIST, step=3)
    assert dwa.calls.item() == 0 and torch.all(dwa.epoch_sum == 0)  # its loss history is not poisoned


def test_the_trainer_saves_nothing_and_points_to_the_last_good_checkpoint(
        tiny_data, tiny_model_config, tiny_train_config, tmp_path):
    config = dataclasses.replace(tiny_train_config, eval_every=2)
    trainer = make_trainer(tiny_data, tiny_model_config, config)
    path = tmp_path / "run.pt"
    trainer.fit(until_step=2, checkpoint=path)
    saved = path.read_bytes()
    nan_into_the_trunk_from(trainer.model, "generation")
    before = snapshot(trainer.model)
    with pytest.raises(NonFiniteError) as error:
        trainer.fit(checkpoint=path)
    message = str(error.value)
    assert "step 3: the gradient" in message and "task 'generation'" in message
    assert f"the last good checkpoint is {path} (after step 2)" in message
    assert "allow_changes=('lr', 'grad_clip')" in message and "\n" not in message
    assert unchanged(before, trainer.model) and trainer.step == 2
    assert path.read_bytes() == saved and sorted(tmp_path.iterdir()) == [path]
    state = torch.load(path, weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_a_failure_before_the_first_checkpoint_leaves_none(tiny_data, tiny_model_config, tiny_train_config, tmp_path):
    trainer = make_trainer(tiny_data, tiny_model_config, tiny_train_config)
    nan_into_the_trunk_from(trainer.model, "sentiment")
    with pytest.raises(NonFiniteError, match=r"step 1: .*this run wrote no checkpoint yet \(the first comes after "
                                             r"step 4"):
        trainer.fit(checkpoint=tmp_path / "run.pt")
    assert not any(tmp_path.iterdir())


def test_a_lower_learning_rate_resumes_from_the_last_good_checkpoint(
        tiny_data, tiny_model_config, tiny_train_config, tmp_path):
    path = tmp_path / "run.pt"
    make_trainer(tiny_data, tiny_model_config, tiny_train_config).fit(until_step=4, checkpoint=path)
    slower = dataclasses.replace(tiny_train_config, lr=1e-4)
    trainer = make_trainer(tiny_data, tiny_model_config, slower)
    with pytest.raises(ValueError, match=r"lr: 0.001 there, 0.0001 here\); .* or pass allow_changes=\('lr',\)"):
        trainer.load_checkpoint(path)
    with pytest.raises(ValueError, match="a resume can change only"):
        trainer.load_checkpoint(path, allow_changes=("seed",))
    trainer.load_checkpoint(path, allow_changes=("lr",))
    assert trainer.scheduler.base_lrs == [1e-4, 1e-4]
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4 * trainer.scheduler.lr_lambdas[0](4))
    trainer.fit()
    assert trainer.step == tiny_train_config.max_steps
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-5)  # the schedule ends at 10% of lr


# ------------------------------------------------------------------ 2. settings that train wrongly
@pytest.mark.parametrize("fields, message", [
    ({"grad_clip": 0.0}, r"TrainConfig.grad_clip=0.0 is out of range; it must be finite and > 0, or None"),
    ({"grad_clip": -1.0}, r"grad_clip=-1.0 is out of range"),
    ({"grad_clip": NAN}, r"grad_clip=nan is out of range"),
    ({"grad_clip": math.inf}, r"grad_clip=inf is out of range"),
    ({"tasks": ("sentiment", "topic")}, r"unknown tasks \['topic'\]; valid tasks are: sentiment, source, generation"),
    ({"lr": NAN}, r"TrainConfig.lr=nan is out of range; it must be finite and >= 0"),
    ({"lr": -1e-3}, r"TrainConfig.lr=-0.001 is out of range"),
    ({"lr": math.inf}, r"TrainConfig.lr=inf is out of range"),
    ({"weight_decay": -0.01}, r"TrainConfig.weight_decay=-0.01 is out of range; it must be finite and >= 0"),
    ({"weight_decay": NAN}, r"TrainConfig.weight_decay=nan"),
    ({"warmup_steps": -1}, r"TrainConfig.warmup_steps=-1 is out of range; it must be an integer >= 0"),
    ({"mixing_temperature": NAN}, r"TrainConfig.mixing_temperature=nan is out of range; it must be > 0"),
    ({"mixing_temperature": 0.0}, r"TrainConfig.mixing_temperature=0.0 is out of range"),
    ({"patience": -1}, r"TrainConfig.patience=-1 is out of range; it must be an integer >= 0"),
    ({"batch_size": 0}, r"TrainConfig.batch_size=0 is out of range; it must be a positive integer"),
    ({"prefix_dropout": NAN}, r"TrainConfig.prefix_dropout=nan is out of range; it must be in \[0, 1\]"),
    ({"weights": {"sentiment": NAN, "source": 1.0, "generation": 1.0}},
     r"TrainConfig.weights\['sentiment'\]=nan is out of range; it must be finite and >= 0"),
    ({"aggregator": "cagrad", "aggregator_options": {"c": math.inf}},
     r"aggregator_options=\{'c': inf\}: CAGrad's radius c must be finite and >= 0, got inf"),
    ({"aggregator": "cagrad", "aggregator_options": {"c": NAN}}, r"radius c must be finite and >= 0, got nan"),
    ({"aggregator": "nash_mtl", "aggregator_options": {"max_iterations": 0}},
     r"max_iterations \(Newton steps\) must be an integer >= 1, got 0"),
    ({"aggregator": "mgda", "aggregator_options": {"c": 0.5}}, r"'mgda' has no option 'c'"),
])
def test_settings_that_train_wrongly_are_refused_at_construction(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**fields)


def test_the_edges_of_the_valid_ranges_are_accepted():
    config = TrainConfig(grad_clip=None, lr=0.0, weight_decay=0.0, warmup_steps=0, patience=0,
                         mixing="temperature", mixing_temperature=math.inf, tasks=("source",))
    assert config.grad_clip is None and config.tasks == ("source",)


@pytest.mark.parametrize("alpha", [NAN, -1.0])
def test_a_gradnorm_alpha_that_trains_wrongly_is_refused_when_the_trainer_is_built(
        alpha, tiny_data, tiny_model_config, tiny_train_config):
    config = dataclasses.replace(tiny_train_config, weighting="gradnorm", weighting_options={"alpha": alpha})
    with pytest.raises(ValueError, match=f"GradNorm's alpha must be finite and >= 0, got {alpha}"):
        make_trainer(tiny_data, tiny_model_config, config)


def test_no_clipping_trains(tiny_data, tiny_model_config, tiny_train_config):
    history = make_trainer(tiny_data, tiny_model_config,
                           dataclasses.replace(tiny_train_config, grad_clip=None)).fit(until_step=2)
    assert all(math.isfinite(x) for x in history.objective)


# ------------------------------------------------------------------ 3. checkpoints
@pytest.fixture
def checkpoint(tiny_data, tiny_model_config, tiny_train_config, tmp_path):
    path = tmp_path / "run.pt"
    make_trainer(tiny_data, tiny_model_config, tiny_train_config).fit(until_step=2, checkpoint=path)
    return path


def other_val(tiny_data, task):
    """The validation split with one example of ``task`` dropped."""
    data = tiny_data["val"][task]
    fewer = EncodedTask(data.task, data.ids[1:], data.labels and data.labels[1:], data.prefixed and data.prefixed[1:])
    return {**tiny_data["val"], task: fewer}


def test_a_resume_on_other_data_is_refused(checkpoint, tiny_data, tiny_model_config, tiny_train_config):
    trainer = make_trainer(tiny_data, tiny_model_config, tiny_train_config, val=other_val(tiny_data, "source"))
    with pytest.raises(ValueError, match=r"belongs to another run: the encoded val examples of task 'source' "
                                         r"differ \(another corpus split, tokenizer"):
        trainer.load_checkpoint(checkpoint)
    assert trainer.step == 0


def test_a_resume_on_another_model_is_refused(checkpoint, tiny_data, tiny_model_config, tiny_train_config):
    wider = dataclasses.replace(tiny_model_config, d_model=32)
    with pytest.raises(ValueError, match=r"the model's config differs \(d_model: 16 there, 32 here\)"):
        make_trainer(tiny_data, wider, tiny_train_config).load_checkpoint(checkpoint)
    with pytest.raises(ValueError, match=r"parameter 'trunk.embedding.weight' is \(\[400, 16\], 'torch.float32'\) "
                                         r"there, \(\[401, 16\], 'torch.float32'\) here"):
        make_trainer(tiny_data, tiny_model_config, tiny_train_config, vocab_size=401).load_checkpoint(checkpoint)
    from mtl_tutorial.architectures.adapters import AdapterModel

    tasks = [TASKS[n] for n in tiny_train_config.tasks]
    adapters = Trainer(AdapterModel(tiny_model_config, tasks, 400), tasks, tiny_data["train"], tiny_data["val"],
                       tiny_train_config)
    with pytest.raises(ValueError, match="the model is a AdapterModel here, a MultiTaskModel there"):
        adapters.load_checkpoint(checkpoint)


def test_a_resume_with_another_description_is_refused(tiny_data, tiny_model_config, tiny_train_config, tmp_path):
    path = tmp_path / "run.pt"
    described = make_trainer(tiny_data, tiny_model_config, tiny_train_config, description={"tokenizer": "bpe-400"})
    described.fit(until_step=2, checkpoint=path)
    with pytest.raises(ValueError, match="the run's description differs in 'tokenizer'"):
        make_trainer(tiny_data, tiny_model_config, tiny_train_config,
                     description={"tokenizer": "word-400"}).load_checkpoint(path)
    with pytest.raises(TypeError, match="description must hold JSON values"):
        make_trainer(tiny_data, tiny_model_config, tiny_train_config, description={"tokenizer": object()})


def test_toggling_the_progress_bar_resumes(checkpoint, tiny_data, tiny_model_config, tiny_train_config):
    straight = make_trainer(tiny_data, tiny_model_config, tiny_train_config)
    straight.fit(until_step=3)
    trainer = make_trainer(tiny_data, tiny_model_config, dataclasses.replace(tiny_train_config, progress=True))
    trainer.load_checkpoint(checkpoint)  # restores torch's global RNG: nothing may reseed it before fit
    assert trainer.step == 2
    trainer.fit(until_step=3)
    assert all(torch.equal(p, q) for p, q in zip(straight.model.parameters(), trainer.model.parameters()))


def test_a_checkpoint_from_before_a_new_config_field_resumes_at_its_default(checkpoint, tiny_data, tiny_model_config,
                                                                            tiny_train_config):
    state = torch.load(checkpoint, weights_only=True)
    del state["config"]["batch_sampling"]  # written before the field existed
    torch.save(state, checkpoint)
    trainer = make_trainer(tiny_data, tiny_model_config, tiny_train_config)
    trainer.load_checkpoint(checkpoint)
    assert trainer.step == 2
    with pytest.raises(ValueError, match="batch_sampling: 'length_pools' there, 'uniform' here"):
        make_trainer(tiny_data, tiny_model_config,
                     dataclasses.replace(tiny_train_config, batch_sampling="uniform")).load_checkpoint(checkpoint)


def test_a_checkpoint_write_that_fails_half_way_keeps_the_previous_one(
        checkpoint, tiny_data, tiny_model_config, tiny_train_config, monkeypatch):
    good = checkpoint.read_bytes()
    trainer = make_trainer(tiny_data, tiny_model_config, tiny_train_config)
    trainer.load_checkpoint(checkpoint)
    trainer.fit(until_step=3)

    def half_write(obj, f, *args, **kwargs):
        f.write(good[: len(good) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", half_write)
    with pytest.raises(OSError, match="No space left"):
        trainer.save_checkpoint(checkpoint)
    assert checkpoint.read_bytes() == good
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == [checkpoint.name]  # no temporary file left
    monkeypatch.undo()
    make_trainer(tiny_data, tiny_model_config, tiny_train_config).load_checkpoint(checkpoint)  # still loads


def test_a_truncated_checkpoint_is_named_with_the_repair(checkpoint, tiny_data, tiny_model_config, tiny_train_config):
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(CorruptFileError, match=f"cannot read checkpoint {checkpoint} .*; delete it and train again"):
        make_trainer(tiny_data, tiny_model_config, tiny_train_config).load_checkpoint(checkpoint)


# ------------------------------------------------------------------ 4. empty evaluation data
@pytest.mark.parametrize("task", ["sentiment", "generation"])
def test_evaluating_no_examples_names_the_task(task, tiny_model_config):
    model = MultiTaskModel(tiny_model_config, TASK_LIST, 400)
    empty = EncodedTask(TASKS[task], [], labels=[] if task == "sentiment" else None,
                        prefixed=None if task == "sentiment" else [])
    with pytest.raises(ValueError, match=f"cannot evaluate task '{task}': its split has no examples"):
        evaluate(model, TASKS[task], empty)


def test_the_trainer_refuses_an_empty_validation_split(tiny_data, tiny_model_config, tiny_train_config):
    empty = EncodedTask(TASKS["source"], [], labels=[])
    with pytest.raises(ValueError, match=r"val_data has no examples for tasks \['source'\]"):
        make_trainer(tiny_data, tiny_model_config, tiny_train_config, val={**tiny_data["val"], "source": empty})
