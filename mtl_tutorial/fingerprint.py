"""Fingerprints of a training run: what a checkpoint must match to be resumed.

A checkpoint records the fingerprint of the encoded examples it was trained on (their ids,
label-prefixed ids and labels, which reflect the corpus split, the tokenizer and ``max_length``)
and of the model (class, the name, shape and dtype of each state-dict entry, its config), plus an
optional JSON description. :func:`first_difference` says in words which part differs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from array import array
from dataclasses import asdict, is_dataclass

from torch import nn

from mtl_tutorial.batching import EncodedTask


def data_fingerprint(data: EncodedTask) -> str:
    """SHA-256 of a task's encoded examples: its ids, label-prefixed ids and labels.

    The ids reflect the corpus split, the tokenizer and its ``max_length``, so a change in any
    of them changes the fingerprint. Hashing the flat integer arrays takes milliseconds.
    """
    digest = hashlib.sha256(f"{data.task.name}\0{len(data)}".encode())
    for part, sequences in (("ids", data.ids), ("prefixed", data.prefixed or [])):
        digest.update(part.encode())
        digest.update(array("q", map(len, sequences)).tobytes())  # where each example ends
        digest.update(array("q", itertools.chain.from_iterable(sequences)).tobytes())
    digest.update(b"labels" + array("q", data.labels or []).tobytes())
    return digest.hexdigest()


def model_fingerprint(model: nn.Module) -> dict:
    """The model's class, the name, shape and dtype of every entry of its state dict, and its
    ``config`` when that is a dataclass (e.g. :class:`~mtl_tutorial.config.ModelConfig`)."""
    config = getattr(model, "config", None)
    return {
        "class": type(model).__qualname__,
        "state": [[name, list(t.shape), str(t.dtype)] for name, t in model.state_dict().items()],
        "config": asdict(config) if is_dataclass(config) and not isinstance(config, type) else None,
    }


def first_difference(saved: dict, current: dict) -> str | None:
    """Which part of two run fingerprints differs, in words; ``None`` when they agree."""
    for split in ("train", "val"):
        for name, digest in current["data"][split].items():
            if saved["data"][split].get(name) != digest:
                return (f"the encoded {split} examples of task {name!r} differ (another corpus split, "
                        "tokenizer, max_length or subset)")
    there, here = saved["model"], current["model"]
    if there["class"] != here["class"]:
        return f"the model is a {here['class']} here, a {there['class']} there"
    if there["config"] != here["config"]:
        a, b = there["config"] or {}, here["config"] or {}
        fields = [f"{k}: {a.get(k)!r} there, {b.get(k)!r} here" for k in {**a, **b} if a.get(k) != b.get(k)]
        return f"the model's config differs ({'; '.join(fields) or 'one of them has none'})"
    if there["state"] != here["state"]:
        a, b = {n: (s, d) for n, s, d in there["state"]}, {n: (s, d) for n, s, d in here["state"]}
        name = next(n for n in [*a, *b] if a.get(n) != b.get(n))
        return (f"the model's parameter {name!r} is {a.get(name, 'absent')} there, "
                f"{b.get(name, 'absent')} here (shape, dtype)")
    if saved["description"] != current["description"]:
        a, b = json.loads(saved["description"]), json.loads(current["description"])
        keys = [k for k in {**a, **b} if a.get(k) != b.get(k)]
        return f"the run's description differs in {', '.join(map(repr, keys))}"
    return None
