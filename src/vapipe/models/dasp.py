"""DASP: Distance-aware Soft Prompt learning for multimodal VA estimation (paper 004).

Architecture (sec. 3): per-frame CLIP ViT-B/16 image embeddings (visual) and AST embeddings
(audio), each projected to a common 256-d space and modelled by a bidirectional GRU (Eq. 1);
cross-modal attention with the visual stream as query and the audio stream as key and value
(Eq. 3); gated fusion of the attended audio with the visual context (Eqs. 4-5); a regression head
with tanh. Distance-aware soft prompting (sec. 3.3) adds a KL term: the fused features, projected
into CLIP's text space, are compared with nine frozen text prototypes of a 3 x 3 VA grid
(`vapipe.features.text_prototypes`), and the resulting region distribution is pulled towards
Gaussian soft labels of the true (v, a) (Eq. 2). Loss = L_CCC + lambda * KL with lambda = 0.2
(Eq. 6; the trainer adds `DASP.auxiliary_loss` to its CCC loss, see there for the scale).

Sec. 4.1: "the hidden dimension for the GRU and fusion modules is set to 256": each GRU has 256
units per direction (``hidden``), and the fusion modules (attention, gate, head) work at 256; the
two directions' 512-d output is mapped to that width by a linear layer (the paper gives the widths,
not how they meet). The 10-s windows of uniformly sampled frames are the trainer's
``train: {rate: N / 10, sampling: pick}`` with ``window: N`` (`vapipe.training.uniform_sampling`).

Departures from the paper, all because this pipeline trains on cached features:
- DASP fine-tunes CLIP and AST with a small learning rate (sec. 4.1); here both backbones are
  frozen and only the temporal, fusion and head layers are trained on their cached embeddings.

Where the text is silent (the equations are lost in the paper's text), the choices are:
- Eq. 2 soft labels: q_k = softmax_k(-||y - c_k||^2 / (2 sigma^2)), sigma = 0.45.
- Region distribution: p = softmax_k(cos(W f_t, t_k) / tau) with f_t the fused feature, W a
  learned linear map to the text width, t_k the re-normalised prototype and tau = 0.07 (CLIP's
  initial temperature), fixed.
- The KL is KL(q || p), averaged over valid frames.
- The window's stride and its number of sampled frames are lost (sec. 4.1): the configs use
  16 frames per 10 s (rate 1.6) and windows 8 rows (5 s) apart.
- Eq. 6's L_CCC (its formula is lost) is read as the challenge's: 1 - (CCC_v + CCC_a) / 2, the
  mean over the two targets, and lambda weighs the KL against that mean.
- Table 3's "standard" grid (its centres are lost) is read from sec. 5.2, where the +-0.66 grid
  "localizes" the regions away from the extremes: centres {-1, 0, 1} (``grid``), sigma 0.60.
- Eq. 3 is written with one softmax(QK^T / sqrt(d)) V, so one head by default (``heads``).
- Ablations (Table 2): ``fusion: cross_attention`` is the attended audio added to the visual
  context (a residual connection; the paper gives no combination rule), ``fusion: gated`` applies
  the Eq. 4-5 gate to the visual and the (unattended) audio context, ``fusion: both`` is the full
  model. ``temporal: tcn`` swaps each BiGRU for `vapipe.models.tcn.TemporalConvNet`.
- The head is Linear-GELU-Dropout-Linear-tanh on the fused feature (the paper does not describe it).

With ``prototypes: null`` the soft-prompt branch is off: `forward` returns only the [B, T, 2]
predictions (plain CCC regression) and there is no auxiliary loss.

Padding (a [B, T] mask, True at real steps): each BiGRU runs on the packed sequence, so its backward
direction starts at the last real step; the cross-modal attention leaves padded audio steps out as
keys; the TCN ablation's convolutions see zeros past the real steps. The gate, the head and the soft
prompts work frame by frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from vapipe.models import register_model
from vapipe.models.padding import real_steps, run_gru, zero_padding
from vapipe.models.tcn import TemporalConvNet
from vapipe.va_regions import GRID_VALUES, REGIONS

CCC_TARGETS = 2
"""The trainer's CCC loss (`vapipe.training.losses.ccc_loss`) sums 1 - CCC over these two targets."""

