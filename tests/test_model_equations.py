"""The equations of the TCN baseline (vapipe.models.tcn), SAGE's fusion and refinement
(vapipe.models.sage) and the padding helpers (vapipe.models.padding), each recomputed by hand
from the modules' own weights: a shape or a [-1, 1] range after tanh is no test of them."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vapipe.models import create_model
from vapipe.models.padding import lengths, masked_batch_norm, real_steps, run_gru, zero_padding
from vapipe.models.sage import ReliabilityGuidedFusion, TemporalRefinementTransformer
from vapipe.models.tcn import TemporalBlock, TemporalConvNet

pytestmark = pytest.mark.usefixtures("single_thread")


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def prefix_mask(real, length):
    """[B, T] bool mask with real[b] real steps at the start of element b."""
    return torch.arange(length)[None, :] < torch.tensor(real)[:, None]


# --- TCN ------------------------------------------------------------------------------------


def block_by_hand(block, x):
    """x + GELU(conv2(GELU(conv1(x)))) with 'same' zero padding and the block's dilation (eval: no dropout)."""
    conv1, conv2 = block.net[0], block.net[3]
    d, k = conv1.dilation[0], conv1.kernel_size[0]
    pad = (k - 1) * d // 2
    h = F.gelu(F.conv1d(x, conv1.weight, conv1.bias, padding=pad, dilation=d))
    h = F.gelu(F.conv1d(h, conv2.weight, conv2.bias, padding=pad, dilation=d))
    return x + h


def test_temporal_block_is_a_residual_pair_of_dilated_same_length_convolutions():
    torch.manual_seed(0)
    block = TemporalBlock(channels=4, kernel_size=3, dilation=2, dropout=0.5).double().eval()
    x = randn(2, 4, 11)
    torch.testing.assert_close(block(x), block_by_hand(block, x))
    # Centred taps two steps apart: a change at step 5 reaches 5 +- 2 after one convolution, 5 +- 2 +- 2
    # after the second, and nothing in between.
    bumped = x.clone()
    bumped[:, :, 5] += 1.0
    changed = (block(bumped) - block(x)).abs().amax(dim=(0, 1)) > 1e-12
    assert changed.nonzero().flatten().tolist() == [1, 3, 5, 7, 9]


def test_temporal_block_sees_zeros_past_the_real_steps():
    torch.manual_seed(1)
    block = TemporalBlock(channels=3, kernel_size=5, dilation=1, dropout=0.0).double().eval()
    x = randn(2, 3, 9)
    mask = prefix_mask([9, 6], 9)
    out = block(x, mask)
    torch.testing.assert_close(out[0], block(x[:1])[0])  # an all-real element: as without a mask
    alone = block_by_hand(block, x[1:2, :, :6])  # element 1 cut to its 6 real steps
    torch.testing.assert_close(out[1, :, :6], alone[0])


def test_temporal_conv_net_projects_normalises_and_doubles_the_dilation_per_level():
    torch.manual_seed(2)
    net = TemporalConvNet(in_dim=5, hidden=4, levels=3, kernel_size=3, dropout=0.3).double().eval()
    assert [b.net[0].dilation[0] for b in net.blocks] == [1, 2, 4]
    assert [b.net[3].dilation[0] for b in net.blocks] == [1, 2, 4]
    x = randn(2, 13, 5, seed=3)
    linear, norm = net.project[0], net.project[1]
    h = F.layer_norm(x @ linear.weight.T + linear.bias, (4,), norm.weight, norm.bias, norm.eps).transpose(1, 2)
    for block in net.blocks:
        h = block_by_hand(block, h)
    torch.testing.assert_close(net(x), h.transpose(1, 2))
    with pytest.raises(ValueError, match="kernel_size must be odd to keep the length, got 4"):
        TemporalConvNet(in_dim=5, hidden=4, levels=1, kernel_size=4, dropout=0.0)


