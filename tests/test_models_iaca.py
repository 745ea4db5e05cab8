import math

import pytest
import torch
from model_checks import learns_a_function_of

from vapipe.models import create_model
from vapipe.models.iaca import (
    FUSIONS,
    CrossAttention,
    InconsistencyAwareGate,
    JointCrossAttention,
    RecursiveJointCrossAttention,
    TransformerCrossAttention,
)

DIMS = {"face_r3d18": 7, "voice_resnet18_spec": 5}
SMALL = {"hidden": 8, "heads": 2, "attention_dim": 4, "iterations": 2, "head_hidden": 8, "dropout": 0.0}
VARIANTS = [(f, g) for f in ("ca", "jca", "rjca", "tca") for g in (True, False)]


pytestmark = pytest.mark.usefixtures("single_thread")


def inputs(batch, length, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(batch, length, d, generator=g) for k, d in DIMS.items()}


def small_iaca(seed=0, **params):
    torch.manual_seed(seed)
    return create_model("iaca", DIMS, **{**SMALL, **params})


def softmax(values: list[float], temperature: float = 1.0) -> list[float]:
    exps = [math.exp(v / temperature) for v in values]
    return [e / sum(exps) for e in exps]


@pytest.mark.parametrize("fusion,gating", VARIANTS)
@pytest.mark.parametrize("batch,length", [(1, 1), (3, 13)])
def test_every_variant_keeps_length(fusion, gating, batch, length):
    model = small_iaca(fusion=fusion, gating=gating).eval()
    out = model(inputs(batch, length))
    assert out.shape == (batch, length, 2)
    assert set(model.gates) == ({"audio", "visual", "av"} if gating else set())


class NoFusion(torch.nn.Module):
    """Stands in for a fusion: returns its inputs, so only the rest of the model is left."""

    def forward(self, x_a, x_v, padding_mask=None):
        return x_a, x_v


@pytest.mark.parametrize("fusion", ["ca", "jca", "rjca", "tca"])
def test_without_gating_only_the_cross_modal_fusion_relates_time_steps(fusion):
    """The "w/o IACA" baselines rely on cross-modal interaction only (paper 002, Sec. 4-C): with
    their fusion taken out, the model works frame by frame (no self-attention encoder before it)."""
    model = small_iaca(fusion=fusion, gating=False).eval()
    model.fusion = NoFusion()
    x = inputs(1, 9)
    later = {k: v.clone() for k, v in x.items()}
    for v in later.values():
        v[:, 5:] += 3.0  # every step from 5 on, in both modalities
    before, after = model(x), model(later)
    torch.testing.assert_close(before[:, :5], after[:, :5], rtol=0, atol=1e-6)
    assert not torch.allclose(before[:, 5:], after[:, 5:])


def test_with_gating_the_self_attended_features_relate_a_modality_s_own_steps():
    """IACA's stage 1 weighs self-attended features X_m (Sec. 3-C): a gated model without its fusion
    still relates the steps of one modality, so later audio steps change the earlier outputs."""
    model = small_iaca(fusion="ca", gating=True).eval()
    model.fusion = NoFusion()
    x = inputs(1, 9)
    later = {k: v.clone() for k, v in x.items()}
    later["voice_resnet18_spec"][:, 5:] += 3.0
    assert not torch.allclose(model(x)[:, :5], model(later)[:, :5])


@torch.no_grad()
def test_gate_matches_equations_5_to_9_frame_by_frame():
    """Eq. 5-9 written out per frame: stage 1 a softmax over {self-attended, cross-attended} of each
    frame (column 0 weighs X_m, column 1 X_att,m), the joint layer, stage 2 a softmax over the three."""
    dim, temperature = 3, 0.7
    torch.manual_seed(0)
    gate = InconsistencyAwareGate(dim, temperature)
    x_a, x_v, att_a, att_v = (torch.randn(2, 4, dim) for _ in range(4))
    fused, gates = gate(x_a, x_v, att_a, att_v)
    w_a, w_v, w_av = gate.gate_a.weight, gate.gate_v.weight, gate.gate_av.weight
    for b in range(2):
        for t in range(4):
            g_a = softmax([float(att_a[b, t] @ w_a[k]) for k in range(2)], temperature)  # Eq. 5-6
            g_v = softmax([float(att_v[b, t] @ w_v[k]) for k in range(2)], temperature)
            ga = torch.relu(x_a[b, t] * g_a[0] + att_a[b, t] * g_a[1])  # Eq. 8
            gv = torch.relu(x_v[b, t] * g_v[0] + att_v[b, t] * g_v[1])  # Eq. 7
            gav = gate.joint(torch.cat([ga, gv]))  # concatenation + FC
            stack = torch.cat([ga, gv, gav])
            g_av = softmax([float(stack @ w_av[k]) for k in range(3)], temperature)
            want = torch.relu(ga * g_av[0] + gv * g_av[1] + gav * g_av[2])  # Eq. 9
            torch.testing.assert_close(gates["audio"][b, t], torch.tensor(g_a))
            torch.testing.assert_close(gates["visual"][b, t], torch.tensor(g_v))
            torch.testing.assert_close(gates["av"][b, t], torch.tensor(g_av))
            torch.testing.assert_close(fused[b, t], want)


