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
    expected = 2 * 0.2 * (q[mask] * (q[mask] * 9).log()).sum(-1).mean()  # x 2: the trainer's CCC scale
    torch.testing.assert_close(loss, expected)
    nothing = model.auxiliary_loss({"region_log_probs": uniform}, labels, torch.zeros_like(mask))
    assert nothing.item() == 0.0


def ccc_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's CCC with population moments."""
    mx, my = x.mean(), y.mean()
    return 2 * ((x - mx) * (y - my)).mean() / (x.var() + y.var() + (mx - my) ** 2)


def test_trainer_loss_is_eq6_with_the_mean_ccc_loss_and_lambda_02():
    # Eq. 6: L = L_CCC + 0.2 KL with L_CCC = 1 - (CCC_v + CCC_a) / 2; the trainer's CCC term is the sum
    # over the two targets, so the trainer's loss must be 2 L exactly (the KL weighed against the mean).
    torch.manual_seed(0)
    model = DASP(DIMS, hidden=16, prototypes=prototypes()).eval()
    labels = torch.rand(2, 6, 2) * 1.6 - 0.8
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[0, :2] = False
    with torch.no_grad():
        va, aux = model(inputs(batch=2, steps=6))
        trainer_loss = ccc_loss(va, labels, mask) + model.auxiliary_loss(aux, labels, mask)
    m = mask.numpy()
    pred, true = va.numpy()[m].astype(np.float64), labels.numpy()[m].astype(np.float64)
    ccc_mean = (ccc_by_hand(pred[:, 0], true[:, 0]) + ccc_by_hand(pred[:, 1], true[:, 1])) / 2
    q = gaussian_soft_labels(labels[mask], CENTRES).double().numpy()
    kl = (q * (np.log(q) - aux["region_log_probs"][mask].double().numpy())).sum(-1).mean()
    paper_loss = (1 - ccc_mean) + 0.2 * kl
    assert trainer_loss.item() == pytest.approx(2 * paper_loss, rel=1e-5)


def test_table3_standard_grid_moves_the_centres_to_the_extremes():
    model = DASP(DIMS, hidden=16, prototypes=prototypes(), grid=(-1.0, 0.0, 1.0), sigma=0.6)
    corners = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 0), (0, 1), (1, -1), (1, 0), (1, 1)]
    torch.testing.assert_close(model.centres, torch.tensor(corners, dtype=torch.float32))
    # y = (1, 1) sits on the 'excited' centre: q_k = exp(-d_k^2 / 0.72) / Z, d^2 in {0, 1, 2, 4, 5, 8}
    labels = torch.ones(1, 1, 2)
    d2 = torch.tensor([8.0, 5, 4, 5, 2, 1, 4, 1, 0])
    q = torch.exp(-d2 / (2 * 0.6**2))
    q = q / q.sum()
    uniform = torch.full((1, 1, 9), math.log(1 / 9))
    loss = model.auxiliary_loss({"region_log_probs": uniform}, labels, torch.ones(1, 1, dtype=torch.bool))
    torch.testing.assert_close(loss, 2 * 0.2 * (q * (q * 9).log()).sum())
    default = DASP(DIMS, hidden=16)
    torch.testing.assert_close(default.centres, CENTRES)  # the paper's localised grid, +-0.66
    with pytest.raises(ValueError, match="grid"):
        DASP(DIMS, grid=(0.0, -1.0, 1.0))


# --- architecture --------------------------------------------------------------------------------


def test_modalities_default_to_face_visual_and_can_be_named():
    assert split_modalities(DIMS) == ("face_clip", "voice_ast")
    assert split_modalities({"a": 1, "b": 2}, visual="b") == ("b", "a")
    with pytest.raises(ValueError, match="visual"):
        split_modalities({"a": 1, "b": 2})
    with pytest.raises(ValueError, match="not among"):
        split_modalities(DIMS, audio="voice_pdem")


ABLATIONS = list(itertools.product(["gru", "tcn"], ["cross_attention", "gated", "both"]))  # paper Table 2


def test_gru_and_fusion_modules_are_256_wide_by_default():
    # Sec. 4.1: "The hidden dimension for the GRU and fusion modules is set to 256."
    model = DASP({"face_clip": 512, "voice_ast": 768})
    for encoder in model.encoders.values():
        assert encoder.project[0].out_features == 256  # the common 256-d space (sec. 3.2)
        assert (encoder.gru.input_size, encoder.gru.hidden_size, encoder.gru.bidirectional) == (256, 256, True)
        assert (encoder.to_fusion.in_features, encoder.to_fusion.out_features) == (512, 256)
    assert model.fusion.attend.attention.embed_dim == 256
    assert (model.fusion.gate.gate.in_features, model.fusion.gate.gate.out_features) == (512, 256)
    assert model.head[0].in_features == 256