# --- pure helpers --------------------------------------------------------------------------------


def split_modalities(
    input_dims: dict[str, int], visual: str | None = None, audio: str | None = None
) -> tuple[str, str]:
    """(visual, audio) feature names: as given, else the one name starting with 'face' and the other."""
    if visual is None:
        faces = [n for n in input_dims if n.startswith("face") and n != audio]
        if len(faces) != 1:
            raise ValueError(f"cannot tell the visual feature among {sorted(input_dims)}; set 'visual'")
        visual = faces[0]
    if audio is None:
        others = [n for n in input_dims if n != visual]
        if len(others) != 1:
            raise ValueError(f"cannot tell the audio feature among {sorted(input_dims)}; set 'audio'")
        audio = others[0]
    for role, name in (("visual", visual), ("audio", audio)):
        if name not in input_dims:
            raise ValueError(f"{role} feature '{name}' is not among the inputs {sorted(input_dims)}")
    if visual == audio:
        raise ValueError(f"visual and audio are both '{visual}'")
    return visual, audio


def gaussian_soft_labels(va: torch.Tensor, centres: torch.Tensor, sigma: float = 0.45) -> torch.Tensor:
    """Eq. 2: q_k = exp(-||y - c_k||^2 / 2 sigma^2) / sum_j exp(-||y - c_j||^2 / 2 sigma^2); [..., 2] -> [..., K]."""
    squared = ((va[..., None, :] - centres) ** 2).sum(dim=-1)
    return torch.softmax(-squared / (2.0 * sigma**2), dim=-1)


def grid_centres(grid) -> torch.Tensor:
    """[9, 2] region centres of a 3 x 3 grid with `grid` (3 values) on each axis, in the prototype
    row order of `vapipe.va_regions.REGIONS` (valence outer, arousal inner)."""
    values = [float(v) for v in grid]
    if len(values) != 3 or sorted(values) != values or len(set(values)) != 3:
        raise ValueError(f"grid must be three increasing values (low, middle, high), got {list(grid)}")
    return torch.tensor([(v, a) for v in values for a in values], dtype=torch.float32)