def test_stage_one_gate_becomes_a_choice_as_the_temperature_goes_to_zero():
    x = inputs(2, 9)
    cold = small_iaca(temperature=1e-5).eval()
    cold(x)
    for name in ("audio", "visual"):
        assert (cold.gates[name].max(dim=-1).values > 0.999).all()  # one-hot: self- or cross-attended
    hot = small_iaca(temperature=1e5).eval()
    hot(x)
    torch.testing.assert_close(hot.gates["audio"], torch.full((2, 9, 2), 0.5), atol=1e-3, rtol=0)


def test_gate_forced_to_self_attended_audio_returns_it():
    dim = 4
    gate = InconsistencyAwareGate(dim, temperature=1e-3)
    with torch.no_grad():
        gate.gate_a.weight.copy_(torch.stack([torch.ones(dim), -torch.ones(dim)]))  # positive X_att,a: pick self
        gate.gate_av.weight.zero_()
        gate.gate_av.weight[0, :dim] = 1  # stage 2: pick the audio features
        gate.gate_av.weight[1:, :dim] = -1
    x_a, x_v = torch.rand(2, 5, dim) + 0.1, torch.randn(2, 5, dim)
    att_a, att_v = torch.rand(2, 5, dim) + 0.1, torch.randn(2, 5, dim)
    fused, gates = gate(x_a, x_v, att_a, att_v)
    torch.testing.assert_close(gates["audio"][..., 0], torch.ones(2, 5))
    torch.testing.assert_close(gates["av"][..., 0], torch.ones(2, 5))
    torch.testing.assert_close(fused, x_a)  # Eq. 8 keeps X_a, Eq. 9 keeps X_att,ga


@torch.no_grad()
def test_cross_attention_matches_equations_1_to_4():
    """Eq. 1-4 written out with sums: Z[i, j] = x_a[i] W x_v[j] / sqrt(d); A_a normalises Z over the
    audio steps i (column-wise), X^_a's step j is sum_i A_a[i, j] x_a[i]; A_v normalises over the
    visual steps, X^_v's step i is sum_j softmax_j(Z[i, j]) x_v[j]. Z is not symmetric and the steps
    differ, so a softmax over the wrong axis, or a transposed A, fails."""
    dim, steps = 3, 5
    torch.manual_seed(0)
    ca = CrossAttention(dim)
    x_a, x_v = torch.randn(1, steps, dim), 2 * torch.randn(1, steps, dim)
    att_a, att_v = ca(x_a, x_v)
    w = ca.weight
    z = [[float(x_a[0, i] @ w @ x_v[0, j]) / math.sqrt(dim) for j in range(steps)] for i in range(steps)]
    for j in range(steps):
        weights = softmax([z[i][j] for i in range(steps)])  # a column of Z
        hat_a = sum(weights[i] * x_a[0, i] for i in range(steps))
        torch.testing.assert_close(att_a[0, j], torch.tanh(x_a[0, j] + hat_a))  # Eq. 2-3
    for i in range(steps):
        weights = softmax([z[i][j] for j in range(steps)])  # a column of Z^T
        hat_v = sum(weights[j] * x_v[0, j] for j in range(steps))
        torch.testing.assert_close(att_v[0, i], torch.tanh(x_v[0, i] + hat_v))  # Eq. 2, 4


def test_cross_attention_leaves_padded_steps_out_of_both_softmaxes():
    torch.manual_seed(0)
    ca = CrossAttention(3)
    x_a, x_v = torch.randn(1, 6, 3), torch.randn(1, 6, 3)
    mask = torch.tensor([[True] * 4 + [False] * 2])
    for got, want in zip(ca(x_a, x_v, mask), ca(x_a[:, :4], x_v[:, :4]), strict=True):
        torch.testing.assert_close(got[:, :4], want)


@pytest.mark.parametrize("fusion", ["ca", "jca", "rjca", "tca"])
def test_attended_audio_depends_on_visual(fusion):
    torch.manual_seed(0)
    module = FUSIONS[fusion](4, {"heads": 2, "attention_dim": 3, "iterations": 2, "dropout": 0.0}).eval()
    x_a, x_v = torch.randn(1, 6, 4), torch.randn(1, 6, 4)
    att_a = module(x_a, x_v)[0]
    assert att_a.shape == x_a.shape
    assert not torch.allclose(att_a, module(x_a, x_v + 1.0)[0])


