"""Dresvyanskiy et al. (paper 001): face dynamic transformer and PDEM audio models V1-V3."""

import copy
import math

import pytest
import torch

from vapipe.models import MODELS, create_model
from vapipe.models.dresvyanskiy import (
    DresvyanskiyAudio,
    DresvyanskiyFaceDynamic,
    SinusoidalPositionalEncoding,
    select_feature,
)
from vapipe.models.padding import masked_batch_norm
from vapipe.training.losses import ccc_loss

pytestmark = pytest.mark.usefixtures("single_thread")


def sequence(name, dim, batch=2, steps=9, seed=0):
    return {name: torch.randn(batch, steps, dim, generator=torch.Generator().manual_seed(seed))}


# --- face ----------------------------------------------------------------------------------------


def test_face_model_matches_the_paper_and_keeps_length():
    model = create_model("dresvyanskiy_face", {"face_efficientnet_b1": 40}, embed_dim=32).eval()
    assert "dresvyanskiy_face" in MODELS
    layers = model.temporal.encoder.layers
    assert len(layers) == 3
    assert all(layer.self_attn.num_heads == 8 and layer.dropout.p == 0.1 for layer in layers)
    assert isinstance(model.temporal.position, SinusoidalPositionalEncoding)
    assert model.embed.out_features == 32
    assert [type(m) for m in model.head] == [torch.nn.Linear, torch.nn.Tanh] and model.head[0].out_features == 2
    for steps in (1, 10, 25):
        out = model(sequence("face_efficientnet_b1", 40, steps=steps))
        assert out.shape == (2, steps, 2) and out.abs().max() <= 1.0
    assert DresvyanskiyFaceDynamic({"face_x": 40}).embed.out_features == 256  # the static models' width


def test_single_modality_models_pick_their_input():
    dims = {"face_efficientnet_b1": 16, "voice_pdem": 32}
    assert DresvyanskiyFaceDynamic(dims, embed_dim=16).feature == "face_efficientnet_b1"
    assert DresvyanskiyAudio(dims).feature == "voice_pdem"
    assert select_feature(dims, "voice_pdem") == "voice_pdem"
    assert select_feature({"only": 3}, None) == "only"
    with pytest.raises(ValueError, match="features"):
        select_feature({"a": 1, "b": 2}, None)
    with pytest.raises(ValueError, match="not among"):
        select_feature(dims, "voice_ast")


def test_positional_encoding_is_vaswanis_sinusoid():
    pe = SinusoidalPositionalEncoding(6, dropout=0.0)
    out = pe(torch.zeros(1, 4, 6))[0]
    t = 3  # dims 2 (sin) and 3 (cos) share the frequency 1 / 10000^(2/6)
    assert out[t, 2].item() == pytest.approx(math.sin(t / 10000 ** (2 / 6)), abs=1e-6)
    assert out[t, 3].item() == pytest.approx(math.cos(t / 10000 ** (2 / 6)), abs=1e-6)
    assert out[0, 0].item() == 0.0 and out[0, 1].item() == 1.0


# --- audio ---------------------------------------------------------------------------------------


def test_audio_variants_differ_as_the_paper_says():
    dims = {"voice_pdem": 64}
    v1, v2, v3 = (DresvyanskiyAudio(dims, variant=v) for v in ("v1", "v2", "v3"))
    gru = v1.temporal.gru
    assert gru.num_layers == 2 and gru.hidden_size == 256 and not gru.bidirectional
    assert [layer.self_attn.num_heads for layer in v2.temporal[1].encoder.layers] == [32, 32]
    assert [layer.self_attn.num_heads for layer in v3.temporal[1].encoder.layers] == [16, 16]
    assert v2.temporal[0].out_features == 256  # projected first: D + 1 (validity) divides by no head count
    for model, width in ((v1, 256), (v2, 256), (v3, 256)):
        conv = model.aggregate.net[0]
        assert conv.in_channels == width and conv.kernel_size == (5,) and conv.dilation == (2,)
        dense = [m for m in model.head if isinstance(m, torch.nn.Linear)]
        assert len(dense) == 2 and dense[0].in_features == width and dense[-1].out_features == 2
        assert isinstance(model.head[-1], torch.nn.Tanh)
    assert DresvyanskiyAudio(dims, variant="v2", heads=4).temporal[1].encoder.layers[0].self_attn.num_heads == 4
    with pytest.raises(ValueError, match="variant"):
        DresvyanskiyAudio(dims, variant="v4")
    with pytest.raises(ValueError, match="divisible"):
        DresvyanskiyAudio({"voice_pdem": 40}, variant="v2", embed_dim=None)


