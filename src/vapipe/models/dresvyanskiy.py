"""The dynamic models of Dresvyanskiy et al., ABAW 2024 (paper 001), on one cached feature stream.

- ``dresvyanskiy_face`` (sec. 3.2.2, sec. 4.4, Fig. 1 b): per-frame face embeddings at 5 FPS
  (the trainer resamples; the model just sees a sequence), the sinusoidal positional encoding of
  Vaswani et al. added to the embeddings, three Transformer-encoder layers with 8 heads and
  dropout 0.1, then the regression head: N = 2 neurons and tanh (Fig. 1; sec. 3.2.1 "as a final
  activation function, we utilized the Tanh").
- ``dresvyanskiy_audio`` (sec. 3.1): on PDEM (wav2vec2-large-robust) hidden states, two GRU layers
  of 256 units (``variant: v1``, AudioModelV1) or two Transformer layers with 32 heads (``v2``) or
  16 heads (``v3``), then a 1-D convolution over time and two dense layers (feature compression,
  then the 2 outputs with tanh).

Departures from the paper, all because this pipeline trains on frozen cached features:
- The paper fine-tunes its static face models (EfficientNet-B1 with a new 256-unit embedding
  layer, sec. 3.2.1, Fig. 2) and the top 2 (V1, V2) or 4 (V3) PDEM layers. Here the backbones are
  frozen: the face model learns a linear map to 256 (``embed_dim``) in place of the static
  model's embedding layer, and V2 and V3 differ only in their head count (their difference in
  fine-tuned PDEM layers has no counterpart on cached features).
- The audio models predicted one value per 4-s window, the 1-D convolution aggregating over time.
  Here the convolution keeps the length ("same" padding, stride 1) so the model gives one output
  per frame like every model of this pipeline; the trainer's overlapping windows average them.

Where the paper is silent, the authors' public code (github.com/DresvyanskiyDenis/ABAW_2024) is
followed: post-norm Transformer layers whose feed-forward width equals the model width; the
audio convolution has kernel 5, dilation 2, batch norm and ReLU. That code gives both AudioModelV2
and V3 a 32-head then a 16-head layer; we follow the paper's text (V2: 32, V3: 16 heads), which is
also the only way the two differ on frozen features (``heads`` overrides it).

Padding (a [B, T] mask, True at real steps): the Transformer layers leave padded steps out as keys,
the GRUs run on the packed sequence, the 1-D convolution sees zeros past the real steps (its own zero
padding) and, in training, its batch normalisation takes its statistics over the real steps only.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vapipe.models import register_model
from vapipe.models.padding import masked_batch_norm, real_steps, run_gru, zero_padding


def select_feature(input_dims: dict[str, int], features: str | None, prefer_face: bool | None = None) -> str:
    """The one input a single-modality model reads: ``features`` if given, else the only input,
    else the only face (``prefer_face``) or only non-face input."""
    if features is not None:
        if features not in input_dims:
            raise ValueError(f"feature '{features}' is not among the inputs {sorted(input_dims)}")
        return features
    candidates = list(input_dims)
    if len(candidates) > 1 and prefer_face is not None:
        candidates = [n for n in candidates if n.startswith("face") == prefer_face]
    if len(candidates) != 1:
        raise ValueError(f"cannot tell which of {sorted(input_dims)} to model; set 'features'")
    return candidates[0]


class SinusoidalPositionalEncoding(nn.Module):
    """Vaswani et al. (2017) sec. 3.5: PE(t, 2i) = sin(t / 10000^(2i/d)), PE(t, 2i+1) = cos(...), added."""

    def __init__(self, dim: int, dropout: float, max_len: int = 10000):
        super().__init__()
        position = torch.arange(max_len, dtype=torch.float32)[:, None]
        frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
        table = torch.zeros(max_len, dim)
        table[:, 0::2] = torch.sin(position * frequency)
        table[:, 1::2] = torch.cos(position * frequency)[:, : dim // 2]
        self.register_buffer("table", table, persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, D] -> [B, T, D]."""
        if x.shape[1] > len(self.table):
            raise ValueError(f"sequence of {x.shape[1]} steps exceeds the encoding's {len(self.table)}")
        return self.dropout(x + self.table[: x.shape[1]])


class TransformerTemporalEncoder(nn.Module):
    """Positional encoding, then ``layers`` post-norm Transformer-encoder layers (self-attention + FFN)."""

    def __init__(self, dim: int, layers: int, heads: int, dropout: float, feedforward: int | None = None):
        super().__init__()
        if dim % heads:
            raise ValueError(f"feature width {dim} is not divisible by {heads} attention heads")
        self.position = SinusoidalPositionalEncoding(dim, dropout)
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=feedforward or dim, dropout=dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.heads = heads
        self.layers = layers

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, T, D] -> [B, T, D]; padded steps ([B, T] `padding_mask` False) are no key of any query."""
        keys_out = None if padding_mask is None else ~padding_mask
        return self.encoder(self.position(x), src_key_padding_mask=keys_out)


class ProjectedTransformer(nn.Sequential):
    """The audio V2/V3 temporal part: a projection (or identity), then a `TransformerTemporalEncoder`."""

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, T, D] -> [B, T, width]."""
        project, encoder = self
        return encoder(project(x), padding_mask)


