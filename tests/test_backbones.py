"""Backbones load through the same path as pretrained weights, offline, from tiny saved models."""

import numpy as np
import pytest
import torch

from vapipe.features.backbones import create_backbone

TINY_WAVLM = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": [16] * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
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
    spec = {
        "kind": "hf_audio",
        "id": "microsoft/wavlm-base-plus",
        "weights": str(tmp_path / "wavlm"),
        "input": "mixture",
        "normalize": False,
    }
    backbone = create_backbone("voice", spec)
    wave = np.random.default_rng(0).normal(size=16000).astype(np.float32)
    features, centres = backbone.embed_waveform(wave)
    with torch.inference_mode():
        expected = model(torch.from_numpy(wave)[None], output_hidden_states=True).hidden_states[-1][0]
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-4, atol=1e-4)
    assert backbone.hop == 320 and backbone.receptive_field == 400
    np.testing.assert_allclose(centres[:2], [0.0125, 0.0325])


def test_long_audio_is_chunked_with_absolute_times():
    spec = {
        "kind": "hf_audio",
        "id": "x",
        "architecture": "wavlm",
        "config": TINY_WAVLM,
        "input": "mixture",
        "chunk_seconds": 1.0,
    }
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


def test_unknown_setting_is_named():
    with pytest.raises(ValueError, match=r"backbones.x.n_mel: unknown key; did you mean 'n_mels'\?"):
        create_backbone("x", {"kind": "logmel", "id": "logmel", "input": "mixture", "n_mel": 64})


# --- timm: ResNet-50 / EfficientNet-B1 / ViT-B/16 follow timm's data config ---------------------

TINY_VIT = {"depth": 1, "embed_dim": 32, "num_heads": 2}


def test_vit_takes_112px_crops_resized_to_its_input_size_with_its_mean_and_std(tmp_path):
    import timm

    reference = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0, **TINY_VIT).eval()
    weights = tmp_path / "vit.pth"
    torch.save(reference.state_dict(), weights)
    spec = {
        "kind": "timm",
        "id": "vit_base_patch16_224",
        "weights": str(weights),
        "model_args": TINY_VIT,
        "input": "face",
    }
    backbone = create_backbone("face_vit", spec)
    assert backbone.image_size == 224 and backbone.interpolation == "bicubic"
    white = torch.full((2, 112, 112, 3), 255, dtype=torch.uint8)
    x = backbone.preprocess(white)
    assert x.shape == (2, 3, 224, 224)
    np.testing.assert_allclose(x.numpy(), 1.0, atol=1e-5)  # (1 - 0.5) / 0.5: ViT's mean and std
    crops = torch.randint(0, 255, (2, 112, 112, 3), dtype=torch.uint8)
    with torch.inference_mode():
        expected = reference(backbone.preprocess(crops)).numpy()
    np.testing.assert_allclose(backbone.embed(crops), expected, rtol=1e-4, atol=1e-5)


def test_vit_rejects_an_input_size_it_cannot_take():
    spec = {"kind": "timm", "id": "vit_base_patch16_224", "model_args": TINY_VIT, "image_size": 112, "input": "face"}
    with pytest.raises(ValueError, match="does not take 112-px input"):
        create_backbone("face_vit", spec)


def test_efficientnet_b1_uses_its_own_data_config():
    import timm

    backbone = create_backbone("face_effnet", {"kind": "timm", "id": "efficientnet_b1", "input": "face"})
    config = timm.data.resolve_model_data_config(backbone.model)
    assert backbone.image_size == config["input_size"][-1] == 240
    np.testing.assert_allclose(backbone.mean.flatten().numpy(), config["mean"])
    assert backbone.dim == 1280


# --- hf_clip_vision ------------------------------------------------------------------------------


def tiny_clip(tmp_path, image_size=32):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    config = CLIPConfig(
        text_config={
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "vocab_size": 100,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "image_size": image_size,
            "patch_size": 16,
        },
        projection_dim=16,
    )
    model = CLIPModel(config).eval()
    square = {"height": image_size, "width": image_size}
    processor = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size=square)
    model.save_pretrained(tmp_path / "clip")
    processor.save_pretrained(tmp_path / "clip")
    return model, processor