def test_tcn_fusion_concatenates_the_sorted_modalities_into_an_mlp_and_tanh():
    torch.manual_seed(3)
    dims = {"voice": 3, "face": 5}
    model = create_model("tcn_fusion", dims, hidden=4, levels=2, kernel_size=3, dropout=0.2).double().eval()
    assert model.modalities == ["face", "voice"]
    x = {"voice": randn(2, 7, 3, seed=1), "face": randn(2, 7, 5, seed=2)}
    fused = torch.cat([model.encoders["face"](x["face"]), model.encoders["voice"](x["voice"])], dim=-1)
    first, last = model.head[0], model.head[3]
    expected = torch.tanh(F.gelu(fused @ first.weight.T + first.bias) @ last.weight.T + last.bias)
    torch.testing.assert_close(model(x), expected)
    # With padding, each element's real steps get what that element gets alone.
    mask = prefix_mask([7, 4], 7)
    padded = {k: v.clone() for k, v in x.items()}
    for v in padded.values():
        v[1, 4:] = 1e3
    alone = model({k: v[1:2, :4] for k, v in x.items()})
    torch.testing.assert_close(model(padded, mask)[1, :4], alone[0])


# --- SAGE -----------------------------------------------------------------------------------


def test_reliability_fusion_softmaxes_over_the_real_steps_and_scales_by_their_number():
    torch.manual_seed(4)
    rgf = ReliabilityGuidedFusion(dim=3).double()
    z = randn(2, 8, 3, seed=5)
    mask = prefix_mask([8, 5], 8)
    out, alpha = rgf(z, mask)
    logits = z @ rgf.score.weight[0] + rgf.score.bias  # r_t = w^T z_t + b (Eq. 6-7)
    for b, real in enumerate((8, 5)):
        by_hand = torch.exp(logits[b, :real]) / torch.exp(logits[b, :real]).sum()  # Eq. 8-9 over real steps
        torch.testing.assert_close(alpha[b, :real], by_hand)
        assert (alpha[b, real:] == 0).all()
        torch.testing.assert_close(out[b, :real], real * by_hand[:, None] * z[b, :real])  # Eq. 10-11, x T
        assert (out[b, real:] == 0).all()
    # An all-real window: the unmasked path, T the window's length.
    out_all, alpha_all = rgf(z)
    torch.testing.assert_close(out_all[0], out[0])
    torch.testing.assert_close(alpha_all[1], torch.softmax(logits[1], dim=0))
    rgf.scale_by_length = False
    torch.testing.assert_close(rgf(z, mask)[0][1, :5], alpha[1, :5, None] * z[1, :5])


def test_refinement_is_layer_norm_of_the_input_plus_self_attention_over_real_keys():
    torch.manual_seed(5)
    trt = TemporalRefinementTransformer(dim=4, heads=2, layers=2, dropout=0.0).double().eval()
    z = randn(2, 6, 4, seed=6)
    h = z
    for attention, norm in zip(trt.attention, trt.norms):
        attended = attention(h, h, h, need_weights=False)[0]
        h = F.layer_norm(h + attended, (4,), norm.weight, norm.bias, norm.eps)  # Eq. 14
    torch.testing.assert_close(trt(z), h)
    # Padded steps are no key: the real steps' outputs are those of the cut window.
    mask = prefix_mask([6, 3], 6)
    padded = z.clone()
    padded[1, 3:] = 50.0
    torch.testing.assert_close(trt(padded, mask)[1, :3], trt(z[1:2, :3])[0])


def test_sage_composes_encoders_reliability_refinement_and_head():
    torch.manual_seed(6)
    dims = {"face_x": 5, "voice_y": 3}
    params = {"hidden": 4, "levels": 2, "kernel_size": 3, "heads": 2, "layers": 1, "dropout": 0.0}
    model = create_model("sage", dims, **params).double().eval()
    x = {"face_x": randn(2, 9, 5, seed=7), "voice_y": randn(2, 9, 3, seed=8)}
    z = torch.cat([model.encoders["face_x"](x["face_x"]), model.encoders["voice_y"](x["voice_y"])], dim=-1)
    z, alpha = model.fusion(z)
    first, last = model.head[0], model.head[3]
    expected = torch.tanh(F.gelu(model.refinement(z) @ first.weight.T + first.bias) @ last.weight.T + last.bias)
    torch.testing.assert_close(model(x), expected)
    torch.testing.assert_close(model.reliability, alpha)


# --- padding helpers ------------------------------------------------------------------------


