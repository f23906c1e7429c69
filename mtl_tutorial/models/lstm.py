"""The article's trunk: Embedding(128) -> LSTM(128) (Hochreiter & Schmidhuber, 1997).

Unidirectional, so that it can also serve next-token generation, as the causal Transformer does.
"""

from __future__ import annotations

from torch import Tensor, nn

from mtl_tutorial.config import ModelConfig


class LSTMTrunk(nn.Module):
    """Token ids ``(B, L)`` -> hidden states ``(B, L, D)``."""

    def __init__(self, config: ModelConfig, vocab_size: int) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(vocab_size, config.d_model, padding_idx=0)
        self.lstm = nn.LSTM(
            config.d_model,
            config.d_model,
            num_layers=config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: Tensor) -> Tensor:
        x = self.dropout(self.embedding(input_ids))  # (B, L, D)
        hidden, _ = self.lstm(x)  # (B, L, D); right padding only follows real tokens
        return self.dropout(hidden)

    def last_layer_parameters(self) -> list[nn.Parameter]:
        """The top LSTM layer's weights and biases (``*_l{num_layers - 1}``)."""
        suffix = f"_l{self.lstm.num_layers - 1}"
        return [p for name, p in self.lstm.named_parameters() if name.endswith(suffix)]
