"""IACA (paper 002): the CA / JCA / RJCA / TCA audio-visual fusions, each with or without the
Inconsistency-Aware two-stage gating.

Features are [B, T, d] here (the paper writes d x L); every fusion works for any length T.

Without gating (the paper's "w/o IACA" baselines) a model is what the baselines' papers and code
are: each modality's backbone features projected to d (a linear layer, as the authors' JCA code's
per-modality encoders), the cross-modal fusion, and a regressor on [X_att,a; X_att,v]. CA and TCA
"rely only on cross-modal interactions" (IACA, Sec. 4-C): no self-attention encoder precedes them.
With gating, IACA adds what the paper gives it: self-attended features X_m (one Transformer encoder
per modality, Sec. 1 and 3-C) that the fusion reads and that stage 1 of the gate weighs against the
cross-attended X_att,m.

Padding (a [B, T] mask, True at real steps): the self-attention encoders, CA's two softmaxes and TCA's
attention leave padded steps out as keys, and JCA's mean over time (C_m J / T) is over the real steps,
T the real length. The projections and the gates work frame by frame and need no mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from vapipe.models import register_model
from vapipe.models.padding import real_steps, zero_padding
from vapipe.models.sage import split_modalities


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """[length, dim] sine/cosine position codes (Vaswani et al., 2017)."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(1e4) / dim))
    codes = torch.zeros(length, dim + dim % 2, device=device)
    codes[:, 0::2] = torch.sin(position * frequency)
    codes[:, 1::2] = torch.cos(position * frequency)
    return codes[:, :dim]