@register_model("dresvyanskiy_face")
class DresvyanskiyFaceDynamic(nn.Module):
    """Face dynamic model (Fig. 1 b): 256-d embedding, positional encoding, 3 x Transformer (8 heads), 2 x tanh."""

    def __init__(
        self,
        input_dims: dict[str, int],
        features: str | None = None,
        embed_dim: int | None = 256,
        layers: int = 3,
        heads: int = 8,
        dropout: float = 0.1,
        feedforward: int | None = None,
    ):
        super().__init__()
        self.feature = select_feature(input_dims, features, prefer_face=True)
        in_dim = input_dims[self.feature]
        width = embed_dim or in_dim
        self.embed = nn.Linear(in_dim, width) if embed_dim else nn.Identity()
        self.temporal = TransformerTemporalEncoder(width, layers, heads, dropout, feedforward)
        self.head = nn.Sequential(nn.Linear(width, 2), nn.Tanh())

    def forward(self, inputs: dict[str, torch.Tensor], padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """{feature: [B, T, D]} -> [B, T, 2]; `padding_mask` [B, T] is True at real steps (None: all), and
        the outputs on an element's real steps do not depend on its padded ones."""
        inputs = {self.feature: inputs[self.feature]}
        mask = real_steps(padding_mask, inputs)
        x = zero_padding(inputs, mask)[self.feature]
        return self.head(self.temporal(self.embed(x), mask))


class GRUTemporalEncoder(nn.Module):
    """AudioModelV1's temporal part: a stack of unidirectional GRU layers."""

    def __init__(self, in_dim: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.gru = nn.GRU(in_dim, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, T, D] -> [B, T, hidden]; with a [B, T] mask of real steps the sequence is packed (each
        element ends at its last real step) and padded outputs are zero."""
        return run_gru(self.gru, x, padding_mask)


class TemporalConvAggregation(nn.Module):
    """Sec. 3.1's 1-D convolution over time (kernel 5, dilation 2, batch norm, ReLU), length kept."""

    def __init__(self, channels: int, kernel_size: int, dilation: int):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the length, got {kernel_size}")
        self.net = nn.Sequential(
            nn.Conv1d(channels, channels, kernel_size, padding=(kernel_size - 1) * dilation // 2, dilation=dilation),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, T, C] -> [B, T, C]; with a [B, T] mask of real steps the convolution sees zeros past them
        and, in training, the batch statistics are over the real steps."""
        if padding_mask is None:
            return self.net(x.transpose(1, 2)).transpose(1, 2)
        conv, norm, activation = self.net
        h = conv(x.masked_fill(~padding_mask[..., None], 0.0).transpose(1, 2))
        return activation(masked_batch_norm(norm, h, padding_mask)).transpose(1, 2)


AUDIO_VARIANTS = {
    "v1": {"encoder": "gru"},
    "v2": {"encoder": "transformer", "heads": 32},
    "v3": {"encoder": "transformer", "heads": 16},
}
"""Sec. 3.1: AudioModelV1 = 2 GRU layers of 256; V2 / V3 = 2 Transformer layers with 32 / 16 heads."""


@register_model("dresvyanskiy_audio")
class DresvyanskiyAudio(nn.Module):
    """PDEM audio models V1-V3 (sec. 3.1): temporal layers, 1-D convolution over time, 2 dense layers."""

    def __init__(
        self,
        input_dims: dict[str, int],
        variant: str = "v3",
        features: str | None = None,
        gru_hidden: int = 256,
        layers: int = 2,
        heads: int | None = None,
        dropout: float = 0.1,
        conv_kernel: int = 5,
        conv_dilation: int = 2,
        head_hidden: int = 128,
        embed_dim: int | None = 256,
    ):
        super().__init__()
        if variant not in AUDIO_VARIANTS:
            raise ValueError(f"variant '{variant}' is not one of {', '.join(AUDIO_VARIANTS)}")
        spec = AUDIO_VARIANTS[variant]
        self.variant = variant
        self.feature = select_feature(input_dims, features, prefer_face=False)
        in_dim = input_dims[self.feature]
        if spec["encoder"] == "gru":
            self.temporal = GRUTemporalEncoder(in_dim, gru_hidden, layers, dropout)
            width = gru_hidden
        else:
            # The cached features carry a validity channel (D + 1 wide), which no head count
            # divides: the transformer variants first project to `embed_dim` (None: as they come).
            width = embed_dim or in_dim
            project = nn.Linear(in_dim, width) if embed_dim else nn.Identity()
            self.temporal = ProjectedTransformer(
                project, TransformerTemporalEncoder(width, layers, heads or spec["heads"], dropout)
            )
        self.aggregate = TemporalConvAggregation(width, conv_kernel, conv_dilation)
        self.head = nn.Sequential(  # feature compression, then prediction (sec. 3.1)
            nn.Linear(width, head_hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(head_hidden, 2), nn.Tanh()
        )

    def forward(self, inputs: dict[str, torch.Tensor], padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """{feature: [B, T, D]} -> [B, T, 2]; `padding_mask` [B, T] is True at real steps (None: all), and
        the outputs on an element's real steps do not depend on its padded ones."""
        inputs = {self.feature: inputs[self.feature]}
        mask = real_steps(padding_mask, inputs)
        x = zero_padding(inputs, mask)[self.feature]
        return self.head(self.aggregate(self.temporal(x, mask), mask))
