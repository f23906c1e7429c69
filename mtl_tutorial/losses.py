r"""The article's losses, with their gradients derived by hand, and its multi-task objective.

Section 4 of the article names two per-example losses, cross-entropy for classification and the
mean squared error for regression, trains with gradient descent, and combines two tasks on the
same $m$ samples into one objective,

$$L(\theta) = \frac12 \cdot \frac1m \sum_{i=1}^m \bigl(L_1(x_i, y_i; \theta) + L_2(x_i, y_i; \theta)\bigr)
= \tfrac12 \bar L_1 + \tfrac12 \bar L_2 .$$

Here each loss is a batch mean, and each ``*_grad`` is the derivative of that mean with respect to
its first argument, written out by hand so that the tests can hold it against autograd. The
training code itself uses ``torch.nn.functional.cross_entropy`` (:meth:`mtl_tutorial.tasks.Task.loss`);
:func:`cross_entropy` computes the same number and says how.
"""

from __future__ import annotations

from torch import Tensor


def _check_classification(logits: Tensor, targets: Tensor) -> None:
    """Shapes ``logits (B, C)``, ``targets (B,)``, integer targets in ``[0, C - 1]``."""
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (B, C), one row of class scores per example; "
                         f"got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got dtype {logits.dtype}")
    batch, num_classes = logits.shape
    if batch == 0 or num_classes == 0:
        raise ValueError(f"logits of shape {tuple(logits.shape)} are empty; need at least one example and one class")
    if targets.shape != (batch,):
        raise ValueError(f"targets must have shape (B,) = ({batch},), one class index per row of logits; "
                         f"got shape {tuple(targets.shape)}")
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == bool:
        raise TypeError(f"targets must be integer class indices (torch.long), got dtype {targets.dtype}")
    bad = (targets < 0) | (targets >= num_classes)
    if bad.any():
        value = targets[bad][0].item()
        raise ValueError(f"class index {value} is out of range: valid class indices are 0..{num_classes - 1} "
                         f"(logits have C = {num_classes} columns)")


def _log_normaliser(logits: Tensor) -> Tensor:
    r"""$\log \sum_c e^{z_c}$ per row, as $a + \log \sum_c e^{z_c - a}$ with $a = \max_c z_c$: ``(B,)``.

    Subtracting the row maximum makes the largest exponent $e^0 = 1$, so nothing overflows
    (``exp(1e4)`` is ``inf`` in any float type) and the sum is at least 1, so the log is finite.
    """
    shift = logits.max(dim=1, keepdim=True).values  # (B, 1)
    return shift.squeeze(1) + (logits - shift).exp().sum(dim=1).log()  # (B,)


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    r"""Mean cross-entropy of a batch, from raw scores (logits): a scalar.

    $$\bar L = \frac1B \sum_{i=1}^B \Bigl(\log \sum_{c=1}^C e^{z_{ic}} - z_{i y_i}\Bigr)
    = -\frac1B \sum_{i=1}^B \log \operatorname{softmax}(z_i)_{y_i} ,$$

    the negative log-probability of the true class, averaged over the batch. The log-sum-exp is
    computed after subtracting each row's maximum, so logits of $\pm 10^4$ give a finite loss.
    Shapes: ``logits (B, C)`` floating point, ``targets (B,)`` integers in ``[0, C - 1]``.

    >>> cross_entropy(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))  # log(1 + e^-2)
    tensor(0.1269)
    """
    _check_classification(logits, targets)
    true_class = logits.gather(1, targets.unsqueeze(1)).squeeze(1)  # (B,): z_{i, y_i}
    return (_log_normaliser(logits) - true_class).mean()