def test_clip_image_tower_loads_from_a_saved_whole_clip_checkpoint(tmp_path):
    from PIL import Image

    model, processor = tiny_clip(tmp_path)
    spec = {
        "kind": "hf_clip_vision",
        "id": "openai/clip-vit-base-patch16",
        "weights": str(tmp_path / "clip"),
        "input": "face",
    }
    backbone = create_backbone("face_clip", spec)
    assert backbone.dim == 16  # the checkpoint's projection width, not the vision config's default
    crops = torch.randint(0, 255, (3, 32, 32, 3), dtype=torch.uint8)
    inputs = processor(images=[Image.fromarray(c.numpy()) for c in crops], return_tensors="pt")
    with torch.inference_mode():
        expected = model.get_image_features(pixel_values=inputs["pixel_values"])
    expected = getattr(expected, "pooler_output", expected)
    np.testing.assert_allclose(backbone.embed(crops), expected.numpy(), rtol=1e-4, atol=1e-4)
    pooled = create_backbone("face_clip", {**spec, "output": "pooler_output"})
    assert pooled.dim == 32 and pooled.embed(crops).shape == (3, 32)


def test_clip_resizes_112px_crops_to_the_model_size():
    spec = {
        "kind": "hf_clip_vision",
        "id": "openai/clip-vit-base-patch16",
        "input": "face",
        "config": {
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "image_size": 48,
            "patch_size": 16,
            "projection_dim": 8,
        },
    }
    backbone = create_backbone("face_clip", spec)
    crops = torch.randint(0, 255, (2, 112, 112, 3), dtype=torch.uint8)
    assert backbone.preprocess(crops).shape == (2, 3, 48, 48)
    assert backbone.embed(crops).shape == (2, 8)


# --- onnx ------------------------------------------------------------------------------------------


class TinyFaceNet(torch.nn.Module):
    """Stands in for IResNet-50: NCHW float in, a flat embedding out."""

    def __init__(self, channels_last: bool = False):
        super().__init__()
        self.channels_last = channels_last
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)
        self.head = torch.nn.Linear(8, 6)

    def forward(self, x):
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        return self.head(self.conv(x).mean(dim=(2, 3)))


def export_onnx(model, path, shape, dynamic_batch=True):
    model.eval()
    torch.onnx.export(
        model,
        (torch.zeros(*shape),),
        str(path),
        input_names=["input.1"],
        output_names=["embedding"],
        dynamic_axes={"input.1": {0: "batch"}} if dynamic_batch else None,
        dynamo=False,
    )


def test_onnx_face_model_runs_with_arcface_normalisation(tmp_path):
    pytest.importorskip("onnx")  # torch.onnx.export needs it (test extra)
    net = TinyFaceNet()
    export_onnx(net, tmp_path / "face.onnx", (1, 3, 112, 112))
    spec = {
        "kind": "onnx",
        "id": "iresnet50_arcface",
        "pretrained": True,
        "weights": str(tmp_path / "face.onnx"),
        "input": "face",
    }
    backbone = create_backbone("face_arcface", spec)
    assert backbone.dim == 6 and backbone.fixed_batch is None
    crops = torch.randint(0, 255, (5, 112, 112, 3), dtype=torch.uint8)
    x = (crops.permute(0, 3, 1, 2).float() - 127.5) / 127.5
    with torch.inference_mode():
        expected = net(x).numpy()
    np.testing.assert_allclose(backbone.embed(crops), expected, rtol=1e-4, atol=1e-5)


def test_onnx_layout_channel_order_and_fixed_batch_come_from_the_spec(tmp_path):
    pytest.importorskip("onnx")
    net = TinyFaceNet(channels_last=True)
    export_onnx(net, tmp_path / "nhwc.onnx", (1, 64, 64, 3), dynamic_batch=False)
    spec = {
        "kind": "onnx",
        "id": "x",
        "weights": str(tmp_path / "nhwc.onnx"),
        "input": "face",
        "input_size": 64,
        "layout": "NHWC",
        "channel_order": "BGR",
        "mean": [0.0, 0.0, 0.0],
        "std": 255.0,
    }
    backbone = create_backbone("face_onnx", spec)
    assert backbone.fixed_batch == 1
    crops = torch.randint(0, 255, (3, 112, 112, 3), dtype=torch.uint8)
    from vapipe.features.face_backbones import resize_crops

    x = resize_crops(crops, 64, torch.device("cpu")).permute(0, 2, 3, 1).flip(-1)  # NHWC, BGR, in [0, 1]
    with torch.inference_mode():
        expected = net(x).numpy()
    np.testing.assert_allclose(backbone.embed(crops), expected, rtol=1e-4, atol=1e-5)


def test_onnx_without_a_file_says_so():
    with pytest.raises(ValueError, match="kind onnx needs weights"):
        create_backbone("face_onnx", {"kind": "onnx", "id": "x", "input": "face"})


# --- torchvision_video: R3D-18 ---------------------------------------------------------------------


