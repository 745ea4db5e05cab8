"""MSTCN-CMA (paper 003, USTC): the multi-scale TCN, visual-query attention and head, each against
the paper's equations written out by hand with the module's weights."""

import math
from pathlib import Path

import pytest
import torch
import yaml
from model_checks import learns_a_function_of
from torch.nn import functional as F

from vapipe.models import create_model
from vapipe.models.mstcn import CrossModalAttention, MultiScaleTCN

DIMS = {"face_iresnet50": 7, "voice_vggish": 5, "voice_logmel": 6}
SMALL = {"hidden": 4, "levels": 2, "head_hidden": 8, "dropout": 0.0}
CONFIG = Path(__file__).resolve().parents[1] / "config"


pytestmark = pytest.mark.usefixtures("single_thread")


def inputs(batch, length, seed=0, dims=DIMS):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(batch, length, d, generator=g) for k, d in dims.items()}


def small_mstcn(seed=0, dims=DIMS, **params):
    torch.manual_seed(seed)
    return create_model("mstcn_cma", dims, **{**SMALL, **params})


# --- the equations, written out ------------------------------------------------------------------


def conv_same(x: torch.Tensor, conv: torch.nn.Conv1d) -> torch.Tensor:
    """A dilated convolution with zeros beyond both ends, summed tap by tap: [B, C, T] -> [B, C', T]."""
    k, d = conv.kernel_size[0], conv.dilation[0]
    half = (k - 1) * d // 2
    padded = F.pad(x, (half, half))
    length = x.shape[-1]
    out = conv.bias[None, :, None].expand(x.shape[0], -1, length).clone()
    for j in range(k):
        out = out + torch.einsum("oc,bct->bot", conv.weight[:, :, j], padded[:, :, j * d : j * d + length])
    return out


