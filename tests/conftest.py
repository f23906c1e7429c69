"""Shared fixtures: the real corpus split once, and a tiny encoded subset for fast training tests."""

from __future__ import annotations

import pytest

from mtl_tutorial.batching import encode_task
from mtl_tutorial.config import ModelConfig, TokenizerConfig, TrainConfig
from mtl_tutorial.data import load_splits
from mtl_tutorial.tasks import TASKS
from mtl_tutorial.tokenizer import TextTokenizer


@pytest.fixture(scope="session")
def splits():
    return load_splits()


@pytest.fixture(scope="session")
def tiny_tokenizer(splits):
    return TextTokenizer.train([s.text for s in splits.train[:2000]], TokenizerConfig(vocab_size=400, max_length=32))


@pytest.fixture(scope="session")
def tiny_data(splits, tiny_tokenizer):
    """Every task encoded on 300 training and 100 validation snippets (both classes present)."""
    train = splits.train[::30][:300]
    val = splits.val[::10][:100]
    return {
        "train": {n: encode_task(t, train, tiny_tokenizer) for n, t in TASKS.items()},
        "val": {n: encode_task(t, val, tiny_tokenizer) for n, t in TASKS.items()},
    }


@pytest.fixture
def tiny_model_config():
    return ModelConfig(d_model=16, num_layers=1, num_heads=2, d_ff=32, max_length=32)


@pytest.fixture
def tiny_train_config():
    return TrainConfig(batch_size=8, max_steps=8, eval_every=4, warmup_steps=2, patience=0)
