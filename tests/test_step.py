import pytest
import torch

from mtl_tutorial.batching import TaskStream
from mtl_tutorial.models import MultiTaskModel
from mtl_tutorial.step import NonFiniteLossError, train_step
from mtl_tutorial.tasks import TASKS
from mtl_tutorial.weightings import Equal, Static

TASK_LIST = list(TASKS.values())


def batches(tiny_data, names=tuple(TASKS)):
    return {n: TaskStream(tiny_data["train"][n], 8, seed=0).next() for n in names}


def test_equal_weighting_is_the_mean_of_task_losses(tiny_data, tiny_model_config):
    torch.manual_seed(0)
    model = MultiTaskModel(tiny_model_config, TASK_LIST, 400).eval()
    b = batches(tiny_data)
    with torch.no_grad():
        expected = torch.stack([t.loss(model(t.name, b[t.name].inputs), b[t.name].targets) for t in TASK_LIST])
    log = train_step(model, b, torch.optim.SGD(model.parameters(), lr=0.0), Equal(3), TASK_LIST)
    # train_step switches to train mode, and dropout changes the losses: compare with dropout off
    assert set(log.losses) == set(TASKS)
    assert log.weights == pytest.approx([1 / 3] * 3)
    model_nodrop = MultiTaskModel(tiny_model_config.__class__(**{**tiny_model_config.__dict__, "dropout": 0.0}), TASK_LIST, 400)
    model_nodrop.load_state_dict(model.state_dict())
    log = train_step(model_nodrop, b, torch.optim.SGD(model_nodrop.parameters(), lr=0.0), Equal(3), TASK_LIST)
    assert log.objective == pytest.approx(expected.mean().item(), rel=1e-5)
    assert [log.losses[t.name] for t in TASK_LIST] == pytest.approx(expected.tolist(), rel=1e-5)


def test_weighted_gradient_is_the_weighted_sum_of_task_gradients(tiny_data, tiny_model_config):
    config = tiny_model_config.__class__(**{**tiny_model_config.__dict__, "dropout": 0.0})
    torch.manual_seed(0)
    model = MultiTaskModel(config, TASK_LIST, 400)
    b = batches(tiny_data)
    weights = [0.5, 0.2, 0.3]
    per_task = []
    for t in TASK_LIST:
        model.zero_grad()
        t.loss(model(t.name, b[t.name].inputs), b[t.name].targets).backward()
        per_task.append(torch.cat([p.grad.flatten() for p in model.shared_parameters()]))
    expected = sum(w * g for w, g in zip(weights, per_task))
    train_step(model, b, torch.optim.SGD(model.parameters(), lr=0.0), Static(weights), TASK_LIST, grad_clip=None)
    got = torch.cat([p.grad.flatten() for p in model.shared_parameters()])
    torch.testing.assert_close(got, expected)


def test_absent_task_gets_no_gradient(tiny_data, tiny_model_config):
    model = MultiTaskModel(tiny_model_config, TASK_LIST, 400)
    log = train_step(model, batches(tiny_data, ["sentiment"]), torch.optim.SGD(model.parameters(), lr=0.1),
                     Equal(3), TASK_LIST)
    assert list(log.losses) == ["sentiment"]
    assert all(p.grad is None for p in model.task_parameters("source"))


def test_nan_guard_names_the_task_and_step(tiny_data, tiny_model_config):
    model = MultiTaskModel(tiny_model_config, TASK_LIST, 400)
    with torch.no_grad():
        model.heads["source"].linear.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="task 'source' is nan at step 17"):
        train_step(model, batches(tiny_data), torch.optim.SGD(model.parameters(), lr=0.1), Equal(3), TASK_LIST, step=17)


def test_weighting_rejects_wrong_number_of_losses():
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        Equal(3)(torch.ones(2))