@torch.no_grad()
def test_joint_cross_attention_matches_its_equations():
    """JCA over time steps written out: J = [X_a; X_v], C_a[i, j] = tanh(x_a[i] W_ja J[j] / sqrt(2d)),
    H_a[i] = ReLU(W_a x_a[i] + W_ca sum_j C_a[i, j] J[j] / T), X_att,a[i] = W_ha H_a[i] + x_a[i]."""
    dim, steps = 3, 4
    torch.manual_seed(0)
    jca = JointCrossAttention(dim, 5)
    x_a, x_v = torch.randn(1, steps, dim), torch.randn(1, steps, dim)
    att_a, att_v = jca(x_a, x_v)
    joint = torch.cat([x_a, x_v], dim=-1)[0]
    for x, att, w_joint, w_own, w_corr, w_out in (
        (x_a[0], att_a[0], jca.joint_a, jca.own_a, jca.corr_a, jca.out_a),
        (x_v[0], att_v[0], jca.joint_v, jca.own_v, jca.corr_v, jca.out_v),
    ):
        for i in range(steps):
            corr = [math.tanh(float(x[i] @ w_joint.weight @ joint[j]) / math.sqrt(2 * dim)) for j in range(steps)]
            mean = sum(corr[j] * joint[j] for j in range(steps)) / steps
            hidden = torch.relu(w_own.weight @ x[i] + w_corr.weight @ mean)
            torch.testing.assert_close(att[i], w_out.weight @ hidden + x[i])


def test_recursive_jca_feeds_each_pass_the_previous_output():
    torch.manual_seed(0)
    rjca = RecursiveJointCrossAttention(4, 3, iterations=3)
    assert len(rjca.passes) == 3
    x_a, x_v = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    expected = (x_a, x_v)
    for jca in rjca.passes:
        expected = jca(*expected)
    for got, want in zip(rjca(x_a, x_v), expected, strict=True):
        torch.testing.assert_close(got, want)


def test_transformer_cross_attention_stream_sees_its_own_modality_at_its_own_step_only():
    """TCA is cross-modal only: an audio query attends to the visual steps, so other audio steps
    cannot change it, while the visual steps can."""
    torch.manual_seed(0)
    tca = TransformerCrossAttention(4, heads=2, dropout=0.0).eval()
    x_a, x_v = torch.randn(1, 6, 4), torch.randn(1, 6, 4)
    other_audio, other_visual = x_a.clone(), x_v.clone()
    other_audio[:, 3:] += 2.0
    other_visual[:, 3:] += 2.0
    att_a = tca(x_a, x_v)[0]
    torch.testing.assert_close(tca(other_audio, x_v)[0][:, :3], att_a[:, :3])
    assert not torch.allclose(tca(x_a, other_visual)[0][:, :3], att_a[:, :3])


def test_transformer_cross_attention_knows_the_order_of_the_steps():
    """With no self-attention encoder before it, TCA's attention gets the positions itself: the same
    visual steps in reverse order give the audio queries other outputs."""
    torch.manual_seed(0)
    tca = TransformerCrossAttention(4, heads=2, dropout=0.0).eval()
    x_a, x_v = torch.randn(1, 6, 4), torch.randn(1, 6, 4)
    assert not torch.allclose(tca(x_a, x_v)[0], tca(x_a, x_v.flip(1))[0])


def test_unknown_fusion_is_named():
    with pytest.raises(ValueError, match="unknown fusion 'xa'"):
        create_model("iaca", DIMS, fusion="xa")


def test_same_seed_same_model_and_another_seed_differs():
    x = inputs(2, 9)
    a, b, c = (small_iaca(seed).eval()(x) for seed in (0, 0, 1))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("fusion,gating", VARIANTS)
def test_learns_a_function_of_its_inputs(fusion, gating):
    model = small_iaca(fusion=fusion, gating=gating)
    x = inputs(4, 24, seed=1)
    loss, variance = learns_a_function_of(model, x, "face_r3d18", "voice_resnet18_spec")
    assert loss < 0.6 * variance  # well below the best constant's loss


@pytest.mark.parametrize("fusion,gating", VARIANTS)
def test_padding_reaches_no_real_step_of_any_variant(fusion, gating):
    model = small_iaca(fusion=fusion, gating=gating).eval()
    x = inputs(1, 6)
    padded = {k: torch.cat([v, torch.full((1, 3, v.shape[2]), 1e3)], dim=1) for k, v in x.items()}
    mask = torch.tensor([[True] * 6 + [False] * 3])
    torch.testing.assert_close(model(padded, padding_mask=mask)[:, :6], model(x), rtol=1e-4, atol=1e-5)