def linear(layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return x @ layer.weight.T + layer.bias


def gru_by_hand(gru: torch.nn.GRU, x: torch.Tensor) -> torch.Tensor:
    """One-layer bidirectional GRU, PyTorch's gate equations written out: [B, T, D] -> [B, T, 2H]."""
    hidden = gru.hidden_size

    def direction(suffix: str, steps) -> torch.Tensor:
        w_ih, w_hh = getattr(gru, f"weight_ih_l0{suffix}"), getattr(gru, f"weight_hh_l0{suffix}")
        b_ih, b_hh = getattr(gru, f"bias_ih_l0{suffix}"), getattr(gru, f"bias_hh_l0{suffix}")
        h = x.new_zeros(x.shape[0], hidden)
        out = [None] * x.shape[1]
        for t in steps:
            gi, gh = x[:, t] @ w_ih.T + b_ih, h @ w_hh.T + b_hh
            r = torch.sigmoid(gi[:, :hidden] + gh[:, :hidden])
            z = torch.sigmoid(gi[:, hidden : 2 * hidden] + gh[:, hidden : 2 * hidden])
            n = torch.tanh(gi[:, 2 * hidden :] + r * gh[:, 2 * hidden :])
            h = (1 - z) * n + z * h
            out[t] = h
        return torch.stack(out, dim=1)

    steps = range(x.shape[1])
    return torch.cat([direction("", steps), direction("_reverse", reversed(steps))], dim=-1)


def attention_by_hand(block: CrossModalAttention, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """Eq. 3 with one head: softmax(Q K^T / sqrt(d)) V, Q from the visual, K and V from the audio."""
    mha, d = block.attention, query.shape[-1]
    w, b = mha.in_proj_weight, mha.in_proj_bias
    q, k, v = query @ w[:d].T + b[:d], context @ w[d : 2 * d].T + b[d : 2 * d], context @ w[2 * d :].T + b[2 * d :]
    return linear(mha.out_proj, torch.softmax(q @ k.transpose(1, 2) / math.sqrt(d), dim=-1) @ v)


def gate_by_hand(gate: GatedFusion, x: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
    """Eqs. 4-5: g = sigmoid(W_g [x; h_v] + b_g), F = g x + (1 - g) h_v."""
    g = torch.sigmoid(linear(gate.gate, torch.cat([x, visual], dim=-1)))
    return g * x + (1 - g) * visual


@pytest.mark.parametrize("temporal,fusion", ABLATIONS)
def test_forward_follows_the_equations_by_hand(temporal, fusion):
    torch.manual_seed(0)
    model = DASP(DIMS, hidden=8, temporal=temporal, fusion=fusion, prototypes=prototypes(), dropout=0.0).eval()
    x = inputs(batch=2, steps=7)
    with torch.no_grad():
        va, aux = model(x)
        streams = {}
        for name, encoder in model.encoders.items():
            if temporal == "gru":  # Eq. 1: projection, BiGRU, map to the fusion width
                streams[name] = linear(encoder.to_fusion, gru_by_hand(encoder.gru, linear(encoder.project[0], x[name])))
            else:
                assert isinstance(encoder, TemporalConvNet)
                streams[name] = encoder(x[name])
        visual, audio = streams["face_clip"], streams["voice_ast"]
        if fusion == "both":  # Sec. 3.4: attention (Eq. 3), then the gate against the visual context
            fused = gate_by_hand(model.fusion.gate, attention_by_hand(model.fusion.attend, visual, audio), visual)
        elif fusion == "cross_attention":
            fused = visual + attention_by_hand(model.fusion.attend, visual, audio)
        else:
            fused = gate_by_hand(model.fusion.gate, audio, visual)
        head = model.head
        expected_va = torch.tanh(linear(head[3], torch.nn.functional.gelu(linear(head[0], fused))))
        z = torch.nn.functional.normalize(linear(model.soft_prompt.project, fused), dim=-1)
        t = torch.nn.functional.normalize(torch.from_numpy(prototypes()), dim=-1)
        expected_log_p = torch.log_softmax(z @ t.T / 0.07, dim=-1)
    torch.testing.assert_close(va, expected_va, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(aux["region_log_probs"], expected_log_p, rtol=1e-4, atol=1e-5)
    has = {type(m) for m in model.fusion.modules()}
    assert (CrossModalAttention in has) == (fusion != "gated")
    assert (GatedFusion in has) == (fusion != "cross_attention")


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
