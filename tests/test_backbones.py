"""Backbones load through the same path as pretrained weights, offline, from tiny saved models."""

import numpy as np
import pytest
import torch

from vapipe.features.backbones import create_backbone

TINY_WAVLM = {
    "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
    "conv_dim": [16] * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2,
}


def test_timm_backbone_loads_a_local_weights_file(tmp_path):
    import timm

    reference = timm.create_model("resnet18", pretrained=False, num_classes=0).eval()
    weights = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), weights)
    spec = {"kind": "timm", "id": "resnet18", "pretrained": True, "weights": str(weights), "input": "face"}
    backbone = create_backbone("face", spec)
    images = torch.randint(0, 255, (3, 112, 112, 3), dtype=torch.uint8)
    expected = reference(backbone.preprocess(images)).detach().numpy()
    np.testing.assert_allclose(backbone.embed(images), expected, rtol=1e-4, atol=1e-5)
    assert backbone.dim == 512


def test_timm_random_init_is_announced_plainly(caplog):
    with caplog.at_level("INFO"):
        create_backbone("face", {"kind": "timm", "id": "resnet18", "pretrained": False, "input": "face"})
    assert "RANDOM weights" in caplog.text


def test_hf_audio_backbone_loads_a_saved_model_dir(tmp_path):
    from transformers import AutoConfig, AutoModel

    model = AutoModel.from_config(AutoConfig.for_model("wavlm", **TINY_WAVLM)).eval()
    model.save_pretrained(tmp_path / "wavlm")
    spec = {"kind": "hf_audio", "id": "microsoft/wavlm-base-plus", "weights": str(tmp_path / "wavlm"),
            "input": "mixture", "normalize": False}
    backbone = create_backbone("voice", spec)
    wave = np.random.default_rng(0).normal(size=16000).astype(np.float32)
    features, centres = backbone.embed_waveform(wave)
    with torch.inference_mode():
        expected = model(torch.from_numpy(wave)[None], output_hidden_states=True).hidden_states[-1][0]
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-4, atol=1e-4)
    assert backbone.hop == 320 and backbone.receptive_field == 400
    np.testing.assert_allclose(centres[:2], [0.0125, 0.0325])


def test_long_audio_is_chunked_with_absolute_times():
    spec = {"kind": "hf_audio", "id": "x", "architecture": "wavlm", "config": TINY_WAVLM,
            "input": "mixture", "chunk_seconds": 1.0}
    backbone = create_backbone("voice", spec)
    features, centres = backbone.embed_waveform(np.zeros(16000 * 3 + 100, np.float32))
    assert len(features) == len(centres) == 3 * 49
    assert np.all(np.diff(centres) > 0) and centres[49] == pytest.approx(1.0125)


def test_unknown_kind_is_named():
    with pytest.raises(ValueError, match="unknown kind 'nope'"):
        create_backbone("x", {"kind": "nope", "id": "y", "input": "face"})


def test_random_init_is_seeded_so_features_are_reproducible():
    spec = {"kind": "timm", "id": "mobilenetv3_small_100", "pretrained": False, "input": "face"}
    images = torch.randint(0, 255, (2, 112, 112, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    first = create_backbone("a", spec).embed(images)
    torch.manual_seed(123)  # whatever ran before must not matter
    np.testing.assert_array_equal(first, create_backbone("b", spec).embed(images))
    assert not np.array_equal(first, create_backbone("c", {**spec, "seed": 1}).embed(images))
