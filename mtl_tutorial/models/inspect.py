"""Look inside a trained Transformer trunk: the attention probabilities of every head.

``F.scaled_dot_product_attention`` returns the attended values, not the probabilities it used.
:func:`attention_maps` recomputes them from the module's own weights, on the exact inputs each
attention layer receives during the trunk's forward pass (captured with forward pre-hooks), so
what it returns is what the model computes, not a re-implementation of the trunk.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mtl_tutorial.models.transformer import CausalSelfAttention, TransformerTrunk


def causal_attention_probabilities(attention: CausalSelfAttention, x: Tensor) -> Tensor:
    r"""Attention probabilities of one causal self-attention layer: ``(B, L, D) -> (B, H, L, L)``.

    For head :math:`h` with queries :math:`Q_h = x W^Q_h + b^Q_h`, keys
    :math:`K_h = x W^K_h + b^K_h` of width :math:`d_h = D / H` (scaled dot-product attention,
    Eq. 1 of Vaswani et al., 2017, with the causal mask of its decoder):

    .. math::

        P_h = \operatorname{softmax}\Bigl(\frac{Q_h K_h^\top}{\sqrt{d_h}} + M\Bigr),
        \qquad M_{ij} = \begin{cases} 0 & j \le i \\ -\infty & j > i \end{cases}

    so row :math:`i` is a probability distribution over the positions :math:`j \le i`, and
    :math:`P_h V_h` is the head's output before the output projection. ``x`` is the layer's
    input (in the trunk's pre-norm blocks: the output of ``norm1``).
    """
    B, L, D = x.shape
    q, k, _ = attention.qkv(x).split(D, dim=-1)  # 2 x (B, L, D)
    d_head = D // attention.num_heads
    q, k = (t.view(B, L, attention.num_heads, d_head).transpose(1, 2) for t in (q, k))  # (B, H, L, d_head)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_head)  # (B, H, L, L)
    future = torch.triu(torch.ones(L, L, dtype=torch.bool, device=x.device), diagonal=1)  # (L, L), j > i
    return scores.masked_fill(future, float("-inf")).softmax(dim=-1)  # (B, H, L, L)


@torch.no_grad()
def attention_maps(trunk: TransformerTrunk, input_ids: Tensor) -> Tensor:
    """Attention probabilities of every layer and head: ``input_ids (B, L) -> (layers, B, H, L, L)``.

    Entry ``[l, b, h, i, j]`` is how much position ``i`` of sequence ``b`` attends to position
    ``j`` in head ``h`` of block ``l`` (see :func:`causal_attention_probabilities`). Rows sum to
    one and the upper triangle (``j > i``) is zero. The trunk must be in evaluation mode: with
    dropout active the forward pass, and so the inputs of the later layers, would be random.

    Example::

        >>> trunk = TransformerTrunk(ModelConfig(), vocab_size=300).eval()
        >>> attention_maps(trunk, torch.tensor([[5, 17, 42]])).shape
        torch.Size([2, 1, 4, 3, 3])
    """
    if not isinstance(trunk, TransformerTrunk):
        raise TypeError(f"attention_maps needs a TransformerTrunk, got {type(trunk).__name__}; "
                        "pass model.trunk of a MultiTaskModel built with ModelConfig(trunk='transformer')")
    if trunk.training:
        raise ValueError("the trunk is in training mode, so dropout would make the maps random; "
                         "call trunk.eval() (or model.eval()) first")
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must have shape (B, L), got {tuple(input_ids.shape)}")
    inputs: list[Tensor] = []  # the input of each block's attention layer, in forward order
    hooks = [
        block.attention.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
        for block in trunk.blocks
    ]
    try:
        trunk(input_ids)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.stack([
        causal_attention_probabilities(block.attention, x) for block, x in zip(trunk.blocks, inputs)
    ])  # (layers, B, H, L, L)
