r"""The task Jacobian: one row per task loss, one column per shared parameter.

$J \in \mathbb R^{T \times n}$, $J_{t,:} = \nabla_{\theta_s} L_t$; the Gramian $G = J J^\top$ holds
every pair of task gradients' inner products. Two routes compute the same matrix:

* ``"loop"``: one ``torch.autograd.grad`` per task. When the losses are given as a list of
  separate scalars (as :func:`~mtl_tutorial.step.train_step` does, where each task runs its own
  forward pass) each call back-propagates through that task's graph only, so the T calls
  together cost about one ordinary backward pass.
* ``"vmap"``: one call with ``is_grads_batched=True``, which ``torch.vmap``s the backward pass
  over the rows of the identity matrix. This is the fast route when the tasks share one
  forward pass (one batch, one trunk, T heads), where every row must go through the whole
  graph anyway; with per-task forward passes it makes each row traverse every task's graph.

A loss that does not depend on the parameters (a task that sat out the step) gives a zero row.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

METHODS = ("loop", "vmap")


def task_jacobian(
    losses: Tensor | Sequence[Tensor],
    params: Sequence[Tensor],
    method: str = "loop",
    retain_graph: bool = False,
) -> Tensor:
    r"""$J_{t,:} = \nabla_{\theta} L_t$, flattened and concatenated over ``params``: ``(T, n)``.

    ``losses`` is a vector ``(T,)`` or a sequence of T scalars (a sequence lets ``"loop"``
    back-propagate through each task's own graph only). ``retain_graph=True`` keeps the graph
    for a later backward pass. The rows are in the parameters' dtype.

    >>> w = torch.tensor([1.0, 2.0], requires_grad=True)
    >>> task_jacobian(torch.stack([w.sum(), (w ** 2).sum()]), [w])  # rows (1, 1) and 2w
    tensor([[1., 1.],
            [2., 4.]])
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods are: {', '.join(METHODS)}")
    params = list(params)
    if not params:
        raise ValueError("task_jacobian needs at least one parameter (got an empty list)")
    rows = list(losses) if not isinstance(losses, Tensor) else None
    if isinstance(losses, Tensor) and losses.dim() != 1:
        raise ValueError(f"losses must be a vector (T,) or a list of scalars, got shape {tuple(losses.shape)}")
    if rows is not None and not all(isinstance(r, Tensor) and r.dim() == 0 for r in rows):
        raise ValueError("losses must be a vector (T,) or a list of scalar tensors (one per task)")
    T = len(rows) if rows is not None else losses.shape[0]
    n = sum(p.numel() for p in params)
    dtype, device = params[0].dtype, params[0].device
    J = torch.zeros(T, n, dtype=dtype, device=device)  # (T, n)
    if method == "loop":
        for t in range(T):
            loss = rows[t] if rows is not None else losses[t]
            if not loss.requires_grad:
                continue  # constant loss: zero row
            grads = torch.autograd.grad(loss, params, retain_graph=retain_graph or t < T - 1, allow_unused=True)
            J[t] = _flatten(grads, params)
        return J
    vector = torch.stack(rows) if rows is not None else losses  # (T,)
    if not vector.requires_grad:
        return J
    identity = torch.eye(T, dtype=vector.dtype, device=vector.device)  # row t selects L_t
    grads = torch.autograd.grad(vector, params, grad_outputs=identity, is_grads_batched=True,
                                retain_graph=retain_graph, allow_unused=True)  # each (T, *p.shape)
    offset = 0
    for p, g in zip(params, grads):
        if g is not None:
            J[:, offset:offset + p.numel()] = g.reshape(T, -1)  # (T, p.numel())
        offset += p.numel()
    return J


def representation_jacobian(
    losses: Tensor | Sequence[Tensor],
    representation: Tensor,
    method: str = "loop",
    retain_graph: bool = False,
) -> Tensor:
    r"""$\nabla_Z L_t$ for a shared representation $Z$ (e.g. the trunk's output): ``(T, Z.numel())``.

    MGDA-UB (Sener & Koltun, 2018, section 3.3) runs MGDA on these rows instead of on
    $\nabla_{\theta_s} L_t$: their Gramian bounds the parameter Gramian's problem from above and
    costs one backward pass through the heads only. Reshape a row with ``.view_as(Z)``.
    """
    if not representation.requires_grad:
        raise ValueError("the representation does not require grad; pass the trunk's output tensor itself, "
                         "before any .detach()")
    return task_jacobian(losses, [representation], method=method, retain_graph=retain_graph)


def _flatten(grads: Sequence[Tensor | None], params: Sequence[Tensor]) -> Tensor:
    """Concatenate per-parameter gradients into one row ``(n,)``, zeros where a gradient is None."""
    return torch.cat([
        (g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)
    ])