def cross_entropy_grad(logits: Tensor, targets: Tensor) -> Tensor:
    r"""$\partial \bar L / \partial z$ of :func:`cross_entropy`, derived by hand: ``(B, C)``.

    $$\frac{\partial \bar L}{\partial z_{ic}} = \frac1B\bigl(\operatorname{softmax}(z_i)_c - [c = y_i]\bigr),
    \qquad \text{i.e.}\quad \nabla_z \bar L = \frac1B\bigl(\operatorname{softmax}(z) - \operatorname{onehot}(y)\bigr).$$

    Derivation: $\partial_{z_{ic}} \log \sum_k e^{z_{ik}} = e^{z_{ic}} / \sum_k e^{z_{ik}}
    = \operatorname{softmax}(z_i)_c$ and $\partial_{z_{ic}} z_{i y_i} = [c = y_i]$; the mean
    contributes $1/B$. Each row sums to zero, and each entry lies in $[-1/B, 1/B]$ however large
    the logits.

    >>> cross_entropy_grad(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))
    tensor([[ 0.5000, -0.5000]])
    """
    _check_classification(logits, targets)
    exponentials = (logits - logits.max(dim=1, keepdim=True).values).exp()  # (B, C), largest entry 1
    probabilities = exponentials / exponentials.sum(dim=1, keepdim=True)  # (B, C): softmax(z_i)
    onehot = probabilities.new_zeros(probabilities.shape).scatter_(1, targets.unsqueeze(1), 1.0)  # (B, C)
    return (probabilities - onehot) / logits.shape[0]


def _check_regression(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"pred has shape {tuple(pred.shape)} and target {tuple(target.shape)}; they must match "
                         "(no broadcasting: reshape one of them, e.g. target.view_as(pred))")
    if not (pred.is_floating_point() and target.is_floating_point()):
        raise TypeError(f"pred and target must be floating-point tensors, got {pred.dtype} and {target.dtype}")
    if pred.numel() == 0:
        raise ValueError("pred and target are empty; the mean squared error needs at least one element")


def mse(pred: Tensor, target: Tensor) -> Tensor:
    r"""Mean squared error over all $N$ elements: $\bar L = \frac1N \sum_{j=1}^N (\hat y_j - y_j)^2$.

    ``pred`` and ``target`` have the same shape, any shape; the result is a scalar.

    >>> mse(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0]))  # (1 + 4) / 2
    tensor(2.5000)
    """
    _check_regression(pred, target)
    return (pred - target).square().mean()


def mse_grad(pred: Tensor, target: Tensor) -> Tensor:
    r"""$\partial \bar L / \partial \hat y$ of :func:`mse`: $\frac{2}{N}(\hat y - y)$, shaped like ``pred``.

    >>> mse_grad(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0]))
    tensor([1., 2.])
    """
    _check_regression(pred, target)
    return 2.0 * (pred - target) / pred.numel()


def article_objective(task_losses: Tensor) -> Tensor:
    r"""The article's objective: equal weights $1/T$ on the per-task mean losses, a scalar.

    $$L = \frac1T \sum_{t=1}^T \bar L_t, \qquad \bar L_t = \frac1m \sum_{i=1}^m L_t(x_i, y_i; \theta),$$

    which for $T = 2$ is the article's $\frac12 \cdot \frac1m \sum_i (L_1 + L_2)$ (the two sums over
    $i$ can be split because both run over the same $m$ samples). It is the special case
    $w_t = 1/T$ of $L = \sum_t w_t \bar L_t$, and equals :class:`mtl_tutorial.weightings.Equal`.
    ``task_losses`` is the vector ``(T,)`` of per-task mean losses.

    >>> article_objective(torch.tensor([0.7, 8.9]))
    tensor(4.8000)
    """
    if task_losses.dim() != 1 or task_losses.numel() == 0:
        raise ValueError(f"task_losses must be a non-empty vector (T,) of per-task mean losses, got shape "
                         f"{tuple(task_losses.shape)}; stack scalar losses with torch.stack([...])")
    if not task_losses.is_floating_point():
        raise TypeError(f"task_losses must be floating point, got dtype {task_losses.dtype}")
    return task_losses.mean()
