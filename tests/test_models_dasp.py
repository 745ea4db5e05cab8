"""DASP (paper 004): soft labels, KL, fusion ablations and the auxiliary objective."""

import itertools
import math

import numpy as np
import pytest
import torch

from vapipe.models import MODELS, create_model
from vapipe.models.dasp import (
    DASP,
    CrossModalAttention,
    GatedFusion,
    gaussian_soft_labels,
    region_kl,
    split_modalities,
)
from vapipe.models.tcn import TemporalConvNet
from vapipe.training.losses import ccc_loss
from vapipe.va_regions import region_centres

DIMS = {"face_clip": 12, "voice_ast": 6}


pytestmark = pytest.mark.usefixtures("single_thread")
CENTRES = torch.from_numpy(region_centres())


def prototypes(dim=10, seed=0):
    return np.random.default_rng(seed).normal(size=(9, dim)).astype(np.float32)


def inputs(batch=3, steps=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(batch, steps, d, generator=g) for n, d in DIMS.items()}


# --- soft labels and KL --------------------------------------------------------------------------


def test_soft_labels_sum_to_one_and_peak_at_the_nearest_centre():
    va = torch.rand(500, 2) * 2 - 1
    q = gaussian_soft_labels(va, CENTRES, 0.45)
    assert q.shape == (500, 9)
    torch.testing.assert_close(q.sum(-1), torch.ones(500))
    nearest = torch.cdist(va, CENTRES).argmin(-1)
    assert (q.argmax(-1) == nearest).all()


def test_soft_labels_match_the_gaussian_kernel_by_hand():
    # y = (0, 0): the centre cell at distance 0, four edge cells at 0.66, four corners at 0.66 * sqrt(2)
    s2 = 2 * 0.45**2
    edge, corner = math.exp(-(0.66**2) / s2), math.exp(-2 * 0.66**2 / s2)
    z = 1 + 4 * edge + 4 * corner
    q = gaussian_soft_labels(torch.zeros(1, 2), CENTRES, 0.45)[0]
    expected = torch.tensor([corner, edge, corner, edge, 1.0, edge, corner, edge, corner]) / z
    torch.testing.assert_close(q, expected.float())


def test_kl_is_zero_for_matching_distributions_and_positive_otherwise():
    q = gaussian_soft_labels(torch.rand(7, 2) * 2 - 1, CENTRES)
    assert region_kl(q.log(), q).abs().max() < 1e-6
    uniform = torch.full_like(q, 1 / 9).log()
    kl = region_kl(uniform, q)
    assert (kl > 0).all()
    torch.testing.assert_close(kl, (q * (q / (1 / 9)).log()).sum(-1))


def test_auxiliary_loss_is_weighted_kl_over_valid_frames_only():
    model = DASP(DIMS, hidden=16, prototypes=prototypes())
    labels = torch.rand(2, 5, 2) * 2 - 1
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3:] = False
    labels[1, 3:] = -5.0  # unannotated frames: must not count
    q = gaussian_soft_labels(labels, CENTRES)
    assert model.auxiliary_loss({"region_log_probs": q.log()}, labels, mask).abs() < 1e-6
    uniform = torch.full((2, 5, 9), math.log(1 / 9))
    loss = model.auxiliary_loss({"region_log_probs": uniform}, labels, mask)
    expected = 0.2 * (q[mask] * (q[mask] * 9).log()).sum(-1).mean()
    torch.testing.assert_close(loss, expected)
    nothing = model.auxiliary_loss({"region_log_probs": uniform}, labels, torch.zeros_like(mask))
    assert nothing.item() == 0.0


# --- architecture --------------------------------------------------------------------------------


def test_modalities_default_to_face_visual_and_can_be_named():
    assert split_modalities(DIMS) == ("face_clip", "voice_ast")
    assert split_modalities({"a": 1, "b": 2}, visual="b") == ("b", "a")
    with pytest.raises(ValueError, match="visual"):
        split_modalities({"a": 1, "b": 2})
    with pytest.raises(ValueError, match="not among"):
        split_modalities(DIMS, audio="voice_pdem")


ABLATIONS = list(itertools.product(["gru", "tcn"], ["cross_attention", "gated", "both"]))  # paper Table 2