class ModalityProjection(nn.Module):
    """One modality's backbone features projected to the model width d, frame by frame (the
    baselines' per-modality linear encoders; LayerNorm keeps the scale CA's correlation sees fixed)."""

    def __init__(self, in_dim: int, dim: int, dropout: float):
        super().__init__()
        self.project = nn.Sequential(nn.Linear(in_dim, dim), nn.LayerNorm(dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, D] -> [B, T, d]."""
        return self.project(x)


class SelfAttentionEncoder(nn.Module):
    """One modality's self-attended features X_m (IACA, Sec. 1, 3-C): positions, Transformer layers."""

    def __init__(self, dim: int, heads: int, layers: int, dropout: float):
        super().__init__()
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout, activation="gelu", batch_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, T, d] -> [B, T, d]; padded steps ([B, T] `padding_mask` False) are no key of any query."""
        keys_out = None if padding_mask is None else ~padding_mask
        return self.layers(x + sinusoidal_positions(x.shape[1], x.shape[2], x.device), src_key_padding_mask=keys_out)


class CrossAttention(nn.Module):
    """CA (Sec. 3-B, Eq. 1-4): Z = X_a W X_v^T / sqrt(d); softmax over audio steps (A_a) and over visual
    steps (A_v); X_att,a = tanh(X_a + A_a^T X_a), X_att,v = tanh(X_v + A_v^T X_v)."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim, dim))
        nn.init.xavier_uniform_(self.weight)

    def forward(
        self, x_a: torch.Tensor, x_v: torch.Tensor, padding_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """([B, T, d], [B, T, d], [B, T] real steps or None) -> cross-attended (X_att,a, X_att,v)."""
        z = x_a @ self.weight @ x_v.transpose(1, 2) / math.sqrt(x_a.shape[-1])  # [B, T_a, T_v]
        over_audio, over_visual = z, z
        if padding_mask is not None:  # each softmax leaves out the padded steps it runs over
            over_audio = z.masked_fill(~padding_mask[:, :, None], -torch.inf)
            over_visual = z.masked_fill(~padding_mask[:, None, :], -torch.inf)
        attended_a = torch.softmax(over_audio, dim=1).transpose(1, 2) @ x_a  # Eq. 1-2: column-wise softmax of Z
        attended_v = torch.softmax(over_visual, dim=2) @ x_v  # column-wise softmax of Z^T
        return torch.tanh(x_a + attended_a), torch.tanh(x_v + attended_v)


class JointCrossAttention(nn.Module):
    """JCA (Praveen et al., CVPRW 2022 / T-BIOM 2023), the paper's baseline [3, 5], over time steps.

    J = [X_a; X_v]; C_m = tanh(X_m W_jm J^T / sqrt(2d)) [T x T]; H_m = ReLU(X_m W_m + (C_m J / T) W_cm);
    X_att,m = H_m W_hm + X_m. The original correlates feature channels through an L x L weight for a
    fixed number L of clips; correlating time steps instead (C_m J / T: correlation-weighted mean of the
    joint features) keeps every weight independent of the window length. With padding, the mean is over
    the real steps: padded rows of J count as zero and T is the real length.
    """

    def __init__(self, dim: int, attention_dim: int):
        super().__init__()
        joint = 2 * dim
        self.joint_a = nn.Linear(joint, dim, bias=False)  # W_ja
        self.joint_v = nn.Linear(joint, dim, bias=False)  # W_jv
        self.own_a = nn.Linear(dim, attention_dim, bias=False)  # W_a
        self.own_v = nn.Linear(dim, attention_dim, bias=False)  # W_v
        self.corr_a = nn.Linear(joint, attention_dim, bias=False)  # W_ca
        self.corr_v = nn.Linear(joint, attention_dim, bias=False)  # W_cv
        self.out_a = nn.Linear(attention_dim, dim, bias=False)  # W_ha
        self.out_v = nn.Linear(attention_dim, dim, bias=False)  # W_hv

    @staticmethod
    def _attend(x, joint, w_joint, w_own, w_corr, w_out, padding_mask=None) -> torch.Tensor:
        corr = torch.tanh(x @ w_joint(joint).transpose(1, 2) / math.sqrt(joint.shape[-1]))
        if padding_mask is None:
            mean = corr @ joint / joint.shape[1]
        else:
            real = padding_mask[..., None].to(joint.dtype)
            mean = corr @ (joint * real) / real.sum(dim=1, keepdim=True)
        hidden = torch.relu(w_own(x) + w_corr(mean))
        return w_out(hidden) + x

    def forward(
        self, x_a: torch.Tensor, x_v: torch.Tensor, padding_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """([B, T, d], [B, T, d], [B, T] real steps or None) -> cross-attended (X_att,a, X_att,v)."""
        joint = torch.cat([x_a, x_v], dim=-1)
        return (
            self._attend(x_a, joint, self.joint_a, self.own_a, self.corr_a, self.out_a, padding_mask),
            self._attend(x_v, joint, self.joint_v, self.own_v, self.corr_v, self.out_v, padding_mask),
        )


class RecursiveJointCrossAttention(nn.Module):
    """RJCA (Praveen et al., ICASSP 2023), baseline [2]: JCA applied `iterations` times, each pass on the
    previous pass's attended features, one set of weights per pass (as in the authors' code)."""

    def __init__(self, dim: int, attention_dim: int, iterations: int):
        super().__init__()
        self.passes = nn.ModuleList([JointCrossAttention(dim, attention_dim) for _ in range(iterations)])

    def forward(
        self, x_a: torch.Tensor, x_v: torch.Tensor, padding_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        for jca in self.passes:
            x_a, x_v = jca(x_a, x_v, padding_mask)
        return x_a, x_v


class CrossModalTransformerBlock(nn.Module):
    """One stream attends to the other: Y = LN(Q + MHA(Q + P, C + P, C)), out = LN(Y + FFN(Y)), with P
    sinusoidal positions on queries and keys only: no self-attention precedes TCA, so the order of
    the steps reaches the attention here."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.feedforward = nn.Sequential(
            nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim)
        )
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(
        self, query: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[B, T, d] query, [B, T', d] context, [B, T'] real context steps or None -> [B, T, d]."""
        keys_out = None if context_mask is None else ~context_mask
        where = sinusoidal_positions(query.shape[1], query.shape[2], query.device)  # the steps' order
        there = sinusoidal_positions(context.shape[1], context.shape[2], context.device)
        attended = self.attention(
            query + where, context + there, context, key_padding_mask=keys_out, need_weights=False
        )[0]
        y = self.norm1(query + attended)
        return self.norm2(y + self.feedforward(y))


class TransformerCrossAttention(nn.Module):
    """TCA (Parthasarathy & Sundaram, SLT 2021), baseline [14]: audio queries attend to visual keys/values
    and visual queries to audio, with multi-head attention; cross-modal interaction only."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.audio = CrossModalTransformerBlock(dim, heads, dropout)
        self.visual = CrossModalTransformerBlock(dim, heads, dropout)

    def forward(
        self, x_a: torch.Tensor, x_v: torch.Tensor, padding_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.audio(x_a, x_v, padding_mask), self.visual(x_v, x_a, padding_mask)


FUSIONS: dict[str, Callable[[int, dict], nn.Module]] = {
    "ca": lambda dim, p: CrossAttention(dim),
    "jca": lambda dim, p: JointCrossAttention(dim, p["attention_dim"]),
    "rjca": lambda dim, p: RecursiveJointCrossAttention(dim, p["attention_dim"], p["iterations"]),
    "tca": lambda dim, p: TransformerCrossAttention(dim, p["heads"], p["dropout"]),
}


class InconsistencyAwareGate(nn.Module):
    """IACA's two-stage gating (Sec. 3-C).

    Stage 1 (Eq. 5-8), per modality m: G_m = softmax(X_att,m W_gl,m / T) over {self-attended, cross-attended},
    X_att,gm = ReLU(X_m G_m0 + X_att,m G_m1). Joint layer: X_att,gav = FC([X_att,ga; X_att,gv]).
    Stage 2 (Eq. 9): G_av = softmax(W_av [X_att,ga; X_att,gv; X_att,gav] / T) over the three,
    X_att,g = ReLU(X_att,ga G_av0 + X_att,gv G_av1 + X_att,gav G_av2).
    """

    def __init__(self, dim: int, temperature: float):
        super().__init__()
        self.temperature = temperature
        self.gate_a = nn.Linear(dim, 2, bias=False)  # W_gl,a
        self.gate_v = nn.Linear(dim, 2, bias=False)  # W_gl,v
        self.joint = nn.Linear(2 * dim, dim)
        self.gate_av = nn.Linear(3 * dim, 3, bias=False)

    def forward(
        self, x_a: torch.Tensor, x_v: torch.Tensor, att_a: torch.Tensor, att_v: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Self-attended and cross-attended [B, T, d] -> (X_att,g [B, T, d], {audio, visual, av} gates)."""
        g_a = torch.softmax(self.gate_a(att_a) / self.temperature, dim=-1)
        g_v = torch.softmax(self.gate_v(att_v) / self.temperature, dim=-1)
        gated_a = torch.relu(x_a * g_a[..., :1] + att_a * g_a[..., 1:])
        gated_v = torch.relu(x_v * g_v[..., :1] + att_v * g_v[..., 1:])
        gated_av = self.joint(torch.cat([gated_a, gated_v], dim=-1))
        stack = torch.stack([gated_a, gated_v, gated_av], dim=-2)  # [B, T, 3, d]
        g_av = torch.softmax(self.gate_av(stack.flatten(-2)) / self.temperature, dim=-1)
        fused = torch.relu((stack * g_av.unsqueeze(-1)).sum(dim=-2))
        return fused, {"audio": g_a, "visual": g_v, "av": g_av}


@register_model("iaca")
class IACA(nn.Module):
    """IACA (paper 002): a CA/JCA/RJCA/TCA fusion (`fusion`), with (`gating=True`) or without the
    two-stage gating, MLP head, tanh to [-1, 1].

    Without gating (a "w/o IACA" baseline): projected features -> fusion -> head on [X_att,a; X_att,v],
    as in the baselines. With gating: projected features -> self-attention encoder per modality (X_m)
    -> fusion (X_att,m) -> the gate weighs X_m and X_att,m (Eq. 5-9) -> head on X_att,g. The paper's
    R3D / ResNet-18 backbones were fine-tuned on Aff-Wild2 by the baselines; here they are frozen and
    cached. The paper gives no temperature value: 0.1 is the one in the same authors' gated
    cross-attention code (DCA). Several audio inputs are concatenated per frame. `gates` holds the
    last forward's gate values.
    """

    def __init__(
        self,
        input_dims: dict[str, int],
        visual: str | None = None,
        audio: list[str] | str | None = None,
        fusion: str = "rjca",
        gating: bool = True,
        temperature: float = 0.1,
        hidden: int = 512,
        heads: int = 8,
        encoder_layers: int = 1,
        attention_dim: int = 32,
        iterations: int = 2,
        head_hidden: int = 128,
        dropout: float = 0.1,
    ):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion '{fusion}'; known: {', '.join(sorted(FUSIONS))}")
        self.visual, self.audio = split_modalities(input_dims, visual, audio)
        audio_dim = sum(input_dims[m] for m in self.audio)
        # The self-attended features are IACA's (stage 1 chooses between them and the cross-attended ones).
        self.project_audio = ModalityProjection(audio_dim, hidden, dropout)
        self.encode_audio = SelfAttentionEncoder(hidden, heads, encoder_layers, dropout) if gating else None
        self.project_visual = ModalityProjection(input_dims[self.visual], hidden, dropout)
        self.encode_visual = SelfAttentionEncoder(hidden, heads, encoder_layers, dropout) if gating else None
        self.fusion = FUSIONS[fusion](
            hidden, {"heads": heads, "attention_dim": attention_dim, "iterations": iterations, "dropout": dropout}
        )
        self.gate = InconsistencyAwareGate(hidden, temperature) if gating else None
        width = hidden if gating else 2 * hidden
        self.head = nn.Sequential(
            nn.Linear(width, head_hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(head_hidden, 2), nn.Tanh()
        )
        self.gates: dict[str, torch.Tensor] = {}

    def forward(self, inputs: dict[str, torch.Tensor], padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """{modality: [B, T, D_m]} -> [B, T, 2] (valence, arousal); `padding_mask` [B, T] is True at real
        steps (None: all), and the outputs on an element's real steps do not depend on its padded ones."""
        mask = real_steps(padding_mask, inputs)
        inputs = zero_padding(inputs, mask)
        x_a = self.project_audio(torch.cat([inputs[m] for m in self.audio], dim=-1))
        if self.encode_audio is not None:
            x_a = self.encode_audio(x_a, mask)
        x_v = self.project_visual(inputs[self.visual])
        if self.encode_visual is not None:
            x_v = self.encode_visual(x_v, mask)
        att_a, att_v = self.fusion(x_a, x_v, mask)
        if self.gate is None:
            return self.head(torch.cat([att_a, att_v], dim=-1))
        fused, gates = self.gate(x_a, x_v, att_a, att_v)
        self.gates = {k: g.detach() for k, g in gates.items()}
        return self.head(fused)
