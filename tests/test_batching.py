import pytest
import torch

from mtl_tutorial.batching import TaskSchedule, TaskStream, collate, encode_task, mixing_rates
from mtl_tutorial.data import Snippet
from mtl_tutorial.tasks import GENERATION, IGNORE_INDEX, SENTIMENT, SOURCE


def test_language_model_batches_shift_by_one(tiny_tokenizer):
    data = encode_task(GENERATION, [Snippet("a fine film", "fresh", "m"), Snippet("dull", "rotten", "m")], tiny_tokenizer)
    batch = collate(data, [0, 1], use_prefix=[True, False])
    ids0 = data.prefixed[0]
    assert batch.inputs[0, : len(ids0) - 1].tolist() == ids0[:-1]
    assert batch.targets[0, : len(ids0) - 1].tolist() == ids0[1:]
    assert batch.inputs[1, 0].item() == tiny_tokenizer.bos_id
    n1 = len(data.ids[1]) - 1
    assert (batch.targets[1, n1:] == IGNORE_INDEX).all() and (batch.inputs[1, n1 + 1 :] == 0).all()


def test_stream_covers_an_epoch_without_repeats(tiny_data):
    data = tiny_data["train"]["sentiment"]
    stream = TaskStream(data, batch_size=8, seed=0)
    seen = []
    for _ in range(len(data) // 8):
        seen.extend(stream.order[stream.position : stream.position + 8].tolist())
        stream.next()
    assert len(seen) == len(set(seen)) == (len(data) // 8) * 8
    assert stream.epoch == 0


def test_stream_state_round_trip(tiny_data):
    a = TaskStream(tiny_data["train"]["generation"], 8, seed=1)
    for _ in range(40):
        a.next()
    b = TaskStream(tiny_data["train"]["generation"], 8, seed=99)
    b.load_state_dict(a.state_dict())
    for _ in range(5):
        x, y = a.next(), b.next()
        assert torch.equal(x.inputs, y.inputs) and torch.equal(x.targets, y.targets)


def test_mixing_rates():
    torch.testing.assert_close(mixing_rates([100, 300], "proportional"), torch.tensor([0.25, 0.75], dtype=torch.float64))
    t = mixing_rates([100, 300], "temperature", temperature=2.0)
    expected = torch.tensor([0.25**0.5, 0.75**0.5], dtype=torch.float64)
    torch.testing.assert_close(t, expected / expected.sum())
    torch.testing.assert_close(mixing_rates([100, 300], "proportional", limit=100), torch.tensor([0.5, 0.5], dtype=torch.float64))
    very_hot = mixing_rates([1, 1000], "temperature", temperature=1e6)
    torch.testing.assert_close(very_hot, torch.tensor([0.5, 0.5], dtype=torch.float64), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="valid: all, round_robin"):
        mixing_rates([1, 2], "uniform")


def test_schedules():
    names = ["sentiment", "source", "generation"]
    assert TaskSchedule(names, [1, 1, 1], "all", 2.0, 0).tasks_for_step(5) == names
    rr = TaskSchedule(names, [1, 1, 1], "round_robin", 2.0, 0)
    assert [rr.tasks_for_step(s)[0] for s in range(4)] == ["sentiment", "source", "generation", "sentiment"]
    prop = TaskSchedule(names, [100, 100, 800], "proportional", 2.0, 0)
    draws = [prop.tasks_for_step(s)[0] for s in range(2000)]
    assert 0.75 < draws.count("generation") / 2000 < 0.85
    # T5's cap K: with K = 100 the three tasks count alike, so the draws are uniform
    capped = TaskSchedule(names, [100, 100, 800], "proportional", 2.0, 0, limit=100)
    torch.testing.assert_close(capped.rates, torch.full((3,), 1 / 3, dtype=torch.float64))


def test_bad_inputs(tiny_data, tiny_tokenizer):
    with pytest.raises(ValueError, match="no examples"):
        encode_task(SENTIMENT, [Snippet("story", "plot", "m")], tiny_tokenizer)
    with pytest.raises(ValueError, match="lower TrainConfig.batch_size"):
        TaskStream(tiny_data["train"]["source"], batch_size=10_000, seed=0)
    assert SOURCE.num_classes == 2
