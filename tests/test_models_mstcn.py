import pytest
import torch
from model_checks import learns_a_function_of

from vapipe.models import create_model
from vapipe.models.mstcn import CrossModalAttention, MultiScaleTCN

DIMS = {"face_iresnet50": 7, "voice_vggish": 5, "voice_logmel": 6}
SMALL = {"hidden": 4, "levels": 2, "head_hidden": 8, "dropout": 0.0}


pytestmark = pytest.mark.usefixtures("single_thread")


def inputs(batch, length, seed=0, dims=DIMS):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(batch, length, d, generator=g) for k, d in dims.items()}


def small_mstcn(seed=0, dims=DIMS, **params):
    torch.manual_seed(seed)
    return create_model("mstcn_cma", dims, **{**SMALL, **params})


@pytest.mark.parametrize("length", [1, 2, 13])
def test_every_branch_keeps_the_length(length):
    encoder = MultiScaleTCN(7, 4, levels=3, kernel_sizes=(3, 5, 7), dropout=0.0)
    assert [b.blocks[0].net[0].kernel_size[0] for b in encoder.branches] == [3, 5, 7]
    x = torch.randn(2, length, 7)
    for branch in encoder.branches:
        assert branch(x).shape == (2, length, 4)
    assert encoder(x).shape == (2, length, 12)


@pytest.mark.parametrize("audio", [["voice_vggish"], ["voice_vggish", "voice_logmel"]])
def test_fused_width_is_one_plus_n_audio_streams(audio):
    dims = {k: DIMS[k] for k in ["face_iresnet50", *audio]}
    model = small_mstcn(dims=dims).eval()
    assert model.stream_dim == 3 * 4
    assert model.fused_dim == (1 + len(audio)) * 3 * 4
    assert model.fuse(inputs(2, 9, dims=dims)).shape == (2, 9, model.fused_dim)


def test_cross_modal_attention_queries_with_visual_and_averages_audio():
    attention = CrossModalAttention()
    visual, audio = torch.randn(2, 5, 6), torch.randn(2, 8, 6)
    out = attention(visual, audio)
    weights = attention.weights
    assert weights.shape == (2, 5, 8)  # one distribution over audio steps per visual step
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(2, 5))
    torch.testing.assert_close(out, weights @ audio)  # Eq. 8
    shuffled = torch.randperm(8)
    torch.testing.assert_close(attention(visual, audio[:, shuffled]), out)  # audio order: keys and values only
    order = torch.randperm(5)
    torch.testing.assert_close(attention(visual[:, order], audio), out[:, order])  # one row per visual query


def test_model_attends_from_visual_to_each_audio_stream():
    model = small_mstcn().eval()
    x = inputs(2, 11)
    out = model(x)
    for name in ["voice_vggish", "voice_logmel"]:
        weights = model.attention[name].weights
        assert weights.shape == (2, 11, 11)
        torch.testing.assert_close(weights.sum(dim=-1), torch.ones(2, 11))
        changed = {**x, name: x[name] + 1.0}
        assert not torch.allclose(model(changed), out)


def test_audio_only_inputs_are_refused():
    with pytest.raises(ValueError, match="visual"):
        create_model("mstcn_cma", {"voice_vggish": 5, "voice_logmel": 6})


@pytest.mark.parametrize("batch,length", [(1, 1), (1, 2), (3, 13)])
def test_keeps_length_and_range(batch, length):
    out = small_mstcn().eval()(inputs(batch, length))
    assert out.shape == (batch, length, 2)
    assert out.abs().max() <= 1


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
