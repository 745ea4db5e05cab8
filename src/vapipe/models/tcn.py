"""The baseline temporal+fusion model: a TCN per modality, concatenation, MLP head, tanh."""

from __future__ import annotations

import torch
from torch import nn

from vapipe.models import register_model
from vapipe.models.padding import real_steps, zero_padding


class TemporalBlock(nn.Module):
    """Residual block of two dilated non-causal 1-D convolutions that keep the sequence length."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        padding = (kernel_size - 1) * dilation // 2
        self.net = nn.Sequential(
            nn.Conv1d(channels, channels, kernel_size, padding=padding, dilation=dilation),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Conv1d(channels, channels, kernel_size, padding=padding, dilation=dilation),
            nn.GELU(),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, C, T] -> [B, C, T]; with a [B, T] mask of real steps, each convolution sees zeros past
        them, as its own zero padding, so a real step's output does not depend on the padded ones."""
        h = x
        for layer in self.net:
            if padding_mask is not None and isinstance(layer, nn.Conv1d):
                h = h.masked_fill(~padding_mask[:, None, :], 0.0)
            h = layer(h)
        return x + h


class TemporalConvNet(nn.Module):
    """Linear projection then `levels` temporal blocks with dilations 1, 2, 4, ... ([B, T, D] in)."""

    def __init__(self, in_dim: int, hidden: int, levels: int, kernel_size: int, dropout: float):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the length, got {kernel_size}")
        self.project = nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.Dropout(dropout))
        self.blocks = nn.Sequential(*[TemporalBlock(hidden, kernel_size, 2**i, dropout) for i in range(levels)])

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, T, D] -> [B, T, hidden]; `padding_mask` [B, T] is True at real steps (None: all)."""
        h = self.project(x).transpose(1, 2)
        for block in self.blocks:
            h = block(h, padding_mask)
        return h.transpose(1, 2)


@register_model("tcn_fusion")
class TCNFusion(nn.Module):
    """One TCN per modality, features concatenated per frame, MLP head, tanh to [-1, 1]."""

    def __init__(
        self,
        input_dims: dict[str, int],
        hidden: int = 64,
        levels: int = 3,
        kernel_size: int = 5,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.modalities = sorted(input_dims)
        self.encoders = nn.ModuleDict(
            {m: TemporalConvNet(input_dims[m], hidden, levels, kernel_size, dropout) for m in self.modalities}
        )
        width = hidden * len(self.modalities)
        self.head = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 2), nn.Tanh()
        )

    def forward(self, inputs: dict[str, torch.Tensor], padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """{modality: [B, T, D_m]} -> [B, T, 2] (valence, arousal); `padding_mask` [B, T] is True at real
        steps (None: all), and the outputs on an element's real steps do not depend on its padded ones."""
        mask = real_steps(padding_mask, inputs)
        inputs = zero_padding(inputs, mask)
        fused = torch.cat([self.encoders[m](inputs[m], mask) for m in self.modalities], dim=-1)
        return self.head(fused)
