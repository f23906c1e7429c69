r"""PCGrad: project each task gradient off the gradients it conflicts with (Yu et al., 2020)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl_tutorial.aggregators.base import Aggregator


class PCGrad(Aggregator):
    r"""Algorithm 1 of Yu et al. (NeurIPS 2020), "Gradient surgery for multi-task learning".

    For each task $i$: $g_i^{PC} \leftarrow g_i$; for each other task $j$ in random order, if
    $g_i^{PC} \cdot g_j < 0$ then $g_i^{PC} \leftarrow g_i^{PC} - \frac{g_i^{PC} \cdot g_j}
    {\|g_j\|^2} g_j$ (always against the original $g_j$). The update is $d = \sum_i g_i^{PC}$.

    Every $g_i^{PC}$ stays a combination of the rows, $g_i^{PC} = \sum_k c_{ik} g_k$, so the
    surgery runs on the coefficients $c$ and the Gramian $G = J J^\top$
    ($g_i^{PC} \cdot g_j = (c G)_{ij}$) and touches the $n$-dimensional rows only once, in
    $d = J^\top (c^\top \mathbf 1)$. The order of the projections is drawn from ``generator``;
    with two tasks it does not matter.

    Worked example: $g_1 = (1, 0)$, $g_2 = (-1, 1)$ conflict ($g_1 \cdot g_2 = -1$).
    $g_1^{PC} = g_1 + \frac12 g_2 = (0.5, 0.5)$, $g_2^{PC} = g_2 + g_1 = (0, 1)$, so
    $d = (0.5, 1.5)$.

    >>> PCGrad()(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]))
    tensor([0.5000, 1.5000])
    """

    needs_generator = True

    def forward(self, jacobians: Tensor, generator: torch.Generator | None = None) -> Tensor:
        J = jacobians.to(torch.float64)  # (B, T, n)
        B, T = J.shape[:2]
        G = J @ J.mT  # (B, T, T)
        squared_norms = torch.diagonal(G, dim1=-2, dim2=-1)  # (B, T)
        eye = torch.eye(T, dtype=J.dtype, device=J.device)
        coefficients = eye.expand(B, T, T).clone()  # (B, T, T): row i holds c_i, g_i^PC = c_i J
        for i in range(T):
            others = [j for j in range(T) if j != i]
            order = torch.randperm(T - 1, generator=generator).tolist() if T > 2 else range(T - 1)
            for k in order:
                j = others[k]
                dot = (coefficients[:, i] * G[:, :, j]).sum(-1)  # (B,): g_i^PC . g_j
                conflict = (dot < 0) & (squared_norms[:, j] > 0)
                step = torch.where(conflict, dot / squared_norms[:, j].clamp(min=1e-300), 0.0)  # (B,)
                coefficients[:, i, j] -= step
        weights = coefficients.sum(dim=1)  # (B, T): d = sum_i g_i^PC = (sum_i c_i) J
        return (weights[:, None, :] @ J).squeeze(1)  # (B, n)
