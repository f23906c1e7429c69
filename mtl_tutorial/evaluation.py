"""Metrics (accuracy, macro-F1, perplexity, Δm) and sampling from the generation head."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mtl_tutorial.batching import EncodedTask, eval_batches
from mtl_tutorial.tasks import CLASSIFICATION, IGNORE_INDEX, Task
from mtl_tutorial.tokenizer import SPECIAL_TOKENS, TextTokenizer


def accuracy(predictions: Tensor, targets: Tensor) -> float:
    """Share of correct predictions."""
    return (predictions == targets).double().mean().item()


def macro_f1(predictions: Tensor, targets: Tensor, num_classes: int) -> float:
    """Unweighted mean over classes of F1 = 2TP / (2TP + FP + FN); a class never seen nor predicted is skipped."""
    scores = []
    for c in range(num_classes):
        tp = ((predictions == c) & (targets == c)).sum().item()
        fp = ((predictions == c) & (targets != c)).sum().item()
        fn = ((predictions != c) & (targets == c)).sum().item()
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores)


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, data: EncodedTask, batch_size: int = 128) -> dict[str, float]:
    """A task's metrics on ``data``.

    Classification: ``loss``, ``accuracy``, ``macro_f1``. Generation: ``loss`` (mean negative
    log-likelihood per target token, nats) and ``perplexity = exp(loss)``, over every token after
    ``<bos>`` including ``<eos>``, with no label prefix.
    """
    model.eval()
    if len(data) == 0:
        raise ValueError(f"cannot evaluate task {task.name!r}: its split has no examples; give it a "
                         "non-empty validation or test split (encode_task of more snippets)")
    device = next(model.parameters()).device
    if task.kind == CLASSIFICATION:
        logits, targets = [], []
        for batch in eval_batches(data, batch_size):
            logits.append(model(task.name, batch.inputs.to(device)).float().cpu())
            targets.append(batch.targets)
        logits_all, targets_all = torch.cat(logits), torch.cat(targets)  # (N, C), (N,)
        predictions = logits_all.argmax(-1)
        return {
            "loss": task.loss(logits_all, targets_all).item(),
            "accuracy": accuracy(predictions, targets_all),
            "macro_f1": macro_f1(predictions, targets_all, task.num_classes),
        }
    total_nll, total_tokens = 0.0, 0
    for batch in eval_batches(data, batch_size):
        logits = model(task.name, batch.inputs.to(device)).float()  # (B, L, V)
        targets = batch.targets.to(device)  # (B, L)
        nll = nn.functional.cross_entropy(
            logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        total_nll += nll.item()
        total_tokens += (targets != IGNORE_INDEX).sum().item()
    loss = total_nll / total_tokens
    return {"loss": loss, "perplexity": math.exp(loss)}


def delta_m(multi: Mapping[str, float], single: Mapping[str, float], lower_is_better: Mapping[str, bool]) -> float:
    r"""Δm in percent (Maninis et al., 2019; Vandenhende et al., 2021).

    $\Delta_m = \frac{100}{T}\sum_t (-1)^{l_t} (M_{mtl,t} - M_{single,t}) / M_{single,t}$, with
    $l_t = 1$ when lower is better: **positive means the multi-task model beats the single-task
    baselines** on average.

    >>> delta_m({"acc": 0.8, "ppl": 90.0}, {"acc": 0.75, "ppl": 100.0}, {"acc": False, "ppl": True})
    8.333...
    """
    if set(multi) != set(single) or set(multi) != set(lower_is_better):
        raise ValueError(
            f"delta_m needs the same tasks everywhere; got {sorted(multi)}, {sorted(single)}, {sorted(lower_is_better)}"
        )
    terms = [
        (-1.0 if lower_is_better[t] else 1.0) * (multi[t] - single[t]) / single[t] for t in multi
    ]
    return 100.0 * sum(terms) / len(terms)


@torch.no_grad()
def sample(
    model: nn.Module,
    tokenizer: TextTokenizer,
    label: str | None = None,
    num_samples: int = 1,
    max_new_tokens: int = 40,
    temperature: float = 1.0,
    top_k: int | None = 50,
    seed: int = 0,
    task: str = "generation",
) -> list[str]:
    """Generate snippets, optionally conditioned on a label prefix ("fresh", "rotten", "plot").

    Ancestral sampling with temperature and top-k, reproducible through ``seed``.
    """
    if temperature <= 0:
        raise ValueError("temperature must be positive; for greedy decoding use top_k=1")
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    start = tokenizer.bos_id if label is None else tokenizer.label_id(label)
    ids = torch.full((num_samples, 1), start, dtype=torch.long)  # (N, 1)
    finished = torch.zeros(num_samples, dtype=torch.bool)
    banned = [i for i in range(len(SPECIAL_TOKENS)) if i != tokenizer.eos_id]
    limit = min(max_new_tokens, tokenizer.config.max_length - 1)
    for _ in range(limit):
        logits = model(task, ids.to(device))[:, -1, :].float().cpu() / temperature  # (N, V)
        logits[:, banned] = -math.inf  # special tokens other than <eos> are never emitted
        if top_k is not None:
            kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]  # (N, 1)
            logits[logits < kth] = -math.inf
        next_ids = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)  # (N, 1)
        next_ids[finished] = tokenizer.eos_id
        ids = torch.cat([ids, next_ids], dim=1)
        finished |= next_ids.squeeze(1) == tokenizer.eos_id
        if finished.all():
            break
    return [tokenizer.decode(row[1:].tolist()) for row in ids]
