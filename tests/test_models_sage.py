import pytest
import torch
from model_checks import learns_a_function_of

from vapipe.models import create_model
from vapipe.models.sage import ReliabilityGuidedFusion, split_modalities

DIMS = {"face_resnet50": 7, "voice_wavlm": 5}
SMALL = {"hidden": 8, "levels": 2, "kernel_size": 3, "heads": 2, "layers": 1, "dropout": 0.0}


pytestmark = pytest.mark.usefixtures("single_thread")


def inputs(batch, length, seed=0, dims=DIMS):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(batch, length, d, generator=g) for k, d in dims.items()}


def small_sage(seed=0, **params):
    torch.manual_seed(seed)
    return create_model("sage", DIMS, **{**SMALL, **params})


def test_split_modalities_defaults_to_face_keys_as_visual():
    assert split_modalities({"voice_b": 1, "face_x": 2, "voice_a": 3}) == ("face_x", ["voice_a", "voice_b"])
    assert split_modalities({"cam": 1, "mic": 2, "face": 3}, visual="cam", audio="mic") == ("cam", ["mic"])
    with pytest.raises(ValueError, match="name it with `visual`"):
        split_modalities({"face_a": 1, "face_b": 2, "voice": 3})
    with pytest.raises(ValueError, match="not among"):
        split_modalities({"face": 1, "voice": 2}, audio=["vocals"])
    with pytest.raises(ValueError, match="at least one"):
        split_modalities({"face": 1})


def test_reliability_weights_sum_to_one_and_rescale_each_frame():
    torch.manual_seed(0)
    rgf = ReliabilityGuidedFusion(6)
    z = torch.randn(2, 9, 6)
    out, alpha = rgf(z)
    assert alpha.shape == (2, 9)
    torch.testing.assert_close(alpha.sum(dim=1), torch.ones(2))
    torch.testing.assert_close(out, z * 9 * alpha[..., None])  # Eq. 10, times T
    rgf.scale_by_length = False
    torch.testing.assert_close(rgf(z)[0], z * alpha[..., None])  # Eq. 10 as printed


def test_uniform_reliability_leaves_features_unchanged():
    rgf = ReliabilityGuidedFusion(6)
    torch.nn.init.zeros_(rgf.score.weight)
    torch.nn.init.zeros_(rgf.score.bias)
    z = torch.randn(3, 11, 6)
    out, alpha = rgf(z)
    torch.testing.assert_close(alpha, torch.full((3, 11), 1 / 11))
    torch.testing.assert_close(out, z)


def test_a_more_reliable_step_takes_weight_from_every_other_step():
    torch.manual_seed(0)
    rgf = ReliabilityGuidedFusion(6)
    z = torch.randn(1, 9, 6)
    louder = z.clone()
    louder[0, 4] += 3 * rgf.score.weight[0].detach()  # raises step 4's reliability logit only
    (out, alpha), (out2, alpha2) = rgf(z), rgf(louder)
    assert alpha2[0, 4] > alpha[0, 4]
    others = [t for t in range(9) if t != 4]
    assert (alpha2[0, others] < alpha[0, others]).all()
    assert not torch.allclose(out2[0, others], out[0, others])  # untouched frames are rescaled


def test_model_exposes_reliability_and_one_step_changes_the_output():
    model = small_sage().eval()
    x = inputs(2, 15)
    out = model(x)
    alpha = model.reliability
    assert alpha.shape == (2, 15)
    torch.testing.assert_close(alpha.sum(dim=1), torch.ones(2))
    changed = {k: v.clone() for k, v in x.items()}
    changed["face_resnet50"][:, 7] += 2.0
    out2 = model(changed)
    assert not torch.allclose(out, out2)
    assert (model.reliability - alpha).abs().min() > 0  # softmax over time couples every step


@pytest.mark.parametrize("batch,length", [(1, 1), (1, 2), (3, 13)])
def test_keeps_length_and_range(batch, length):
    out = small_sage().eval()(inputs(batch, length))
    assert out.shape == (batch, length, 2)
    assert out.abs().max() <= 1


def test_modalities_are_visual_first_whatever_the_order():
    model = create_model("sage", {"voice_wavlm": 5, "face_resnet50": 7}, **SMALL)
    assert model.modalities == ["face_resnet50", "voice_wavlm"]


def test_same_seed_same_model_and_another_seed_differs():
    x = inputs(2, 9)
    a, b, c = (small_sage(seed).eval()(x) for seed in (0, 0, 1))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


def test_learns_a_function_of_its_inputs():
    model = small_sage()
    x = inputs(4, 24, seed=1)
    loss, variance = learns_a_function_of(model, x, "face_resnet50", "voice_wavlm")
    assert loss < 0.6 * variance  # well below the best constant's loss


def test_reliability_is_a_distribution_over_the_real_steps_only():
    """Eq. 8-9 on a padded window: alpha sums to one over its real steps, is zero on the padded ones,
    and z~ = T alpha z with T the real length, as for the window alone."""
    torch.manual_seed(0)
    rgf = ReliabilityGuidedFusion(6)
    z = torch.randn(2, 9, 6)
    z[1, 5:] = 1e3 * torch.randn(4, 6)  # large values on element 1's padded steps
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 5:] = False
    out, alpha = rgf(z, padding_mask=mask)
    torch.testing.assert_close(alpha.sum(dim=1), torch.ones(2))
    assert (alpha[1, 5:] == 0).all() and (alpha[1, :5] > 0).all()
    assert (out[1, 5:] == 0).all()
    alone_out, alone_alpha = rgf(z[1:, :5])
    torch.testing.assert_close(alpha[1, :5], alone_alpha[0])
    torch.testing.assert_close(out[1, :5], alone_out[0])  # scaled by 5 real steps, not 9
    torch.testing.assert_close(out[0], rgf(z[:1])[0][0])
    torch.nn.init.zeros_(rgf.score.weight)
    torch.nn.init.zeros_(rgf.score.bias)
    out, alpha = rgf(z, padding_mask=mask)
    torch.testing.assert_close(alpha[1, :5], torch.full((5,), 1 / 5))  # uniform over the real steps
    torch.testing.assert_close(out[1, :5], z[1, :5])  # uniform reliability leaves real features unchanged


def test_model_reliability_ignores_padded_steps():
    model = small_sage().eval()
    x = inputs(2, 15)
    x["face_resnet50"][1, 10:] = 1e3
    x["voice_wavlm"][1, 10:] = -1e3
    mask = torch.ones(2, 15, dtype=torch.bool)
    mask[1, 10:] = False
    out = model(x, padding_mask=mask)
    alpha = model.reliability
    torch.testing.assert_close(alpha.sum(dim=1), torch.ones(2))
    assert (alpha[1, 10:] == 0).all()
    alone = model({k: v[1:, :10] for k, v in x.items()})
    torch.testing.assert_close(alpha[1, :10], model.reliability[0])
    torch.testing.assert_close(out[1, :10], alone[0], rtol=0, atol=1e-5)
