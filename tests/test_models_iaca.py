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


@pytest.mark.parametrize("fusion,gating", VARIANTS)
@pytest.mark.parametrize("batch,length", [(1, 1), (3, 13)])
def test_every_variant_keeps_length_and_range(fusion, gating, batch, length):
    model = small_iaca(fusion=fusion, gating=gating).eval()
    out = model(inputs(batch, length))
    assert out.shape == (batch, length, 2)
    assert out.abs().max() <= 1
    assert set(model.gates) == ({"audio", "visual", "av"} if gating else set())


@pytest.mark.parametrize("fusion", ["ca", "jca", "rjca", "tca"])
def test_gates_sum_to_one(fusion):
    model = small_iaca(fusion=fusion).eval()
    model(inputs(2, 9))
    for name, width in [("audio", 2), ("visual", 2), ("av", 3)]:
        gate = model.gates[name]
        assert gate.shape == (2, 9, width)
        torch.testing.assert_close(gate.sum(dim=-1), torch.ones(2, 9))


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


def test_cross_attention_with_zero_correlation_adds_the_other_steps_mean():
    ca = CrossAttention(4)
    torch.nn.init.zeros_(ca.weight)  # Z = 0: uniform attention weights (Eq. 1)
    x_a, x_v = torch.randn(2, 7, 4), torch.randn(2, 7, 4)
    att_a, att_v = ca(x_a, x_v)
    torch.testing.assert_close(att_a, torch.tanh(x_a + x_a.mean(dim=1, keepdim=True)))  # Eq. 2-3
    torch.testing.assert_close(att_v, torch.tanh(x_v + x_v.mean(dim=1, keepdim=True)))  # Eq. 2, 4


@pytest.mark.parametrize("fusion", ["ca", "jca", "rjca", "tca"])
def test_attended_audio_depends_on_visual(fusion):
    torch.manual_seed(0)
    module = FUSIONS[fusion](4, {"heads": 2, "attention_dim": 3, "iterations": 2, "dropout": 0.0}).eval()
    x_a, x_v = torch.randn(1, 6, 4), torch.randn(1, 6, 4)
    att_a = module(x_a, x_v)[0]
    assert att_a.shape == x_a.shape
    assert not torch.allclose(att_a, module(x_a, x_v + 1.0)[0])


def test_joint_cross_attention_is_a_residual_on_the_input():
    jca = JointCrossAttention(4, 3)
    torch.nn.init.zeros_(jca.out_a.weight)  # W_ha = 0: X_att,a = X_a
    x_a, x_v = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    att_a, att_v = jca(x_a, x_v)
    torch.testing.assert_close(att_a, x_a)
    assert not torch.allclose(att_v, x_v)


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
