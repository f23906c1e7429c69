"""Every sharing architecture: the task interface, sharing as claimed, determinism, training.

Table-driven over ``ARCHITECTURES``, so a new architecture gets the common tests for free. The
batches are built by the package's own ``collate`` from random token ids (no corpus needed).
"""

import pytest
import torch

from mtl_tutorial.aggregators import AGGREGATORS, UPGrad, make_aggregator
from mtl_tutorial.architectures import ARCHITECTURES, MultiTaskModel, make_architecture
from mtl_tutorial.architectures.cross_stitch import cross_stitch_init
from mtl_tutorial.batching import Batch, EncodedTask, collate
from mtl_tutorial.config import ExperimentConfig, ModelConfig, TokenizerConfig, TrainConfig
from mtl_tutorial.step import train_step
from mtl_tutorial.studies.pipeline import build_model
from mtl_tutorial.tasks import CLASSIFICATION, GENERATION, SENTIMENT, SOURCE
from mtl_tutorial.trainer import weighting_from_config
from mtl_tutorial.weightings import Equal

TASKS = [SENTIMENT, SOURCE, GENERATION]
VOCAB = 300
NAMES = list(ARCHITECTURES)


def tiny_config(**changes) -> ModelConfig:
    return ModelConfig(**{"d_model": 16, "num_layers": 1, "num_heads": 2, "d_ff": 32, "max_length": 16, **changes})


def build(name: str, seed: int = 0, config: ModelConfig | None = None, **options):
    torch.manual_seed(seed)
    return make_architecture(name, config or tiny_config(), TASKS, VOCAB, **options)