def test_r3d_loads_a_local_state_dict_and_uses_kinetics_normalisation(tmp_path):
    from torchvision.models.video import r3d_18

    reference = r3d_18(weights=None).eval()
    torch.save(reference.state_dict(), tmp_path / "r3d.pth")
    spec = {
        "kind": "torchvision_video",
        "id": "r3d_18",
        "pretrained": True,
        "weights": str(tmp_path / "r3d.pth"),
        "input": "face",
        "clip_length": 4,
        "image_size": 32,
    }
    backbone = create_backbone("face_r3d", spec)
    assert backbone.dim == 512 and backbone.clip_length == 4
    np.testing.assert_allclose(backbone.mean.flatten().numpy(), [0.43216, 0.394666, 0.37645], rtol=1e-5)
    clips = torch.randint(0, 255, (2, 4, 112, 112, 3), dtype=torch.uint8)
    x = backbone.preprocess(clips)
    assert x.shape == (2, 3, 4, 32, 32)
    reference.fc = torch.nn.Identity()
    with torch.inference_mode():
        expected = reference(x).numpy()
    np.testing.assert_allclose(backbone.embed_clips(clips), expected, rtol=1e-4, atol=1e-4)


# --- hf_audio: PDEM (wav2vec2-large-robust with a custom head) ---------------------------------------


def test_pdem_checkpoint_with_a_custom_head_loads_its_encoder(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2Model, Wav2Vec2PreTrainedModel

    class Wav2Vec2ForSpeechClassification(Wav2Vec2PreTrainedModel):
        """The head class PDEM's config names; transformers does not know it."""

        def __init__(self, config):
            super().__init__(config)
            self.wav2vec2 = Wav2Vec2Model(config)
            self.classifier = torch.nn.Linear(config.hidden_size, 3)
            self.post_init()

    # wav2vec2-large-robust's layout: stable layer norm, layer-normed conv front end.
    config = Wav2Vec2Config(
        **TINY_WAVLM,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
        architectures=["Wav2Vec2ForSpeechClassification"],
    )
    pdem = Wav2Vec2ForSpeechClassification(config).eval()
    pdem.save_pretrained(tmp_path / "pdem")
    spec = {
        "kind": "hf_audio",
        "id": "audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim",
        "weights": str(tmp_path / "pdem"),
        "input": "mixture",
    }
    backbone = create_backbone("voice_pdem", spec)
    assert type(backbone.model).__name__ == "Wav2Vec2Model"
    wave = np.random.default_rng(1).normal(size=8000).astype(np.float32)
    features, centres = backbone.embed_waveform(wave)
    normalised = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
    with torch.inference_mode():
        expected = pdem.wav2vec2(torch.from_numpy(normalised)[None], output_hidden_states=True).hidden_states[-1][0]
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.diff(centres), 0.02)


# --- ast ---------------------------------------------------------------------------------------------

TINY_AST = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_length": 64,
    "num_mel_bins": 32,
    "time_stride": 16,
    "frequency_stride": 16,
}


def test_ast_loads_a_saved_classifier_checkpoint_and_times_windows_by_their_centre(tmp_path):
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    model = ASTForAudioClassification(ASTConfig(**TINY_AST, num_labels=5)).eval()
    extractor = ASTFeatureExtractor(max_length=64, num_mel_bins=32)
    model.save_pretrained(tmp_path / "ast")
    extractor.save_pretrained(tmp_path / "ast")
    spec = {
        "kind": "ast",
        "id": "MIT/ast-finetuned-audioset-10-10-0.4593",
        "weights": str(tmp_path / "ast"),
        "input": "mixture",
        "hop_seconds": 0.5,
    }
    backbone = create_backbone("voice_ast", spec)
    assert backbone.window == 400 + 160 * 63  # exactly max_length fbank frames
    wave = np.random.default_rng(2).normal(scale=0.1, size=32000).astype(np.float32)
    features, centres = backbone.embed_waveform(wave)
    np.testing.assert_allclose(centres, [0.0, 0.5, 1.0, 1.5, 2.0])
    # The window centred at 1.0 s, embedded directly.
    half = backbone.window // 2
    window = wave[16000 - half : 16000 - half + backbone.window]
    inputs = extractor(window, sampling_rate=16000, return_tensors="pt")
    assert inputs["input_values"].shape == (1, 64, 32)
    with torch.inference_mode():
        expected = model.audio_spectrogram_transformer(**inputs).pooler_output[0]
    np.testing.assert_allclose(features[2], expected.numpy(), rtol=1e-4, atol=1e-4)


# --- vggish ------------------------------------------------------------------------------------------


