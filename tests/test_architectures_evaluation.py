"""Perplexity is computed over the same tokens for every architecture.

The text-to-text model puts a task prefix in front of every input, so its trunk reads one token
more than the others. These tests check that :func:`~mtl_tutorial.evaluation.evaluate` still
scores exactly the same targets for it as for hard sharing: every token after ``<bos>``,
``<eos>`` included, of the same validation snippets (some cut at ``max_length``), each predicted
from the same real tokens before it, with a softmax over the same vocabulary.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from mtl_tutorial.architectures import ARCHITECTURES, make_architecture
from mtl_tutorial.batching import EncodedTask
from mtl_tutorial.config import ModelConfig
from mtl_tutorial.evaluation import evaluate
from mtl_tutorial.tasks import GENERATION, IGNORE_INDEX, TASKS

TASK_LIST = list(TASKS.values())


def scored_targets(model, data: EncodedTask, monkeypatch) -> tuple[torch.Tensor, list[int], dict]:
    """Run ``evaluate`` and record what its cross-entropy saw: the targets and the logits' widths."""
    seen_targets, widths = [], []
    original = F.cross_entropy

    def recording(logits, targets, *args, **kwargs):
        seen_targets.append(targets.clone())
        widths.append(logits.shape[-1])
        return original(logits, targets, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", recording)
    metrics = evaluate(model, GENERATION, data, batch_size=32)
    monkeypatch.undo()
    return torch.cat(seen_targets), widths, metrics


@pytest.fixture
def model_config(tiny_tokenizer):
    return ModelConfig(d_model=16, num_layers=1, num_heads=2, d_ff=32, max_length=tiny_tokenizer.config.max_length)


@pytest.mark.parametrize("name", [n for n in ARCHITECTURES if n != "hard"])
def test_every_architecture_scores_the_tokens_hard_sharing_scores(name, tiny_data, tiny_tokenizer, model_config,
                                                                  monkeypatch):
    data = tiny_data["val"]["generation"]
    limit = tiny_tokenizer.config.max_length
    assert any(len(ids) == limit for ids in data.ids), "no snippet cut at max_length: the test would miss truncation"
    vocab = tiny_tokenizer.vocab_size
    torch.manual_seed(0)
    hard = make_architecture("hard", model_config, TASK_LIST, vocab)
    torch.manual_seed(0)
    other = make_architecture(name, model_config, TASK_LIST, vocab)
    hard_targets, hard_widths, hard_metrics = scored_targets(hard, data, monkeypatch)
    other_targets, other_widths, other_metrics = scored_targets(other, data, monkeypatch)
    # the same targets, position by position, so the same count; the first token is never one
    assert torch.equal(hard_targets, other_targets)
    expected = sum(len(ids) - 1 for ids in data.ids)  # every token after <bos>, <eos> included
    assert int((other_targets != IGNORE_INDEX).sum()) == expected
    # the softmax runs over the tokenizer's vocabulary for both (no task prefix or verbaliser tokens)
    assert set(hard_widths) == set(other_widths) == {vocab}
    for metrics in (hard_metrics, other_metrics):
        assert math.isfinite(metrics["perplexity"]) and metrics["perplexity"] > 1


def test_text_to_text_scores_each_target_from_the_prefix_and_the_tokens_before_it(tiny_data, tiny_tokenizer,
                                                                                  model_config):
    """Token by token: the negative log-likelihood ``evaluate`` reports for a snippet cut at
    ``max_length`` is the one of the language model reading ``<generation> ids[:j+1]`` and
    predicting ``ids[j+1]``, for j = 0 .. len(ids) - 2 (nothing dropped, nothing shifted)."""
    data = tiny_data["val"]["generation"]
    cut = next(ids for ids in data.ids if len(ids) == tiny_tokenizer.config.max_length)
    torch.manual_seed(0)
    model = make_architecture("text_to_text", model_config, TASK_LIST, tiny_tokenizer.vocab_size).eval()
    with torch.no_grad():
        for p in model.parameters():  # off the initial point, so that a shift would show
            p.add_(0.05 * torch.randn_like(p))
    nll = 0.0
    with torch.no_grad():
        for j in range(len(cut) - 1):
            read = torch.tensor([[model.prefix_ids["generation"], *cut[: j + 1]]])  # (1, j + 2)
            logits = model.lm_head(model.trunk(read), read)[0, -1, : tiny_tokenizer.vocab_size]  # (V,)
            nll -= torch.log_softmax(logits, -1)[cut[j + 1]].item()
    one = EncodedTask(GENERATION, [cut], prefixed=[cut])
    loss = evaluate(model, GENERATION, one)["loss"]
    assert loss == pytest.approx(nll / (len(cut) - 1), rel=1e-5)