def make_batches(seed: int = 0, size: int = 4) -> dict[str, Batch]:
    """One batch per task, of real-looking sequences ``<bos> tokens <eos>`` of 3 to 12 tokens."""
    g = torch.Generator().manual_seed(seed)
    ids = [[1, *torch.randint(7, VOCAB, (int(n),), generator=g).tolist(), 2]
           for n in torch.randint(1, 11, (size,), generator=g)]
    out = {}
    for task in TASKS:
        if task.kind == CLASSIFICATION:
            labels = torch.randint(0, task.num_classes, (size,), generator=g).tolist()
            data = EncodedTask(task, ids, labels=labels)
            out[task.name] = collate(data, range(size))
        else:
            prefixed = [[4, *s[1:]] for s in ids]  # <fresh> instead of <bos>
            out[task.name] = collate(EncodedTask(task, ids, prefixed=prefixed), range(size), [True, False] * (size // 2))
    return out


def loss_of(model, task, batch: Batch) -> torch.Tensor:
    return task.loss(model(task.name, batch.inputs), batch.targets)


def perturbed(model):
    """Off the initial point (zero up-projections, identical columns), where every path is live."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def grads_from(model, task, batch) -> dict[int, torch.Tensor | None]:
    model.zero_grad(set_to_none=True)
    loss_of(model, task, batch).backward()
    return {id(p): p.grad for p in model.parameters()}


def nonzero(grad) -> bool:
    return grad is not None and bool(grad.abs().sum() > 0)


def exclusive_parameters(model, task: str):
    """What each architecture claims only ``task``'s loss reaches (cross-stitch columns are owned, not exclusive)."""
    if isinstance(model, ARCHITECTURES["cross_stitch"]):  # the head, less a generation head tied to the column
        column = {id(p) for p in model.columns[task].parameters()}
        return [p for p in model.heads[task].parameters() if id(p) not in column]
    return model.task_parameters(task)


# ---------------------------------------------------------------- the task interface
@pytest.mark.parametrize("name", NAMES)
def test_output_shapes(name):
    model = build(name)
    ids = torch.randint(7, VOCAB, (3, 11))  # (B, L)
    assert model("sentiment", ids).shape == (3, 2)
    assert model("source", ids).shape == (3, 2)
    assert model("generation", ids).shape == (3, 11, VOCAB)


@pytest.mark.parametrize("name", NAMES)
def test_generation_does_not_look_ahead(name):
    model = build(name).eval()
    ids = torch.randint(7, VOCAB, (2, 10))
    changed = ids.clone()
    changed[:, 6:] = 8
    a, b = model("generation", ids), model("generation", changed)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


@pytest.mark.parametrize("name", NAMES)
def test_classification_ignores_padding(name):
    model = build(name).eval()
    ids = torch.randint(7, VOCAB, (2, 6))
    padded = torch.cat([ids, torch.zeros(2, 4, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model("sentiment", ids), model("sentiment", padded))


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_name_the_problem(name):
    model = build(name)
    with pytest.raises(KeyError, match="its tasks are: sentiment, source, generation"):
        model("topic", torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \(B, L\)"):
        model("sentiment", torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match="max_length=16"):
        model("sentiment", torch.ones(1, 17, dtype=torch.long))
    with pytest.raises(KeyError, match="unknown task 'topic'"):
        model.task_parameters("topic")


# ---------------------------------------------------------------- sharing as claimed
@pytest.mark.parametrize("name", NAMES)
def test_shared_and_task_parameters_partition_the_model(name):
    model = build(name)
    shared = {id(p) for p in model.shared_parameters()}
    per_task = [{id(p) for p in model.task_parameters(t.name)} for t in TASKS]
    assert shared | set().union(*per_task) == {id(p) for p in model.parameters()}
    assert all(not (shared & s) for s in per_task)
    assert all(not (a & b) for i, a in enumerate(per_task) for b in per_task[i + 1:])
    assert {id(p) for p in model.last_shared_parameters()} <= shared
    counts = model.parameter_counts()
    assert sum(counts.values()) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_every_task_reaches_every_shared_parameter(name):
    model, batches = perturbed(build(name)), make_batches()
    for task in TASKS:
        grads = grads_from(model, task, batches[task.name])
        dead = [i for i, p in enumerate(model.shared_parameters()) if not nonzero(grads[id(p)])]
        assert not dead, f"{task.name}'s loss gives no gradient to shared parameters {dead}"


@pytest.mark.parametrize("name", NAMES)
def test_task_parameters_get_gradient_from_their_task_only(name):
    model, batches = perturbed(build(name)), make_batches()
    for task in TASKS:
        grads = grads_from(model, task, batches[task.name])
        assert all(nonzero(grads[id(p)]) for p in model.task_parameters(task.name))
        for other in TASKS:
            if other is not task:
                assert not any(nonzero(grads[id(p)]) for p in exclusive_parameters(model, other.name))


def test_cross_stitch_columns_are_exclusive_only_when_the_units_are_the_identity():
    model, batches = perturbed(build("cross_stitch")), make_batches()
    source = model.columns["source"]
    column = [p for name, p in source.named_parameters() if not name.startswith("norm.")]  # its final norm is its own
    grads = grads_from(model, SENTIMENT, batches["sentiment"])
    assert all(nonzero(grads[id(p)]) for p in column)  # soft sharing: sentiment reaches source's column
    with torch.no_grad():
        for alpha in model.cross_stitch:
            alpha.copy_(torch.eye(3))
    grads = grads_from(model, SENTIMENT, batches["sentiment"])
    assert not any(nonzero(grads[id(p)]) for p in column)
    assert nonzero(grads[id(model.cross_stitch[0])])  # the unit itself still learns to mix


def test_cross_stitch_starts_near_the_identity_with_rows_summing_to_one():
    alpha = cross_stitch_init(3)
    torch.testing.assert_close(alpha.diagonal(), torch.full((3,), 0.9))
    torch.testing.assert_close(alpha.sum(1), torch.ones(3))
    torch.testing.assert_close(cross_stitch_init(2), torch.tensor([[0.9, 0.1], [0.1, 0.9]]))
    model = build("cross_stitch", config=tiny_config(num_layers=2))
    assert model.parameter_counts()["shared"] == 2 * 3 * 3
    assert all(torch.equal(a, alpha) for a in model.cross_stitch)


# ---------------------------------------------------------------- determinism
@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_model_and_outputs(name):
    a, b, c = build(name, seed=3), build(name, seed=3), build(name, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))
    ids = torch.randint(7, VOCAB, (2, 7))
    torch.manual_seed(0)
    out_a = a.train()("generation", ids)  # dropout on: the same torch seed gives the same masks
    torch.manual_seed(0)
    out_b = b.train()("generation", ids)
    assert torch.equal(out_a, out_b)


# ---------------------------------------------------------------- training
@pytest.mark.parametrize("name", NAMES)
def test_a_step_with_upgrad_changes_shared_and_task_parameters(name):
    model, batches = build(name), make_batches()
    before = {id(p): p.detach().clone() for p in model.parameters()}
    log = train_step(model, batches, torch.optim.SGD(model.parameters(), lr=0.1), Equal(3), TASKS,
                     aggregator=UPGrad())
    assert all(torch.isfinite(torch.tensor(v)) for v in log.losses.values()) and len(log.gramian) == 3
    changed = {id(p) for p in model.parameters() if not torch.equal(p, before[id(p)])}
    assert any(id(p) in changed for p in model.shared_parameters())
    for task in TASKS:
        params = model.task_parameters(task.name)
        assert not params or any(id(p) in changed for p in params)


@pytest.mark.parametrize("aggregator", list(AGGREGATORS))
@pytest.mark.parametrize("name", NAMES)
def test_every_aggregator_works_with_every_architecture(name, aggregator):
    model = build(name)
    log = train_step(model, make_batches(), torch.optim.SGD(model.parameters(), lr=0.1), Equal(3), TASKS,
                     aggregator=make_aggregator(aggregator))
    assert torch.isfinite(torch.tensor(log.gramian)).all()
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_gradnorm_balances_on_the_last_shared_layer(name):
    model = build(name)
    weighting = weighting_from_config(TrainConfig(weighting="gradnorm"), model)
    for _ in range(2):
        log = train_step(model, make_batches(), torch.optim.SGD([*model.parameters(), *weighting.parameters()], lr=0.1),
                         weighting, TASKS)
    assert sum(log.weights) == pytest.approx(3.0) and log.weights != [1.0, 1.0, 1.0]


# ---------------------------------------------------------------- the registry and the pipeline
def test_hard_is_todays_multitask_model_bit_for_bit():
    model = build("hard", seed=5)
    torch.manual_seed(5)
    reference = MultiTaskModel(tiny_config(), TASKS, VOCAB)
    assert type(model) is MultiTaskModel
    assert list(model.state_dict()) == list(reference.state_dict())
    assert all(torch.equal(x, y) for x, y in zip(model.state_dict().values(), reference.state_dict().values()))
    config = ExperimentConfig(model=tiny_config(), tokenizer=TokenizerConfig(max_length=16), train=TrainConfig(seed=5))
    built = build_model(config, TASKS, VOCAB)
    assert type(built) is MultiTaskModel
    assert all(torch.equal(x, y) for x, y in zip(built.state_dict().values(), reference.state_dict().values()))


def test_build_model_follows_the_config():
    config = ExperimentConfig(model=tiny_config(architecture="mmoe"), tokenizer=TokenizerConfig(max_length=16))
    assert type(build_model(config, TASKS, VOCAB)) is ARCHITECTURES["mmoe"]


def test_adapters_start_as_the_hard_sharing_model():
    adapters, hard = build("adapters", seed=2).eval(), build("hard", seed=2).eval()
    ids = torch.randint(7, VOCAB, (2, 9))
    for task in TASKS:
        assert torch.equal(adapters(task.name, ids), hard(task.name, ids))
    assert adapters.parameter_counts()["sentiment"] == 2 * (2 * 16 * 16 + 16 + 16) + (16 * 2 + 2)  # r = 16, D = 16


def test_mmoe_gates_are_distributions_and_see_no_future_token():
    model = build("mmoe", num_experts=3)
    ids = torch.tensor([[1, 9, 10, 11, 2, 0, 0]])
    gate = model.gate("sentiment", ids)  # (B, L, E)
    assert gate.shape == (1, 7, 3)
    torch.testing.assert_close(gate.sum(-1), torch.ones(1, 7))
    assert (gate - 1 / 3).abs().max() < 0.05  # near uniform at the start
    changed = ids.clone()
    changed[0, 3] = 12
    torch.testing.assert_close(model.gate("sentiment", changed)[:, :3], gate[:, :3])
    pooled = model.embedding(ids[:, :5]).mean(1)  # (1, D): the mean-pooled embedding of the real tokens
    torch.testing.assert_close(gate[:, 4], torch.softmax(model.gates["sentiment"](pooled), -1))


def test_text_to_text_reads_the_language_model_at_the_verbaliser_tokens():
    model = build("text_to_text").eval()
    assert model.added_tokens == ("<sentiment>", "<source>", "<generation>", "<review>")
    assert model.verbalisers == {"sentiment": (5, 4), "source": (VOCAB + 3, 6)}  # <rotten>, <fresh>; <review>, <plot>
    assert model.parameter_counts() == {"shared": sum(p.numel() for p in model.parameters()),
                                        "sentiment": 0, "source": 0, "generation": 0}
    ids = torch.tensor([[1, 9, 10, 2, 0], [1, 11, 12, 13, 2]])  # (B, L), right-padded
    prefixed = torch.cat([torch.full((2, 1), VOCAB), ids], dim=1)  # <sentiment> first
    full = model.lm_head(model.trunk(prefixed), prefixed)  # (B, 1 + L, V + 4)
    expected = torch.stack([full[0, 4, [5, 4]], full[1, 5, [5, 4]]])  # the last real token answers
    torch.testing.assert_close(model("sentiment", ids), expected)
    generation = torch.cat([torch.full((2, 1), VOCAB + 2), ids], dim=1)
    torch.testing.assert_close(model("generation", ids), model.lm_head(model.trunk(generation), generation)[:, 1:, :VOCAB])


def test_unknown_names_and_options_list_the_valid_ones():
    valid = "hard, cross_stitch, mmoe, adapters, text_to_text"
    with pytest.raises(KeyError, match=f"valid architectures are: {valid}"):
        make_architecture("soft", tiny_config(), TASKS, VOCAB)
    with pytest.raises(ValueError, match=f"valid choices are: {valid}"):
        ModelConfig(architecture="soft")
    with pytest.raises(TypeError, match="its options are: num_experts, expert_d_ff"):
        make_architecture("mmoe", tiny_config(), TASKS, VOCAB, experts=3)
    lstm = tiny_config(trunk="lstm")
    assert type(make_architecture("hard", lstm, TASKS, VOCAB)) is MultiTaskModel
    for name in NAMES[1:]:
        with pytest.raises(ValueError, match="trunk='transformer'"):
            make_architecture(name, lstm, TASKS, VOCAB)
