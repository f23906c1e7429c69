r"""NB-LR: logistic regression on word 1-2-gram indicators scaled by naive-Bayes log-count ratios.

The NBSVM recipe of Wang & Manning (2012), "Baselines and Bigrams: Simple, Good Sentiment and
Topic Classification" (ACL), Section 2 (the log-count ratio; the binarised features of 2.1;
NBSVM's scaled features of 2.3), with logistic regression in place of the SVM.
Each snippet becomes the binarised indicator vector $\hat f = \mathbb{1}[f > 0]$ of its word
1-2-grams. With smoothing $\alpha$, summed over the training snippets of each class,

$$p = \alpha + \sum_{i: y_i = 1} \hat f_i, \qquad q = \alpha + \sum_{i: y_i = 0} \hat f_i, \qquad
r = \log\frac{p / \lVert p \rVert_1}{q / \lVert q \rVert_1},$$

and the classifier reads $\tilde x = r \circ \hat f$: an n-gram frequent in class 1 gets a large
positive value before the regression starts, one as frequent in both classes (relative to each
class's total) gets 0. The paper's NBSVM trains an L2 SVM on $\tilde x$ and interpolates its
weights with their mean magnitude (parameter $\beta$); here an L2 logistic regression reads
$\tilde x$, without interpolation, the book's choice. The n-grams are scikit-learn's lowercased
word tokens, every 1-2-gram of the training split kept (no minimum count: it scored higher on
validation than TF-IDF's ``min_df=2``). Binary tasks only (both classification tasks of the
book are); more classes raise an error rather than silently doing one-vs-rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from mtl_tutorial.data import Snippet
from mtl_tutorial.evaluation import accuracy, macro_f1
from mtl_tutorial.tasks import CLASSIFICATION, Task


@dataclass
class NBLRResult:
    """Test metrics with ``C`` and the smoothing ``alpha`` chosen on the validation split."""

    task: str
    C: float
    alpha: float
    val_accuracy: float
    test: dict[str, float]


def binarise(counts: sparse.spmatrix | np.ndarray) -> sparse.csr_matrix:
    r"""The indicator matrix $\hat f = \mathbb{1}[f > 0]$ (documents x features), as float CSR."""
    return sparse.csr_matrix(sparse.csr_matrix(counts) > 0, dtype=np.float64)


def log_count_ratio(counts: sparse.spmatrix | np.ndarray, labels: np.ndarray, alpha: float) -> np.ndarray:
    r"""$r = \log\bigl((p/\lVert p\rVert_1) / (q/\lVert q\rVert_1)\bigr)$ of Wang & Manning (2012), Section 2.1.

    ``counts`` (documents, features) are binarised first; ``labels`` are 0 or 1 per document.
    Returns ``r`` of shape (features,).

    >>> log_count_ratio(np.array([[2, 1, 0], [1, 0, 0], [0, 1, 1], [0, 0, 3]]), np.array([1, 1, 0, 0]), 1.0)
    array([ 1.09861229,  0.        , -1.09861229])
    """
    if alpha <= 0:
        raise ValueError(f"the smoothing alpha must be positive, got {alpha}")
    indicators = binarise(counts)
    labels = np.asarray(labels)
    p = alpha + np.asarray(indicators[labels == 1].sum(axis=0)).ravel()  # (features,)
    q = alpha + np.asarray(indicators[labels == 0].sum(axis=0)).ravel()  # (features,)
    return np.log((p / p.sum()) / (q / q.sum()))


def nb_features(counts: sparse.spmatrix | np.ndarray, ratio: np.ndarray) -> sparse.csr_matrix:
    r"""$\tilde x = r \circ \hat f$ for every document: the binarised counts, each column scaled by ``ratio``."""
    return binarise(counts) @ sparse.diags(ratio)


def nb_logistic_regression(
    task: Task,
    train: Sequence[Snippet],
    val: Sequence[Snippet],
    test: Sequence[Snippet],
    grid: Sequence[float] = (0.1, 0.3, 1.0, 3.0, 10.0),
    alphas: Sequence[float] = (0.5, 1.0),
) -> NBLRResult:
    """Fit on ``train``, pick ``(alpha, C)`` by validation accuracy, report accuracy and macro-F1 on ``test``.

    The n-gram vocabulary and $r$ come from ``train`` only; ``test`` is scored once, with the
    chosen pair. Ties on validation go to the first pair in ``alphas`` x ``grid`` order.
    """
    if task.kind != CLASSIFICATION or task.num_classes != 2:
        raise ValueError(f"NB-LR is written for binary classification; task {task.name!r} has "
                         f"{task.num_classes} classes (for more, fit one NB-LR per class: one-vs-rest)")

    def xy(snippets: Sequence[Snippet]) -> tuple[list[str], np.ndarray]:
        chosen = task.select(snippets)
        return [s.text for s in chosen], np.array([task.target(s) for s in chosen])

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = xy(train), xy(val), xy(test)
    if set(y_train.tolist()) != {0, 1}:
        raise ValueError(f"task {task.name!r}: the training split needs examples of both classes")
    vectorizer = CountVectorizer(ngram_range=(1, 2), binary=True)
    counts_train = vectorizer.fit_transform(x_train)
    counts_val, counts_test = vectorizer.transform(x_val), vectorizer.transform(x_test)
    best = None
    for alpha in alphas:
        ratio = log_count_ratio(counts_train, y_train, alpha)
        features_train, features_val = nb_features(counts_train, ratio), nb_features(counts_val, ratio)
        for c in grid:
            model = LogisticRegression(C=c, max_iter=2000).fit(features_train, y_train)
            score = float((model.predict(features_val) == y_val).mean())
            if best is None or score > best[0]:
                best = (score, c, alpha, model, ratio)
    score, c, alpha, model, ratio = best
    predictions = torch.as_tensor(model.predict(nb_features(counts_test, ratio)))
    targets = torch.as_tensor(y_test)
    return NBLRResult(
        task=task.name,
        C=c,
        alpha=alpha,
        val_accuracy=score,
        test={"accuracy": accuracy(predictions, targets), "macro_f1": macro_f1(predictions, targets, task.num_classes)},
    )