def tcn_by_hand(tcn, x: torch.Tensor, kernel: int, levels: int) -> torch.Tensor:
    """Linear + LayerNorm, then `levels` residual blocks h + GELU(conv(GELU(conv(h)))) with kernel
    `kernel` and dilations 1, 2, 4, ...: [B, T, D] -> [B, T, hidden]."""
    linear, norm = tcn.project[0], tcn.project[1]
    h = F.layer_norm(x @ linear.weight.T + linear.bias, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    h = h.transpose(1, 2)
    for level, block in enumerate(tcn.blocks):
        first, second = block.net[0], block.net[3]
        assert (first.kernel_size[0], first.dilation[0]) == (kernel, 2**level)
        assert (second.kernel_size[0], second.dilation[0]) == (kernel, 2**level)
        h = h + F.gelu(conv_same(F.gelu(conv_same(h, first)), second))
    assert len(tcn.blocks) == levels
    return h.transpose(1, 2)


def multiscale_by_hand(encoder: MultiScaleTCN, x: torch.Tensor, levels: int) -> torch.Tensor:
    """Eq. 5-7: Concat(TCN_3(F), TCN_5(F), TCN_7(F)), in that order."""
    return torch.cat([tcn_by_hand(b, x, k, levels) for b, k in zip(encoder.branches, (3, 5, 7), strict=True)], dim=-1)


def attention_by_hand(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Eq. 8 with K = V = the audio stream, one visual step at a time: sum_s softmax_s(q . k_s / sqrt(d_k)) k_s."""
    out = torch.zeros_like(query)
    d_k = keys.shape[-1]
    for b in range(query.shape[0]):
        for t in range(query.shape[1]):
            scores = torch.tensor([float(query[b, t] @ keys[b, s]) / math.sqrt(d_k) for s in range(keys.shape[1])])
            weights = torch.exp(scores - scores.max())
            weights = weights / weights.sum()
            out[b, t] = (weights[:, None] * keys[b]).sum(dim=0)
    return out


def head_by_hand(head, fused: torch.Tensor) -> torch.Tensor:
    """Eq. 12-15: y = W_2 GELU(W_1 LayerNorm(F_concat) + b_1) + b_2 (dropout is the identity in eval)."""
    norm, first, second = head[0], head[1], head[4]
    normed = (fused - fused.mean(-1, keepdim=True)) / torch.sqrt(fused.var(-1, unbiased=False, keepdim=True) + norm.eps)
    normed = normed * norm.weight + norm.bias
    hidden = F.gelu(normed @ first.weight.T + first.bias)
    return hidden @ second.weight.T + second.bias


# --- tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 2, 13])
def test_multiscale_tcn_is_eq5_concat_of_kernels_3_5_7(length):
    torch.manual_seed(0)
    encoder = MultiScaleTCN(7, 4, levels=3, kernel_sizes=(3, 5, 7), dropout=0.0).eval()
    x = torch.randn(2, length, 7)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), multiscale_by_hand(encoder, x, levels=3), rtol=1e-4, atol=1e-5)


def test_cross_modal_attention_is_eq8_with_visual_queries_and_audio_keys_and_values():
    torch.manual_seed(0)
    visual, audio = torch.randn(2, 5, 6), torch.randn(2, 8, 6)
    torch.testing.assert_close(CrossModalAttention()(visual, audio), attention_by_hand(visual, audio))
    # padded audio steps are no key: the same as attending to the real steps only
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, 5:] = False
    out = CrossModalAttention()(visual, audio, mask)
    torch.testing.assert_close(out[1], attention_by_hand(visual[1:], audio[1:, :5])[0])


@pytest.mark.parametrize("audio", [["voice_vggish"], ["voice_vggish", "voice_logmel"]])
def test_model_is_eq5_to_eq15_by_hand(audio):
    dims = {k: DIMS[k] for k in ["face_iresnet50", *audio]}
    model = small_mstcn(dims=dims, levels=2).eval()
    x = inputs(2, 9, seed=3, dims=dims)
    x = {k: 3 * v for k, v in x.items()}  # large enough that a squashed output would differ
    with torch.no_grad():
        visual = multiscale_by_hand(model.encoders["face_iresnet50"], x["face_iresnet50"], levels=2)
        assert sorted(model.audio) == sorted(audio)
        streams = [multiscale_by_hand(model.encoders[m], x[m], levels=2) for m in model.audio]
        attended = [attention_by_hand(visual, stream) for stream in streams]  # Eq. 9-10
        fused = torch.cat([visual, *attended], dim=-1)  # Eq. 11
        assert fused.shape == (2, 9, (1 + len(audio)) * 3 * 4)
        torch.testing.assert_close(model.fuse(x), fused, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model(x), head_by_hand(model.head, fused), rtol=1e-4, atol=1e-5)


def test_head_output_is_eq15_linear_not_squashed():
    model = small_mstcn().eval()
    with torch.no_grad():
        model.head[4].bias.fill_(3.0)  # Eq. 15: y = W_2 F + b_2 follows its bias past 1
        out = model(inputs(1, 4))
    assert (out > 1.5).all()


def test_audio_only_inputs_are_refused():
    with pytest.raises(ValueError, match="visual"):
        create_model("mstcn_cma", {"voice_vggish": 5, "voice_logmel": 6})


def test_same_seed_same_model_and_another_seed_differs():
    x = inputs(2, 9)
    a, b, c = (small_mstcn(seed).eval()(x) for seed in (0, 0, 1))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


def test_learns_a_function_of_its_inputs():
    model = small_mstcn()
    x = inputs(4, 24, seed=1)
    loss, variance = learns_a_function_of(model, x, "face_iresnet50", "voice_vggish")
    assert loss < 0.6 * variance  # well below the best constant's loss


# --- the LogMel stream (Eq. 3-4): a VGG's features of the log mel spectrogram ----------------------


@pytest.mark.parametrize("config", ["config.yaml", "affwild2.yaml"])
def test_logmel_stream_is_a_vgg_over_log_mel_windows(config):
    """F_lm = VGG(S), S = LogMel(A): the model reads a VGG's features of the spectrogram, not S itself."""
    spec = yaml.safe_load((CONFIG / config).read_text())
    features = spec["systems"]["mstcn_cma"]["features"]  # visual, VGGish, LogMel (Table 1's order)
    logmel = spec["backbones"][features[2]]
    assert (logmel["kind"], logmel["id"][:3], logmel["n_mels"]) == ("spectrogram_cnn", "vgg", 128)
    if config == "affwild2.yaml":
        rows = yaml.safe_load((CONFIG / "rows.yaml").read_text())["ustc"]["systems"]["ustc_mstcn"]
        assert rows["features"][2] == features[2]