@pytest.mark.parametrize("variant", ["v1", "v2", "v3"])
def test_audio_models_keep_length_and_range(variant):
    model = create_model("dresvyanskiy_audio", {"voice_pdem": 32}, variant=variant, gru_hidden=16).eval()
    for steps in (1, 7, 30):
        out = model(sequence("voice_pdem", 32, steps=steps))
        assert out.shape == (2, steps, 2) and out.abs().max() <= 1.0


@pytest.mark.parametrize(
    "name,params",
    [
        ("dresvyanskiy_face", {"embed_dim": 16}),
        ("dresvyanskiy_audio", {"variant": "v3"}),
        ("dresvyanskiy_audio", {"variant": "v1", "gru_hidden": 16}),
    ],
)
def test_seeded_models_are_deterministic(name, params):
    x = sequence("feat", 32)
    outs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        outs.append(create_model(name, {"feat": 32}, **params).eval()(x))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    assert not torch.allclose(outs[0], outs[2])


def synthetic(batch=6, steps=20, dim=16, seed=0):
    """Targets: a smoothed projection of the input sequence."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, dim, generator=g)
    drive = torch.stack([x[..., :4].sum(-1), x[..., 4:8].sum(-1)], 1).reshape(-1, 1, steps)
    smooth = torch.nn.functional.conv1d(drive, torch.ones(1, 1, 3) / 3, padding=1).reshape(batch, 2, steps)
    return {"feat": x}, torch.tanh(smooth.transpose(1, 2) / 2), torch.ones(batch, steps, dtype=torch.bool)


@pytest.mark.parametrize(
    "name,params",
    [
        ("dresvyanskiy_face", {"embed_dim": 16}),
        ("dresvyanskiy_audio", {"variant": "v1", "gru_hidden": 16}),
        ("dresvyanskiy_audio", {"variant": "v3"}),
    ],
)
def test_a_few_steps_reduce_the_ccc_loss(name, params):
    torch.manual_seed(0)
    x, labels, mask = synthetic()
    model = create_model(name, {"feat": 16}, dropout=0.0, **params)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.eval()
    with torch.no_grad():
        before = ccc_loss(model(x), labels, mask)
    model.train()
    for _ in range(30):
        loss = ccc_loss(model(x), labels, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        after = ccc_loss(model(x), labels, mask)
    assert after < 0.7 * before


# --- padding -------------------------------------------------------------------------------------


def test_training_batch_norm_takes_its_statistics_over_the_real_steps_only():
    """As if the batch's real steps were one unpadded sequence: same outputs, same running statistics."""
    torch.manual_seed(0)
    norm = torch.nn.BatchNorm1d(3)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    reference = copy.deepcopy(norm)
    x = torch.randn(2, 3, 10)
    x[1, :, 6:] = 1e3 * torch.randn(3, 4)  # padding
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    out = masked_batch_norm(norm, x, mask)
    want = reference(torch.cat([x[0], x[1, :, :6]], dim=1)[None])[0]  # [3, 16]: the real steps alone
    torch.testing.assert_close(out[0], want[:, :10])
    torch.testing.assert_close(out[1, :, :6], want[:, 10:])
    torch.testing.assert_close(norm.running_mean, reference.running_mean)
    torch.testing.assert_close(norm.running_var, reference.running_var)
    assert norm.num_batches_tracked == reference.num_batches_tracked == 1
    norm.eval()  # evaluation: the running statistics, step by step
    torch.testing.assert_close(masked_batch_norm(norm, x, mask), norm(x))


@pytest.mark.parametrize("variant", ["v1", "v3"])
def test_audio_model_batch_norm_learns_nothing_from_padding(variant):
    """A padded training batch updates the running mean from the real steps' convolution outputs only."""
    torch.manual_seed(0)
    model = DresvyanskiyAudio({"voice": 6}, variant=variant, gru_hidden=8, embed_dim=8, heads=2, head_hidden=4)
    model.train()
    conv, norm = model.aggregate.net[0], model.aggregate.net[1]
    seen = []
    conv.register_forward_hook(lambda module, args, output: seen.append(output.detach()))
    x = sequence("voice", 6, batch=2, steps=12)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 7:] = False
    model(x, padding_mask=mask)
    h = seen[0]  # [B, C, T]
    real_mean = torch.cat([h[0], h[1, :, :7]], dim=1).mean(dim=1)
    torch.testing.assert_close(norm.running_mean, norm.momentum * real_mean)
