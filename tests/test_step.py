import pytest
import torch

from mtl_tutorial.aggregators import AGGREGATORS, MGDA, Mean, UPGrad, make_aggregator
from mtl_tutorial.batching import TaskStream
from mtl_tutorial.models import MultiTaskModel
from mtl_tutorial.step import NonFiniteLossError, train_step
from mtl_tutorial.tasks import TASKS
from mtl_tutorial.weightings import Equal, Static, Uncertainty

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
    with pytest.raises(NonFiniteLossError, match="step 17: the loss of task 'source' is nan; nothing was applied"):
        train_step(model, batches(tiny_data), torch.optim.SGD(model.parameters(), lr=0.1), Equal(3), TASK_LIST, step=17)


def test_weighting_rejects_wrong_number_of_losses():
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        Equal(3)(torch.ones(2))


# ------------------------------------------------------------------ the aggregator path
def nodrop_model(tiny_model_config, seed=0):
    config = tiny_model_config.__class__(**{**tiny_model_config.__dict__, "dropout": 0.0})
    torch.manual_seed(seed)
    return MultiTaskModel(config, TASK_LIST, 400)


def grads(params):
    return [None if p.grad is None else p.grad.clone() for p in params]


def test_without_aggregator_the_step_is_one_backward_of_the_objective_bit_for_bit(tiny_data, tiny_model_config):
    b = batches(tiny_data)
    model = nodrop_model(tiny_model_config)
    reference = nodrop_model(tiny_model_config)
    weighting = Uncertainty(3, initial_log_variance=0.2)
    reference_weighting = Uncertainty(3, initial_log_variance=0.2)
    train_step(model, b, torch.optim.SGD(list(model.parameters()) + list(weighting.parameters()), lr=0.0),
               weighting, TASK_LIST, grad_clip=None)
    losses = torch.stack([t.loss(reference(t.name, b[t.name].inputs), b[t.name].targets) for t in TASK_LIST])
    reference_weighting(losses).backward()
    for p, q in zip(list(model.parameters()) + list(weighting.parameters()),
                    list(reference.parameters()) + list(reference_weighting.parameters())):
        assert torch.equal(p.grad, q.grad)


def test_mean_aggregator_with_unit_weights_is_the_equal_step_on_the_trunk(tiny_data, tiny_model_config):
    b = batches(tiny_data)
    plain, aggregated = nodrop_model(tiny_model_config), nodrop_model(tiny_model_config)
    train_step(plain, b, torch.optim.SGD(plain.parameters(), lr=0.0), Equal(3), TASK_LIST, grad_clip=None)
    train_step(aggregated, b, torch.optim.SGD(aggregated.parameters(), lr=0.0), Static([1.0] * 3), TASK_LIST,
               grad_clip=None, aggregator=Mean())
    for p, q in zip(plain.shared_parameters(), aggregated.shared_parameters()):
        torch.testing.assert_close(q.grad, p.grad)  # mean of rows g_t = gradient of (1/3) sum L_t
    for t in TASK_LIST:  # heads: gradient of the objective, sum_t L_t = 3 x the equal objective
        for p, q in zip(plain.task_parameters(t.name), aggregated.task_parameters(t.name)):
            torch.testing.assert_close(q.grad, 3 * p.grad)


def test_shared_gradient_is_the_aggregated_weighted_jacobian(tiny_data, tiny_model_config):
    b = batches(tiny_data)
    model = nodrop_model(tiny_model_config)
    weights = [0.5, 0.2, 0.3]
    rows = []
    for w, t in zip(weights, TASK_LIST):  # J[t] = w_t grad L_t, by hand
        model.zero_grad()
        (w * t.loss(model(t.name, b[t.name].inputs), b[t.name].targets)).backward()
        rows.append(torch.cat([p.grad.flatten() for p in model.shared_parameters()]))
    J = torch.stack(rows)  # (3, n)
    expected = MGDA()(J)
    train_step(model, b, torch.optim.SGD(model.parameters(), lr=0.0), Static(weights), TASK_LIST,
               grad_clip=None, aggregator=MGDA())
    got = torch.cat([p.grad.flatten() for p in model.shared_parameters()])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-7)
    assert (J.double() @ got.double() >= -1e-6 * J.norm(dim=1).double() * got.norm().double()).all()


