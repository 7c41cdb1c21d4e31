"""A minimal encoder between the S3PRL frontend and the CTC head.

ESPnet's ASR model needs an encoder; for "upstream + CTC head" fine-tuning the upstream already
is the encoder, so this is dropout and an optional linear projection.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from espnet2.asr.encoder.abs_encoder import AbsEncoder


class LinearEncoder(AbsEncoder):
    """(B, T, input_size) -> (B, T, output_size); output_size None keeps the input size."""

    def __init__(self, input_size: int, output_size: Optional[int] = None, dropout: float = 0.0):
        super().__init__()
        self._output_size = output_size or input_size
        self.dropout = torch.nn.Dropout(dropout)
        self.proj = torch.nn.Linear(input_size, output_size) if output_size else None

    def output_size(self) -> int:
        return self._output_size

    def forward(
        self, xs_pad: torch.Tensor, ilens: torch.Tensor, prev_states: torch.Tensor = None
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        xs = self.dropout(xs_pad)
        if self.proj is not None:
            xs = self.proj(xs)
        return xs, ilens, None
