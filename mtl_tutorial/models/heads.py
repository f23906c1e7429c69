"""Task heads: a pooled classifier and a next-token (language-model) head."""

from __future__ import annotations

from torch import Tensor, nn


class ClassificationHead(nn.Module):
    """Mean of the hidden states over real tokens, then a linear layer: ``(B, L, D) -> (B, C)``."""

    def __init__(self, d_model: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(d_model, num_classes)

    def forward(self, hidden: Tensor, input_ids: Tensor) -> Tensor:
        mask = (input_ids != 0).unsqueeze(-1).to(hidden.dtype)  # (B, L, 1); 0 is <pad>
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, D)
        return self.linear(self.dropout(pooled))  # (B, C)


class LanguageModelHead(nn.Module):
    """Logits over the vocabulary at every position: ``(B, L, D) -> (B, L, V)``.

    With ``tied_embedding`` the output matrix is the trunk's token embedding (Press & Wolf,
    2017), which then belongs to the shared parameters, not to this head.
    """

    def __init__(self, d_model: int, vocab_size: int, tied_embedding: nn.Embedding | None = None) -> None:
        super().__init__()
        self.linear = nn.Linear(d_model, vocab_size, bias=False)
        if tied_embedding is not None:
            self.linear.weight = tied_embedding.weight

    def forward(self, hidden: Tensor, input_ids: Tensor) -> Tensor:
        return self.linear(hidden)  # (B, L, V)