@pytest.mark.parametrize("temporal,fusion", ABLATIONS)
def test_every_ablation_keeps_length_and_range(temporal, fusion):
    torch.manual_seed(0)
    model = DASP(DIMS, hidden=16, temporal=temporal, fusion=fusion, prototypes=prototypes()).eval()
    va, aux = model(inputs(steps=13))
    assert va.shape == (3, 13, 2)
    assert va.abs().max() <= 1.0
    log_p = aux["region_log_probs"]
    assert log_p.shape == (3, 13, 9)
    torch.testing.assert_close(log_p.exp().sum(-1), torch.ones(3, 13))
    encoder = model.encoders["face_clip"]
    assert isinstance(encoder, TemporalConvNet) == (temporal == "tcn")
    has = {type(m) for m in model.fusion.modules()}
    assert (CrossModalAttention in has) == (fusion != "gated")
    assert (GatedFusion in has) == (fusion != "cross_attention")


def test_gated_fusion_is_a_convex_mix():
    gate = GatedFusion(4)
    x, v = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    out = gate(x, v)
    g = torch.sigmoid(gate.gate(torch.cat([x, v], -1)))
    torch.testing.assert_close(out, g * x + (1 - g) * v)


def test_cross_modal_attention_is_eq3_with_visual_query():
    torch.manual_seed(0)
    block = CrossModalAttention(8, heads=1, dropout=0.0).eval()
    visual, audio = torch.randn(2, 5, 8), torch.randn(2, 7, 8)
    out = block(visual, audio)
    assert out.shape == (2, 5, 8)  # one row per visual (query) step
    w, b = block.attention.in_proj_weight, block.attention.in_proj_bias
    q = visual @ w[:8].T + b[:8]
    k = audio @ w[8:16].T + b[8:16]
    v = audio @ w[16:].T + b[16:]
    attended = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(8), dim=-1) @ v
    expected = block.attention.out_proj(attended)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_without_prototypes_the_soft_prompt_branch_is_off():
    model = DASP(DIMS, hidden=16)
    assert model.soft_prompt is None
    out = model(inputs())
    assert isinstance(out, torch.Tensor) and out.shape == (3, 11, 2)
    assert model.auxiliary_loss({}, torch.zeros(3, 11, 2), torch.ones(3, 11, dtype=torch.bool)).item() == 0.0


def test_prototypes_load_from_npy_and_travel_in_the_state_dict(tmp_path):
    array = prototypes(dim=7)
    np.save(tmp_path / "p.npy", array)
    model = create_model("dasp", DIMS, hidden=16, prototypes=str(tmp_path / "p.npy"))
    assert "dasp" in MODELS
    np.testing.assert_array_equal(model.state_dict()["soft_prompt.prototypes"].numpy(), array)
    with pytest.raises(ValueError, match=r"\[9, D\]"):
        DASP(DIMS, prototypes=np.zeros((8, 7)))
    with pytest.raises(ValueError, match="fusion"):
        DASP(DIMS, fusion="sum")


def test_seeded_construction_is_deterministic():
    outs = []
    for _ in range(2):
        torch.manual_seed(5)
        model = DASP(DIMS, hidden=16, prototypes=prototypes()).eval()
        outs.append(model(inputs())[0])
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


# --- training ------------------------------------------------------------------------------------


def synthetic_problem(batch=6, steps=24, seed=0):
    """Labels are a smoothed function of the visual stream plus a little of the audio."""
    g = torch.Generator().manual_seed(seed)
    x = {n: torch.randn(batch, steps, d, generator=g) for n, d in DIMS.items()}
    kernel = torch.ones(1, 1, 5) / 5
    face, voice = x["face_clip"], x["voice_ast"]
    drive = torch.stack([face[..., :3].sum(-1), face[..., 3:6].sum(-1) + voice[..., 0]], 1)
    smooth = torch.nn.functional.conv1d(drive.reshape(-1, 1, steps), kernel, padding=2).reshape(batch, 2, steps)
    labels = torch.tanh(smooth.transpose(1, 2))
    mask = torch.ones(batch, steps, dtype=torch.bool)
    mask[0, :5] = False
    return x, labels, mask


@pytest.mark.parametrize("temporal,fusion", [("gru", "both"), ("tcn", "gated")])
def test_training_reduces_ccc_plus_kl(temporal, fusion):
    torch.manual_seed(0)
    x, labels, mask = synthetic_problem()
    model = DASP(DIMS, hidden=16, temporal=temporal, fusion=fusion, prototypes=prototypes(8), dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def total():
        va, aux = model(x)
        return ccc_loss(va, labels, mask) + model.auxiliary_loss(aux, labels, mask), aux

    model.eval()
    with torch.no_grad():
        before, _ = total()
        kl_before = model.auxiliary_loss(model(x)[1], labels, mask)
    model.train()
    for _ in range(25):
        loss, _ = total()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        after, aux = total()
        kl_after = model.auxiliary_loss(aux, labels, mask)
    assert after < 0.6 * before
    assert kl_after < kl_before
