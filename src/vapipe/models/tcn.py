"""The baseline temporal+fusion model: a TCN per modality, concatenation, MLP head, tanh."""

from __future__ import annotations

import torch
from torch import nn

from vapipe.models import register_model


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T] -> [B, C, T]."""
        return x + self.net(x)


class TemporalConvNet(nn.Module):
    """Linear projection then `levels` temporal blocks with dilations 1, 2, 4, ... ([B, T, D] in)."""

    def __init__(self, in_dim: int, hidden: int, levels: int, kernel_size: int, dropout: float):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the length, got {kernel_size}")
        self.project = nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.Dropout(dropout))
        self.blocks = nn.Sequential(*[TemporalBlock(hidden, kernel_size, 2**i, dropout) for i in range(levels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, D] -> [B, T, hidden]."""
        return self.blocks(self.project(x).transpose(1, 2)).transpose(1, 2)


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

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """{modality: [B, T, D_m]} -> [B, T, 2] (valence, arousal)."""
        fused = torch.cat([self.encoders[m](inputs[m]) for m in self.modalities], dim=-1)
        return self.head(fused)
