import math

import pytest
import torch

from mtl_tutorial.data import Snippet
from mtl_tutorial.tasks import GENERATION, IGNORE_INDEX, SENTIMENT, SOURCE, TASKS, get_task

SNIPPETS = [Snippet("good", "fresh", "a"), Snippet("bad", "rotten", "a"), Snippet("story", "plot", "a")]


def test_selection_and_targets():
    assert [SENTIMENT.target(s) for s in SENTIMENT.select(SNIPPETS)] == [1, 0]
    assert [SOURCE.target(s) for s in SOURCE.select(SNIPPETS)] == [0, 0, 1]
    assert GENERATION.select(SNIPPETS) == SNIPPETS


def test_uniform_logits_give_log_num_classes():
    assert SENTIMENT.loss(torch.zeros(4, 2), torch.tensor([0, 1, 1, 0])).item() == pytest.approx(math.log(2))
    logits = torch.zeros(2, 3, 50)
    targets = torch.tensor([[5, 6, IGNORE_INDEX], [7, IGNORE_INDEX, IGNORE_INDEX]])
    assert GENERATION.loss(logits, targets).item() == pytest.approx(math.log(50))


def test_language_model_loss_ignores_padding():
    logits = torch.randn(1, 3, 10)
    targets = torch.tensor([[1, 2, IGNORE_INDEX]])
    expected = torch.nn.functional.cross_entropy(logits[0, :2], targets[0, :2])
    torch.testing.assert_close(GENERATION.loss(logits, targets), expected)


def test_registry_and_bad_inputs():
    assert list(TASKS) == ["sentiment", "source", "generation"]
    with pytest.raises(KeyError, match="valid tasks are: sentiment, source, generation"):
        get_task("topic")
    with pytest.raises(ValueError, match=r"expects logits \(B, C\)"):
        SENTIMENT.loss(torch.zeros(4, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expects logits \(B, L, V\)"):
        GENERATION.loss(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))