def test_vggish_loads_local_weights_and_matches_torchvggish_examples(tmp_path):
    from torchvggish import torchvggish as tv
    from torchvggish import vggish_input

    reference = tv.VGG(tv.make_layers(), postprocess=False).eval()
    torch.save(reference.state_dict(), tmp_path / "vggish.pth")
    spec = {
        "kind": "vggish",
        "id": "vggish",
        "pretrained": True,
        "weights": str(tmp_path / "vggish.pth"),
        "input": "mixture",
        "hop_seconds": 0.96,
    }
    backbone = create_backbone("voice_vggish", spec)
    wave = (0.1 * np.sin(2 * np.pi * 440 * np.arange(48000) / 16000)).astype(np.float32)
    wave[20000:26000] = 0.0
    # torchvggish's own examples: non-overlapping 96-frame windows from frame 0, centred at
    # 12.5 ms + 10 ms * 47.5 = 0.4875 s, then every 0.96 s.
    examples = vggish_input.waveform_to_examples(wave, 16000).detach()
    centres = 0.4875 + 0.96 * np.arange(len(examples))
    features, true_centres = backbone.embed_at(wave, centres, None)
    np.testing.assert_allclose(true_centres, centres, atol=1e-9)
    with torch.inference_mode():
        expected = reference(examples).numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4)
    assert backbone.dim == 128


# --- logmel, spectrogram_cnn, opensmile --------------------------------------------------------------


def test_logmel_frames_are_centred_at_multiples_of_the_hop():
    backbone = create_backbone("voice_logmel", {"kind": "logmel", "id": "logmel", "input": "mixture"})
    features, centres = backbone.embed_waveform(np.zeros(16000, np.float32))
    assert features.shape == (101, 128)
    np.testing.assert_allclose(centres[:3], [0.0, 0.01, 0.02])
    with pytest.raises(ValueError, match="has no weights"):
        create_backbone("voice_logmel", {"kind": "logmel", "id": "logmel", "input": "mixture", "pretrained": True})


def test_spectrogram_resnet18_loads_local_weights_with_one_input_channel(tmp_path):
    import timm

    reference = timm.create_model("resnet18", pretrained=False, num_classes=0, in_chans=1).eval()
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    spec = {
        "kind": "spectrogram_cnn",
        "id": "resnet18",
        "weights": str(tmp_path / "resnet18.pth"),
        "input": "mixture",
        "n_mels": 32,
        "window_seconds": 0.5,
        "hop_seconds": 0.25,
    }
    backbone = create_backbone("voice_resnet", spec)
    wave = np.random.default_rng(3).normal(scale=0.1, size=16000).astype(np.float32)
    features, centres = backbone.embed_waveform(wave)
    assert features.shape == (5, 512) and backbone.length == 50
    np.testing.assert_allclose(centres, [0.005, 0.255, 0.505, 0.755, 1.005])  # 50 frames: centre between two
    mel, _ = backbone.front_end(wave)
    mel = (mel - mel.mean()) / (mel.std() + 1e-6)
    window = mel[26:76].T  # frames 26..75, centred at 0.505 s
    with torch.inference_mode():
        expected = reference(torch.from_numpy(window)[None, None]).numpy()[0]
    np.testing.assert_allclose(features[2], expected, rtol=1e-4, atol=1e-4)


def test_egemaps_low_level_descriptors_every_10_ms():
    pytest.importorskip("opensmile")
    backbone = create_backbone("voice_egemaps", {"kind": "opensmile", "id": "eGeMAPSv02", "input": "mixture"})
    wave = (0.1 * np.sin(2 * np.pi * 200 * np.arange(16000) / 16000)).astype(np.float32)
    features, centres = backbone.embed_waveform(wave)
    assert backbone.dim == features.shape[1] == 25
    np.testing.assert_allclose(np.diff(centres)[:-1], 0.01, atol=1e-9)  # the last frame is cut short
    assert centres[0] == pytest.approx(0.01) and np.all(np.diff(centres) > 0)  # first frame: 0 .. 20 ms


@pytest.mark.parametrize("config", ["config/config.yaml", "config/affwild2.yaml", "config/backbones_all.yaml"])
def test_every_configured_backbone_uses_only_settings_its_kind_takes(config):
    import yaml
    from conftest import REPO

    from vapipe.features.backbones import backbone_options

    for name, spec in yaml.safe_load((REPO / config).read_text())["backbones"].items():
        backbone_options(name, spec)


def test_a_misspelt_backbone_setting_stops_the_config_check(tmp_path):
    import yaml
    from conftest import REPO

    from vapipe.config import ConfigError, check_config

    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["backbones"]["face_mobilenetv3"]["imagesize"] = 112
    with pytest.raises(
        ConfigError, match=r"backbones.face_mobilenetv3.imagesize: unknown key; did you mean 'image_size'\?"
    ):
        check_config(config, ["config/config.yaml"])