def test_real_steps_checks_the_mask_and_is_none_when_nothing_is_padded():
    x = {"a": torch.zeros(2, 5, 3), "b": torch.zeros(2, 5, 1)}
    assert real_steps(None, x) is None
    assert real_steps(torch.ones(2, 5), x) is None
    mask = real_steps(torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]), x)
    assert mask.dtype == torch.bool and mask.tolist() == prefix_mask([5, 2], 5).tolist()
    with pytest.raises(ValueError, match=r"padding_mask of shape \(2, 4\) does not match the inputs' \[B, T\]"):
        real_steps(torch.ones(2, 4), x)
    with pytest.raises(ValueError, match="at least one real step, at its start"):
        real_steps(prefix_mask([5, 0], 5), x)
    with pytest.raises(ValueError, match="padding must be at the end"):
        real_steps(torch.tensor([[True] * 5, [True, False, True, True, True]]), x)
    with pytest.raises(ValueError, match="does not match"):
        real_steps(torch.ones(2, 5), {"a": torch.zeros(2, 5, 3), "b": torch.zeros(2, 4, 1)})


def test_zero_padding_and_lengths():
    x = {"a": randn(2, 4, 3) + 5.0}
    mask = prefix_mask([4, 1], 4)
    out = zero_padding(x, mask)["a"]
    torch.testing.assert_close(out[0], x["a"][0])
    torch.testing.assert_close(out[1, :1], x["a"][1, :1])
    assert (out[1, 1:] == 0).all()
    assert zero_padding(x, None) is x
    assert lengths(mask).tolist() == [4, 1]


@pytest.mark.parametrize("bidirectional", [False, True])
def test_a_packed_gru_stops_each_element_at_its_last_real_step(bidirectional):
    torch.manual_seed(7)
    gru = nn.GRU(3, 4, batch_first=True, bidirectional=bidirectional).double()
    x = randn(2, 6, 3, seed=9)
    mask = prefix_mask([4, 5], 6)  # lengths in rising order, none the full window
    out = run_gru(gru, x, mask)
    assert out.shape == (2, 6, 4 * (1 + bidirectional))
    for b, real in enumerate((4, 5)):
        torch.testing.assert_close(out[b, :real], gru(x[b : b + 1, :real])[0][0])  # backward starts at real - 1
        assert (out[b, real:] == 0).all()
    torch.testing.assert_close(run_gru(gru, x, None), gru(x)[0])


@pytest.mark.parametrize("momentum", [0.1, None])
def test_masked_batch_norm_uses_the_real_steps_statistics_and_updates_the_running_ones(momentum):
    # Channel 0 has a variance of about 1e-4, so that eps = 1e-5 shows in its normalisation.
    x = randn(3, 2, 7, seed=10) * torch.tensor([0.01, 3.0], dtype=torch.float64)[None, :, None] + 2.0
    mask = prefix_mask([7, 3, 5], 7)
    norm = nn.BatchNorm1d(2, momentum=momentum).double().train()
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.5, 0.5]))
        norm.bias.copy_(torch.tensor([0.2, -0.1]))
    reference = nn.BatchNorm1d(2, momentum=momentum).double().train()
    reference.load_state_dict(norm.state_dict())
    real = torch.cat([x[b, :, :n] for b, n in enumerate((7, 3, 5))], dim=1)[None]  # [1, C, 15]: real steps only
    for step in range(2):  # two batches: the second update lands on the first (momentum None: their mean)
        out = masked_batch_norm(norm, x + step, mask)
        expected = reference(real + step)[0]
    start = 0
    for b, n in enumerate((7, 3, 5)):  # masked_batch_norm takes its statistics in float32
        torch.testing.assert_close(out[b, :, :n], expected[:, start : start + n], rtol=1e-4, atol=1e-4)
        start += n
    torch.testing.assert_close(norm.running_mean, reference.running_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(norm.running_var, reference.running_var, rtol=1e-5, atol=1e-6)  # unbiased
    assert int(norm.num_batches_tracked) == int(reference.num_batches_tracked) == 2
    norm.eval()
    torch.testing.assert_close(masked_batch_norm(norm, x, mask), norm(x))  # evaluation: running statistics


def test_sage_takes_its_named_inputs_and_passes_its_options_down():
    dims = {"cam": 5, "mic": 3, "other": 2}
    model = create_model("sage", dims, visual="cam", audio="mic", hidden=4, levels=1, heads=2, dropout=0.3)
    assert model.modalities == ["cam", "mic"] and set(model.encoders) == {"cam", "mic"}
    assert model.fusion.score.in_features == 8  # two modalities of width 4, concatenated
    assert model.fusion.scale_by_length is True  # the default: uniform reliability keeps the features
    assert all(attention.dropout == 0.3 for attention in model.refinement.attention)
    plain = create_model("sage", dims, visual="cam", audio="mic", hidden=4, levels=1, heads=2, scale_by_length=False)
    assert plain.fusion.scale_by_length is False
