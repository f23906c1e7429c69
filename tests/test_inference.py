"""predict_all_tasks: the same outputs as one call per task, from a single trunk pass."""

import pytest
import torch

from mtl_tutorial.architectures import make_architecture
from mtl_tutorial.config import ModelConfig
from mtl_tutorial.inference import predict_all_tasks
from mtl_tutorial.models import MultiTaskModel
from mtl_tutorial.tasks import GENERATION, SENTIMENT, SOURCE

TASKS = [SENTIMENT, SOURCE, GENERATION]
VOCAB = 300


@pytest.mark.parametrize("trunk", ["transformer", "lstm"])
def test_equals_one_call_per_task(trunk, tiny_model_config):
    config = ModelConfig(**{**tiny_model_config.__dict__, "trunk": trunk})
    torch.manual_seed(0)
    model = MultiTaskModel(config, TASKS, VOCAB).eval()
    ids = torch.randint(7, VOCAB, (4, 9))  # (B, L)
    ids[1, 5:] = 0  # padding: the classifiers pool over real tokens only
    outputs = predict_all_tasks(model, ids)
    assert list(outputs) == ["sentiment", "source", "generation"]
    for task, logits in outputs.items():
        torch.testing.assert_close(logits, model(task, ids), rtol=0, atol=0)


def test_runs_the_trunk_once(tiny_model_config):
    model = MultiTaskModel(tiny_model_config, TASKS, VOCAB).eval()
    calls = []
    model.trunk.register_forward_hook(lambda *args: calls.append(1))
    ids = torch.randint(7, VOCAB, (2, 6))
    predict_all_tasks(model, ids)
    assert len(calls) == 1
    for task in model.heads:
        model(task, ids)
    assert len(calls) == 1 + len(TASKS)


def test_subset_of_tasks_in_the_order_asked(tiny_model_config):
    model = MultiTaskModel(tiny_model_config, TASKS, VOCAB).eval()
    outputs = predict_all_tasks(model, torch.randint(7, VOCAB, (2, 6)), ["generation", "sentiment"])
    assert list(outputs) == ["generation", "sentiment"]


def test_bad_inputs_name_the_problem(tiny_model_config):
    model = MultiTaskModel(tiny_model_config, TASKS, VOCAB)
    with pytest.raises(KeyError, match="no head for tasks \\['nli'\\]"):
        predict_all_tasks(model, torch.ones(1, 3, dtype=torch.long), ["nli"])
    with pytest.raises(ValueError, match="shape \\(B, L\\)"):
        predict_all_tasks(model, torch.ones(3, dtype=torch.long))


@pytest.mark.parametrize("architecture", ["adapters", "mmoe"])
def test_refuses_task_dependent_trunks(architecture, tiny_model_config):
    model = make_architecture(architecture, tiny_model_config, TASKS, VOCAB)
    with pytest.raises(TypeError, match="hidden states depend on the task"):
        predict_all_tasks(model, torch.ones(1, 3, dtype=torch.long))