def region_kl(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """KL(q || p) = sum_k q_k (log q_k - log p_k) per row ([..., K] -> [...]); 0 log 0 = 0."""
    return (torch.xlogy(targets, targets) - targets * log_probs).sum(dim=-1)


def load_prototypes(prototypes) -> np.ndarray:
    """Region prototypes [9, D] from a .npy path or an array-like; an int D is a placeholder of
    that width whose values come from a checkpoint's weights (`DASP.checkpoint_params`)."""
    source = "prototypes"
    if isinstance(prototypes, int) and not isinstance(prototypes, bool):
        return np.zeros((len(REGIONS), prototypes), np.float32)
    if isinstance(prototypes, (str, Path)):
        source = str(prototypes)
        if not Path(prototypes).is_file():
            raise FileNotFoundError(f"{source}: DASP prototypes file does not exist (rule text_prototypes makes it)")
        array = np.load(Path(prototypes))
    elif isinstance(prototypes, torch.Tensor):
        array = prototypes.detach().cpu().numpy()
    else:
        array = np.asarray(prototypes)
    array = array.astype(np.float32)
    if array.ndim != 2 or array.shape[0] != len(REGIONS):
        raise ValueError(f"{source}: prototypes must be [{len(REGIONS)}, D] (one row per VA region), got {array.shape}")
    return array


# --- paper blocks --------------------------------------------------------------------------------


class BiGRUEncoder(nn.Module):
    """Eq. 1: linear projection to the common width, a bidirectional GRU of `hidden` units per
    direction, and a linear map of its 2 * hidden outputs to the fusion width `hidden`."""

    def __init__(self, in_dim: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.project = nn.Sequential(nn.Linear(in_dim, hidden), nn.Dropout(dropout))
        self.gru = nn.GRU(
            hidden,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.to_fusion = nn.Linear(2 * hidden, hidden)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, T, D] -> [B, T, hidden]; with a [B, T] mask of real steps, each element's sequence ends
        at its last real step (both directions); padded steps carry no information forward."""
        return self.to_fusion(run_gru(self.gru, self.project(x), padding_mask))


TEMPORAL_ENCODERS = {
    "gru": lambda in_dim, p: BiGRUEncoder(in_dim, p["hidden"], p["gru_layers"], p["dropout"]),
    "tcn": lambda in_dim, p: TemporalConvNet(in_dim, p["hidden"], p["tcn_levels"], p["tcn_kernel"], p["dropout"]),
}


class CrossModalAttention(nn.Module):
    """Eq. 3: A = softmax(Q K^T / sqrt(d)) V with Q from the visual, K and V from the audio stream."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.attention = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)

    def forward(self, query: torch.Tensor, context: torch.Tensor, padding_mask: torch.Tensor | None = None):
        """[B, T, H] visual query, [B, T, H] audio context -> [B, T, H] attended audio; padded audio steps
        (`padding_mask` [B, T] False) are no key."""
        keys_out = None if padding_mask is None else ~padding_mask
        return self.attention(query, context, context, key_padding_mask=keys_out, need_weights=False)[0]


class GatedFusion(nn.Module):
    """Eqs. 4-5: g = sigmoid(W_g [x; h_v] + b_g), F = g * x + (1 - g) * h_v."""

    def __init__(self, hidden: int):
        super().__init__()
        self.gate = nn.Linear(2 * hidden, hidden)

    def forward(self, x: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """[B, T, H] candidate (attended audio), [B, T, H] visual context -> [B, T, H]."""
        g = torch.sigmoid(self.gate(torch.cat([x, visual], dim=-1)))
        return g * x + (1.0 - g) * visual


class HierarchicalFusion(nn.Module):
    """Sec. 3.4: cross-modal attention, then the gate against the visual context (Table 2 'Attn. + Gated')."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.attend = CrossModalAttention(hidden, heads, dropout)
        self.gate = GatedFusion(hidden)

    def forward(self, visual: torch.Tensor, audio: torch.Tensor, padding_mask: torch.Tensor | None = None):
        return self.gate(self.attend(visual, audio, padding_mask), visual)


class CrossAttentionFusion(nn.Module):
    """Table 2 'CM Attn.' ablation: the attended audio added to the visual context (residual)."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.attend = CrossModalAttention(hidden, heads, dropout)

    def forward(self, visual: torch.Tensor, audio: torch.Tensor, padding_mask: torch.Tensor | None = None):
        return visual + self.attend(visual, audio, padding_mask)


class GatedOnlyFusion(nn.Module):
    """Table 2 'Gated' ablation: the Eq. 4-5 gate between the audio and the visual context."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.gate = GatedFusion(hidden)

    def forward(self, visual: torch.Tensor, audio: torch.Tensor, padding_mask: torch.Tensor | None = None):
        return self.gate(audio, visual)  # frame by frame: nothing crosses time


FUSIONS = {"both": HierarchicalFusion, "cross_attention": CrossAttentionFusion, "gated": GatedOnlyFusion}


class DistanceAwareSoftPrompt(nn.Module):
    """Sec. 3.3: log p_k = log_softmax_k(cos(W f, t_k) / tau) over the nine region text prototypes t_k."""

    def __init__(self, hidden: int, prototypes: np.ndarray, temperature: float):
        super().__init__()
        self.project = nn.Linear(hidden, prototypes.shape[1])
        self.register_buffer("prototypes", torch.from_numpy(prototypes))  # frozen; saved in checkpoints
        self.temperature = float(temperature)

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        """[B, T, H] -> [B, T, K] log-probabilities of the regions."""
        z = nn.functional.normalize(self.project(fused), dim=-1)
        t = nn.functional.normalize(self.prototypes, dim=-1)
        return torch.log_softmax(z @ t.T / self.temperature, dim=-1)


@register_model("dasp")
class DASP(nn.Module):
    """DASP (paper 004): BiGRU per modality, hierarchical fusion, tanh head, soft-prompt KL branch.

    ``forward`` returns ``(va [B, T, 2], {"region_log_probs": [B, T, 9]})`` when ``prototypes`` is
    set (a .npy path, an array [9, D_text] or, from a checkpoint, the width D_text; see
    `vapipe.features.text_prototypes`), else only
    ``va``. `auxiliary_loss` is lambda * KL(q || p) over the valid frames.
    """

    def __init__(
        self,
        input_dims: dict[str, int],
        visual: str | None = None,
        audio: str | None = None,
        hidden: int = 256,
        temporal: str = "gru",
        fusion: str = "both",
        heads: int = 1,
        gru_layers: int = 1,
        tcn_levels: int = 3,
        tcn_kernel: int = 5,
        dropout: float = 0.1,
        prototypes=None,
        sigma: float = 0.45,
        grid=GRID_VALUES,
        kl_weight: float = 0.2,
        temperature: float = 0.07,
    ):
        super().__init__()
        if temporal not in TEMPORAL_ENCODERS:
            raise ValueError(f"temporal '{temporal}' is not one of {', '.join(TEMPORAL_ENCODERS)}")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion '{fusion}' is not one of {', '.join(FUSIONS)}")
        self.visual, self.audio = split_modalities(input_dims, visual, audio)
        settings = {
            "hidden": hidden,
            "gru_layers": gru_layers,
            "tcn_levels": tcn_levels,
            "tcn_kernel": tcn_kernel,
            "dropout": dropout,
        }
        self.encoders = nn.ModuleDict(
            {name: TEMPORAL_ENCODERS[temporal](input_dims[name], settings) for name in (self.visual, self.audio)}
        )
        self.fusion = FUSIONS[fusion](hidden, heads, dropout)
        self.head = nn.Sequential(
            nn.Linear(hidden, hidden // 2), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden // 2, 2), nn.Tanh()
        )
        self.soft_prompt = (
            None if prototypes is None else DistanceAwareSoftPrompt(hidden, load_prototypes(prototypes), temperature)
        )
        self.register_buffer("centres", grid_centres(grid), persistent=False)
        self.sigma = float(sigma)
        self.kl_weight = float(kl_weight)

    def checkpoint_params(self, params: dict) -> dict:
        """`params` to rebuild this model from a checkpoint: the prototypes file becomes its width,
        since the prototypes themselves are a buffer saved with the weights."""
        if self.soft_prompt is None:
            return dict(params)
        return {**params, "prototypes": int(self.soft_prompt.prototypes.shape[1])}

    def forward(self, inputs: dict[str, torch.Tensor], padding_mask: torch.Tensor | None = None):
        """{name: [B, T, D]} -> va [B, T, 2], or (va, {"region_log_probs": [B, T, 9]}) with prototypes;
        `padding_mask` [B, T] is True at real steps (None: all), and the outputs on an element's real
        steps do not depend on its padded ones."""
        mask = real_steps(padding_mask, inputs)
        inputs = zero_padding(inputs, mask)
        visual = self.encoders[self.visual](inputs[self.visual], mask)
        audio = self.encoders[self.audio](inputs[self.audio], mask)
        fused = self.fusion(visual, audio, mask)
        va = self.head(fused)
        if self.soft_prompt is None:
            return va
        return va, {"region_log_probs": self.soft_prompt(fused)}

    def auxiliary_loss(self, aux: dict[str, torch.Tensor], labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Eq. 6's lambda * KL(q || p) on the trainer's scale: q the Eq. 2 soft labels of `labels`
        [B, T, 2], KL averaged over the `mask` [B, T] frames.

        Eq. 6 is L_CCC + lambda KL with L_CCC the mean over valence and arousal of 1 - CCC; the trainer
        minimises their sum, 2 L_CCC, so this term is 2 lambda KL and the total is 2 (L_CCC + lambda KL):
        the paper's loss, doubled. Zero when the soft-prompt branch is off or no frame is valid.
        """
        keep = mask.bool()
        if self.soft_prompt is None or "region_log_probs" not in aux or not keep.any():
            return labels.new_zeros(())
        targets = gaussian_soft_labels(labels[keep].float(), self.centres, self.sigma)
        return CCC_TARGETS * self.kl_weight * region_kl(aux["region_log_probs"][keep], targets).mean()
