"""The classic text-classification baseline: TF-IDF of word 1-2-grams + logistic regression.

``analyzer="word+char"`` appends TF-IDF of character 2-5-grams taken inside word boundaries
(scikit-learn's ``char_wb``), which catches spelling variants and word pieces the word
vocabulary misses; the default ``"word"`` is the book's stored baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from mtl_tutorial.data import Snippet
from mtl_tutorial.evaluation import accuracy, macro_f1
from mtl_tutorial.tasks import Task

ANALYZERS = ("word", "word+char")


@dataclass
class TfidfResult:
    """Test metrics with the regularisation strength ``C`` chosen on the validation split."""

    task: str
    C: float
    val_accuracy: float
    test: dict[str, float]


def tfidf_logistic_regression(
    task: Task,
    train: Sequence[Snippet],
    val: Sequence[Snippet],
    test: Sequence[Snippet],
    grid: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
    analyzer: str = "word",
) -> TfidfResult:
    """Fit on ``train``, pick ``C`` by validation accuracy, report accuracy and macro-F1 on ``test``.

    ``analyzer`` is ``"word"`` (word 1-2-grams) or ``"word+char"`` (those, then character
    2-5-grams within words, both seen at least twice in training, side by side).
    """
    if analyzer not in ANALYZERS:
        raise ValueError(f"unknown analyzer {analyzer!r}; valid analyzers are: {', '.join(ANALYZERS)}")

    def xy(snippets: Sequence[Snippet]) -> tuple[list[str], np.ndarray]:
        chosen = task.select(snippets)
        return [s.text for s in chosen], np.array([task.target(s) for s in chosen])

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = xy(train), xy(val), xy(test)
    vectorizers = [TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)]
    if analyzer == "word+char":
        vectorizers.append(TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True))
    features_train = sparse.hstack([v.fit_transform(x_train) for v in vectorizers], format="csr")
    features_val = sparse.hstack([v.transform(x_val) for v in vectorizers], format="csr")
    features_test = sparse.hstack([v.transform(x_test) for v in vectorizers], format="csr")
    best = None
    for c in grid:
        model = LogisticRegression(C=c, max_iter=2000).fit(features_train, y_train)
        score = float((model.predict(features_val) == y_val).mean())
        if best is None or score > best[0]:
            best = (score, c, model)
    score, c, model = best
    predictions = torch.as_tensor(model.predict(features_test))
    targets = torch.as_tensor(y_test)
    return TfidfResult(
        task=task.name,
        C=c,
        val_accuracy=score,
        test={"accuracy": accuracy(predictions, targets), "macro_f1": macro_f1(predictions, targets, task.num_classes)},
    )
