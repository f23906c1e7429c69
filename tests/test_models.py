import pytest
import torch

from mtl_tutorial.config import ModelConfig
from mtl_tutorial.models import MultiTaskModel
from mtl_tutorial.tasks import GENERATION, SENTIMENT, SOURCE

TASKS = [SENTIMENT, SOURCE, GENERATION]
VOCAB = 300


@pytest.mark.parametrize("trunk", ["transformer", "lstm"])
def test_output_shapes(trunk, tiny_model_config):
    config = ModelConfig(**{**tiny_model_config.__dict__, "trunk": trunk})
    model = MultiTaskModel(config, TASKS, VOCAB)
    ids = torch.randint(7, VOCAB, (3, 11))  # (B, L)
    assert model("sentiment", ids).shape == (3, 2)
    assert model("source", ids).shape == (3, 2)
    assert model("generation", ids).shape == (3, 11, VOCAB)


def test_causal_trunk_does_not_look_ahead(tiny_model_config):
    model = MultiTaskModel(tiny_model_config, TASKS, VOCAB).eval()
    ids = torch.randint(7, VOCAB, (2, 10))
    changed = ids.clone()
    changed[:, 6:] = 8
    a, b = model("generation", ids), model("generation", changed)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


@pytest.mark.parametrize("trunk", ["transformer", "lstm"])
def test_classifier_ignores_padding(trunk, tiny_model_config):
    config = ModelConfig(**{**tiny_model_config.__dict__, "trunk": trunk})
    model = MultiTaskModel(config, TASKS, VOCAB).eval()
    ids = torch.randint(7, VOCAB, (1, 6))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model("sentiment", ids), model("sentiment", padded))


def test_shared_and_task_parameters_partition_the_model(tiny_model_config):
    model = MultiTaskModel(tiny_model_config, TASKS, VOCAB)
    shared = {id(p) for p in model.shared_parameters()}
    per_task = [{id(p) for p in model.task_parameters(t.name)} for t in TASKS]
    everything = {id(p) for p in model.parameters()}
    assert shared | set().union(*per_task) == everything
    assert all(not (shared & s) for s in per_task)
    assert model.task_parameters("generation") == []  # tied to the shared embedding
    counts = model.parameter_counts()
    assert counts["sentiment"] == 16 * 2 + 2


def test_task_gradients_reach_only_shared_and_own_parameters(tiny_model_config):
    model = MultiTaskModel(tiny_model_config, TASKS, VOCAB)
    ids = torch.randint(7, VOCAB, (2, 5))
    model("sentiment", ids).sum().backward()
    assert all(p.grad is not None for p in model.task_parameters("sentiment"))
    assert all(p.grad is None for p in model.task_parameters("source"))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.shared_parameters())


def test_article_configuration():
    config = ModelConfig.article()
    model = MultiTaskModel(config, TASKS, 10_000)
    assert config.trunk == "lstm" and config.d_model == 128
    assert model.trunk.lstm.hidden_size == 128 and model.trunk.embedding.embedding_dim == 128


def test_bad_inputs(tiny_model_config):
    with pytest.raises(ValueError, match="valid choices are: transformer, lstm"):
        ModelConfig(trunk="gru")
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(d_model=10, num_heads=4)
    model = MultiTaskModel(tiny_model_config, TASKS, VOCAB)
    with pytest.raises(KeyError, match="its tasks are: sentiment, source, generation"):
        model("topic", torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \(B, L\)"):
        model("sentiment", torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match="max_length"):
        model("sentiment", torch.ones(1, 33, dtype=torch.long))
