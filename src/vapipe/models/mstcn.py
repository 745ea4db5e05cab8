"""MSTCN-CMA (paper 003, USTC, 8th ABAW): multi-scale TCNs per stream, visual-query cross-modal attention."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from vapipe.models import register_model
from vapipe.models.padding import real_steps, zero_padding
from vapipe.models.sage import split_modalities
from vapipe.models.tcn import TemporalConvNet


class MultiScaleTCN(nn.Module):
    """Sec. 3.4, Eq. 5-7: Concat(TCN_3(F), TCN_5(F), TCN_7(F)), one TCN per kernel size, length kept."""

    def __init__(self, in_dim: int, hidden: int, levels: int, kernel_sizes: Sequence[int], dropout: float):
        super().__init__()
        self.branches = nn.ModuleList([TemporalConvNet(in_dim, hidden, levels, k, dropout) for k in kernel_sizes])

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, T, D] -> [B, T, len(kernel_sizes) * hidden]; `padding_mask` [B, T] is True at real steps."""
        return torch.cat([branch(x, padding_mask) for branch in self.branches], dim=-1)


class CrossModalAttention(nn.Module):
    """Sec. 3.5, Eq. 8-10: softmax(Q K^T / sqrt(d_k)) V with the visual stream as Q and an audio stream as
    K = V, as printed (no projections). `weights` holds the last weights [B, T_v, T_a]; padded audio
    steps (`key_mask` False) are left out of the softmax, so their weights are zero."""

    def __init__(self):
        super().__init__()
        self.weights: torch.Tensor | None = None

    def forward(self, visual: torch.Tensor, audio: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """([B, T, d] query, [B, T', d] key and value, [B, T'] real audio steps or None) -> [B, T, d]."""
        scores = visual @ audio.transpose(1, 2) / math.sqrt(audio.shape[-1])
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, :], -torch.inf)
        weights = torch.softmax(scores, dim=-1)
        self.weights = weights.detach()
        return weights @ audio


@register_model("mstcn_cma")
class MSTCNCMA(nn.Module):
    """MSTCN-CMA (paper 003, Sec. 3): a multi-scale TCN per stream (IResNet-50 visual; VGGish and LogMel
    audio in the paper, any number >= 1 here), one cross-modal attention per audio stream with the visual
    stream as query, F_concat = [F_v; F_v.a1; F_v.a2; ...] (Eq. 11), then LayerNorm - Linear - GELU -
    Dropout - Linear (Eq. 12-15); Eq. 15's linear output is the prediction, not squashed (the
    submission and `vapipe predict` clip to [-1, 1]; the CCC scores see it as predicted).

    The paper's LogMel stream is F_lm = VGG(LogMel(A)) (Eq. 3-4), a pre-trained VGG's features of the
    spectrogram: a Stage 1 backbone here (config ``voice_logmel_vgg``, kind ``spectrogram_cnn``), like
    VGGish. The paper fine-tunes IResNet-50 on FER+ and trains end to end (Sec. 3.7); here the
    backbones are frozen and their cached features are the inputs. TCN widths are not given in the
    paper: ours.
    """

    def __init__(
        self,
        input_dims: dict[str, int],
        visual: str | None = None,
        audio: list[str] | str | None = None,
        hidden: int = 128,
        levels: int = 4,
        kernel_sizes: Sequence[int] = (3, 5, 7),
        head_hidden: int = 256,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.visual, self.audio = split_modalities(input_dims, visual, audio)
        self.encoders = nn.ModuleDict(
            {m: MultiScaleTCN(input_dims[m], hidden, levels, kernel_sizes, dropout) for m in [self.visual, *self.audio]}
        )
        self.attention = nn.ModuleDict({m: CrossModalAttention() for m in self.audio})
        self.stream_dim = hidden * len(kernel_sizes)
        self.fused_dim = self.stream_dim * (1 + len(self.audio))
        self.head = nn.Sequential(
            nn.LayerNorm(self.fused_dim),
            nn.Linear(self.fused_dim, head_hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(head_hidden, 2),
        )

    def fuse(self, inputs: dict[str, torch.Tensor], padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """F_concat (Eq. 11): {modality: [B, T, D_m]} -> [B, T, (1 + n_audio) * stream_dim]."""
        mask = real_steps(padding_mask, inputs)
        inputs = zero_padding(inputs, mask)
        visual = self.encoders[self.visual](inputs[self.visual], mask)
        attended = [self.attention[m](visual, self.encoders[m](inputs[m], mask), mask) for m in self.audio]
        return torch.cat([visual, *attended], dim=-1)

    def forward(self, inputs: dict[str, torch.Tensor], padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """{modality: [B, T, D_m]} -> [B, T, 2] (valence, arousal); `padding_mask` [B, T] is True at real
        steps (None: all), and the outputs on an element's real steps do not depend on its padded ones."""
        return self.head(self.fuse(inputs, padding_mask))