def test_weighting_parameters_get_the_objectives_gradient_with_an_aggregator(tiny_data, tiny_model_config):
    b = batches(tiny_data)
    plain, aggregated = nodrop_model(tiny_model_config), nodrop_model(tiny_model_config)
    w_plain, w_aggregated = Uncertainty(3, 0.1), Uncertainty(3, 0.1)
    for model, weighting, aggregator in ((plain, w_plain, None), (aggregated, w_aggregated, UPGrad())):
        optimizer = torch.optim.SGD(list(model.parameters()) + list(weighting.parameters()), lr=0.0)
        train_step(model, b, optimizer, weighting, TASK_LIST, grad_clip=None, aggregator=aggregator)
    torch.testing.assert_close(w_aggregated.log_variances.grad, w_plain.log_variances.grad)
    for t in TASK_LIST:
        for p, q in zip(plain.task_parameters(t.name), aggregated.task_parameters(t.name)):
            torch.testing.assert_close(q.grad, p.grad)


@pytest.mark.parametrize("name", list(AGGREGATORS))
def test_every_aggregator_trains_with_an_absent_task(name, tiny_data, tiny_model_config):
    model = MultiTaskModel(tiny_model_config, TASK_LIST, 400)
    before = [p.detach().clone() for p in model.shared_parameters()]
    log = train_step(model, batches(tiny_data, ["sentiment", "generation"]), torch.optim.SGD(model.parameters(), lr=0.1),
                     Equal(3), TASK_LIST, aggregator=make_aggregator(name))
    assert set(log.losses) == {"sentiment", "generation"}
    assert all(p.grad is None for p in model.task_parameters("source"))
    assert all(torch.isfinite(p.grad).all() for p in model.shared_parameters())
    assert any(not torch.equal(p, q) for p, q in zip(model.shared_parameters(), before))


def test_an_absent_task_gets_no_row_in_the_jacobian(tiny_data, tiny_model_config):
    b = batches(tiny_data, ["sentiment"])
    plain, aggregated = nodrop_model(tiny_model_config), nodrop_model(tiny_model_config)
    train_step(plain, b, torch.optim.SGD(plain.parameters(), lr=0.0), Static([1.0] * 3), TASK_LIST, grad_clip=None)
    train_step(aggregated, b, torch.optim.SGD(aggregated.parameters(), lr=0.0), Static([1.0] * 3), TASK_LIST,
               grad_clip=None, aggregator=Mean())
    for p, q in zip(plain.shared_parameters(), aggregated.shared_parameters()):
        torch.testing.assert_close(q.grad, p.grad)  # the mean of one row, not a third of it


def test_trainer_passes_the_aggregator_through(tiny_data, tiny_model_config, tiny_train_config, monkeypatch):
    import mtl_tutorial.trainer as trainer_module
    from mtl_tutorial.trainer import Trainer

    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("aggregator"))
        return train_step(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "train_step", spy)
    tasks = [TASKS[n] for n in tiny_train_config.tasks]
    model = MultiTaskModel(tiny_model_config, tasks, vocab_size=400)
    aggregator = make_aggregator("pcgrad")
    trainer = Trainer(model, tasks, tiny_data["train"], tiny_data["val"], tiny_train_config, aggregator=aggregator)
    history = trainer.fit(until_step=2)
    assert seen == [aggregator, aggregator] and all(torch.isfinite(torch.tensor(history.objective)))


def test_the_step_reports_the_gramian_of_the_rows_it_aggregated(tiny_data, tiny_model_config):
    from mtl_tutorial.jacobian import task_jacobian

    b = batches(tiny_data, ["sentiment", "generation"])  # source sits out: NaN row and column
    model = nodrop_model(tiny_model_config)
    losses = [t.loss(model(t.name, b[t.name].inputs), b[t.name].targets) for t in TASK_LIST if t.name in b]
    J = task_jacobian(losses, model.shared_parameters())  # (2, n), unit weights
    log = train_step(model, b, torch.optim.SGD(model.parameters(), lr=0.0), Static([1.0] * 3), TASK_LIST,
                     grad_clip=None, aggregator=Mean())
    G = torch.tensor(log.gramian, dtype=torch.float64)  # (3, 3)
    torch.testing.assert_close(G[[0, 2]][:, [0, 2]], (J @ J.T).double(), rtol=1e-4, atol=1e-9)
    assert torch.isnan(G[1]).all() and torch.isnan(G[:, 1]).all()
    plain = train_step(model, b, torch.optim.SGD(model.parameters(), lr=0.0), Equal(3), TASK_LIST)
    assert plain.gramian is None  # the default step computes no Jacobian
