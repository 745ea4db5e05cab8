"""SAGE (paper 000, 10th ABAW): TCN per modality, Reliability-Guided Fusion, Temporal Refinement Transformer.

Also holds `split_modalities`, which the audio-visual models use to tell their visual input from their
audio inputs.
"""

from __future__ import annotations

import torch
from torch import nn

from vapipe.models import register_model
from vapipe.models.padding import lengths, real_steps, zero_padding
from vapipe.models.tcn import TemporalConvNet


def split_modalities(
    input_dims: dict[str, int], visual: str | None = None, audio: list[str] | str | None = None
) -> tuple[str, list[str]]:
    """(visual key, audio keys) of a model's inputs: the named ones, else the one 'face*' key and the rest."""
    if visual is None:
        faces = sorted(k for k in input_dims if k.startswith("face"))
        if len(faces) != 1:
            raise ValueError(f"cannot tell the visual input among {sorted(input_dims)}: name it with `visual`")
        visual = faces[0]
    if audio is None:
        audio = sorted(k for k in input_dims if k != visual)
    elif isinstance(audio, str):
        audio = [audio]
    audio = list(audio)
    unknown = [k for k in [visual, *audio] if k not in input_dims]
    if unknown:
        raise ValueError(f"inputs {unknown} are not among the model's features {sorted(input_dims)}")
    if not audio or visual in audio:
        raise ValueError(f"need a visual input and at least one other (audio) input, got {visual!r} and {audio}")
    return visual, audio


class ReliabilityGuidedFusion(nn.Module):
    """SAGE Sec. 3.2.1: logit r_t = w^T z_t + b (Eq. 6-7), alpha = softmax over time (Eq. 8-9),
    z~_t = alpha_t z_t (Eq. 10-11).

    With `scale_by_length` (default) z~_t = T alpha_t z_t: the same reweighting, but uniform reliability
    leaves the features unchanged instead of shrinking them by 1/T (300 frames in the paper).

    With a padding mask, time is each window's real steps: the softmax runs over them (alpha is zero on
    padded steps and sums to one over the real ones), T is the window's real length, and z~ is zero on
    padded steps.
    """

    def __init__(self, dim: int, scale_by_length: bool = True):
        super().__init__()
        self.score = nn.Linear(dim, 1)
        self.scale_by_length = scale_by_length

    def forward(self, z: torch.Tensor, padding_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, T, D] -> (reweighted [B, T, D], reliability alpha [B, T], summing to one over T);
        `padding_mask` [B, T] is True at real steps (None: all)."""
        logits = self.score(z).squeeze(-1)
        if padding_mask is None:
            alpha = torch.softmax(logits, dim=1)
            weights = alpha * z.shape[1] if self.scale_by_length else alpha
            return z * weights.unsqueeze(-1), alpha
        alpha = torch.softmax(logits.masked_fill(~padding_mask, -torch.inf), dim=1)  # 0 on padded steps
        weights = alpha * lengths(padding_mask)[:, None].to(alpha.dtype) if self.scale_by_length else alpha
        return z.masked_fill(~padding_mask[..., None], 0.0) * weights.unsqueeze(-1), alpha


class TemporalRefinementTransformer(nn.Module):
    """SAGE Sec. 3.2.2: multi-head self-attention (Eq. 12-13) with residual, H = LayerNorm(Z + MHSA(Z)) (Eq. 14)."""

    def __init__(self, dim: int, heads: int, layers: int, dropout: float):
        super().__init__()
        self.attention = nn.ModuleList(
            [nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True) for _ in range(layers)]
        )
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(layers)])

    def forward(self, z: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, T, D] -> [B, T, D]; padded steps ([B, T] `padding_mask` False) are no key of any query."""
        keys_out = None if padding_mask is None else ~padding_mask
        for attention, norm in zip(self.attention, self.norms, strict=True):
            z = norm(z + attention(z, z, z, key_padding_mask=keys_out, need_weights=False)[0])
        return z


@register_model("sage")
class SAGE(nn.Module):
    """SAGE (paper 000, Sec. 3): a TCN per modality (Eq. 2), concatenation (Eq. 3), Reliability-Guided Fusion,
    Temporal Refinement Transformer (Eq. 4) and a frame-wise MLP (Eq. 5), tanh to [-1, 1].

    The paper trains from face crops with flip/crop augmentation; here the ResNet-50 / WavLM backbones are
    frozen and their cached features are the inputs. The paper gives no layer sizes: the defaults are ours.
    `reliability` holds the last forward's weights alpha [B, T] (zero on padded steps).
    """

    def __init__(
        self,
        input_dims: dict[str, int],
        visual: str | None = None,
        audio: list[str] | str | None = None,
        hidden: int = 256,
        levels: int = 4,
        kernel_size: int = 3,
        heads: int = 8,
        layers: int = 1,
        dropout: float = 0.1,
        scale_by_length: bool = True,
        reliability_fusion: bool = True,
    ):
        super().__init__()
        visual, audio = split_modalities(input_dims, visual, audio)
        self.modalities = [visual, *audio]
        self.encoders = nn.ModuleDict(
            {m: TemporalConvNet(input_dims[m], hidden, levels, kernel_size, dropout) for m in self.modalities}
        )
        width = hidden * len(self.modalities)
        # False: plain concatenation, the ablation SAGE's reliability-guided fusion is compared with
        self.fusion = ReliabilityGuidedFusion(width, scale_by_length) if reliability_fusion else None
        self.refinement = TemporalRefinementTransformer(width, heads, layers, dropout)
        self.head = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 2), nn.Tanh()
        )
        self.reliability: torch.Tensor | None = None

    def forward(self, inputs: dict[str, torch.Tensor], padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """{modality: [B, T, D_m]} -> [B, T, 2] (valence, arousal); `padding_mask` [B, T] is True at real
        steps (None: all), and the outputs on an element's real steps do not depend on its padded ones."""
        mask = real_steps(padding_mask, inputs)
        inputs = zero_padding(inputs, mask)
        z = torch.cat([self.encoders[m](inputs[m], mask) for m in self.modalities], dim=-1)
        if self.fusion is not None:
            z, alpha = self.fusion(z, mask)
            self.reliability = alpha.detach()
        return self.head(self.refinement(z, mask))
