"""Clip-aware extraction (R3D-18), the flipped view, progress lines and the settings fingerprint."""

import logging

import numpy as np
import pytest
import torch
from conftest import mini_dataset_config, write_crops
from PIL import Image

from vapipe.data.manifest import DatasetLayout, build_manifest
from vapipe.features.backbones import create_backbone
from vapipe.features.cache import read_extra, read_store, store_path
from vapipe.features.clips import clip_indices
from vapipe.features.extract import embed_clip_trial, extract_shard, settings_fingerprint
from vapipe.features.progress import Progress
from vapipe.training.data import load_trial


def test_clip_rows_are_centred_clamped_and_take_the_nearest_crop():
    available = np.array([0, 1, 3, 4, 5, 8, 9])  # rows 2, 6 and 7 have no crop
    index = clip_indices(np.array([0, 4, 9]), available, n_rows=10, length=4, stride=2)
    rows = available[index]
    # Row 4 wants rows 0, 2, 4, 6: 2 -> 1 (tie with 3, earlier wins), 6 -> 5.
    assert rows.tolist() == [[0, 0, 0, 1], [0, 1, 4, 5], [5, 8, 9, 9]]


class FrameNumberClips:
    """Stands in for R3D: a clip's embedding is the frame numbers (pixel values) it holds."""

    modality, clip_length, clip_stride = "face_clip", 3, 1
    dim = 3
    device = torch.device("cpu")
    name = "clips"

    def embed_clips(self, clips):
        return clips[:, :, 0, 0, 0].float().numpy()


def test_clip_trial_fills_gaps_with_the_nearest_crop_but_keeps_rows_without_one_invalid(tmp_path):
    write_crops(tmp_path / "t", [1, 2, 4, 5, 6])  # pixel value = frame number; frame 3 missing
    features, valid, flipped = embed_clip_trial(FrameNumberClips(), tmp_path / "t", n_rows=7, batch_size=2)
    assert valid.tolist() == [True, True, False, True, True, True, False]
    assert features[valid].tolist() == [[1, 1, 2], [1, 2, 2], [2, 4, 5], [4, 5, 6], [5, 6, 6]]
    assert (features[~valid] == 0).all() and flipped is None


@pytest.fixture
def manifest(mini_dataset):
    """The mini dataset with lopsided crops (bright left, dark right), so a mirror image differs."""
    for path in mini_dataset.glob("cropped_aligned*/*/*.jpg"):
        ramp = np.linspace(250, int(path.stem) * 5, 112).astype(np.uint8)
        Image.fromarray(np.broadcast_to(ramp[None, :, None], (112, 112, 3)).copy()).save(path)
    return build_manifest(DatasetLayout.from_config(mini_dataset_config(mini_dataset)))[0]


def test_flip_caches_the_mirrored_view_beside_the_features(manifest, tmp_path):
    spec = {
        "kind": "timm",
        "id": "mobilenetv3_small_050",
        "pretrained": False,
        "input": "face",
        "image_size": 32,
        "batch_size": 4,
        "flip": True,
    }
    summary = extract_shard("face", spec, manifest, 0, 1, tmp_path, {})
    assert (summary["status"] == "computed").all()
    row = manifest.set_index("trial").loc["clipA-60-64x48"]
    path = store_path(tmp_path, "face", "clipA-60-64x48")
    store, flipped = read_store(path), read_extra(path, "features_flipped")
    assert store.attrs["flipped"] is True and flipped.shape == store.features.shape
    backbone = create_backbone("face", spec)
    crops = torch.from_numpy(
        np.stack([np.asarray(Image.open(f"{row.crops_dir}/{f:05d}.jpg").convert("RGB")) for f in (1, 2)])
    )
    np.testing.assert_allclose(flipped[:2], backbone.embed(crops.flip(2)), rtol=1e-2, atol=1e-3)
    np.testing.assert_allclose(store.features[:2], backbone.embed(crops), rtol=1e-2, atol=1e-3)
    assert not np.allclose(flipped[:2], store.features[:2], rtol=1e-2, atol=1e-3)
    assert (flipped[~store.valid] == 0).all()
    # The trainer reads the stores as before and never sees the flipped view.
    trial = load_trial(manifest.set_index("trial").loc[["clipA-60-64x48"]].reset_index().iloc[0], ["face"], tmp_path)
    assert trial.inputs["face"].shape == store.features.shape


def test_r3d_shard_writes_one_clip_feature_per_row_with_a_crop(manifest, tmp_path, caplog):
    spec = {
        "kind": "torchvision_video",
        "id": "r3d_18",
        "pretrained": False,
        "input": "face",
        "clip_length": 2,
        "clip_stride": 2,
        "image_size": 16,
        "batch_size": 4,
        "flip": True,
        "progress_seconds": 0,
    }
    with caplog.at_level(logging.INFO, logger="vapipe"):
        extract_shard("face_r3d", spec, manifest, 0, 1, tmp_path, {})
    store = read_store(store_path(tmp_path, "face_r3d", "clipA-60-64x48"))
    assert store.features.shape == (13, 512)
    assert store.valid.tolist() == [f not in (3, 7) and f <= 12 for f in range(1, 14)]
    assert np.abs(store.features[store.valid]).sum(axis=1).min() > 0
    flipped = read_extra(store_path(tmp_path, "face_r3d", "clipA-60-64x48"), "features_flipped")
    assert not np.allclose(flipped[store.valid], store.features[store.valid])
    assert "frames/s" in caplog.text and "face_r3d clipA-60-64x48: " in caplog.text


def test_flip_is_refused_for_audio(manifest, tmp_path):
    spec = {"kind": "logmel", "id": "logmel", "input": "mixture", "flip": True}
    with pytest.raises(ValueError, match="flip applies to face backbones only"):
        extract_shard("voice", spec, manifest, 0, 1, tmp_path, {v: "unused.wav" for v in manifest["video"]})


def test_batch_size_and_workers_do_not_change_the_fingerprint():
    spec = {"kind": "timm", "id": "resnet18", "input": "face", "batch_size": 64}
    assert settings_fingerprint("f", spec) == settings_fingerprint("f", {**spec, "batch_size": 8, "num_workers": 4})
    assert settings_fingerprint("f", spec) != settings_fingerprint("f", {**spec, "flip": True})


def test_progress_logs_a_rate_line(caplog):
    with caplog.at_level(logging.INFO, logger="vapipe"):
        progress = Progress("face trial", 100, "frames", every_seconds=0.0)
        progress.advance(40)
    assert "face trial: 40/100 frames (40%)" in caplog.text and "frames/s" in caplog.text


def test_benchmark_times_every_backbone_over_every_frame(manifest, mini_dataset, tmp_path):
    from vapipe.features.audio import extract_audio
    from vapipe.features.benchmark import benchmark_backbones, merge_configs

    audio = {}
    for video, path in manifest.groupby("video")["video_path"].first().items():
        audio[video] = str(tmp_path / f"{video}.wav")
        extract_audio(path, audio[video])
    backbones = {
        "face": {"kind": "timm", "id": "mobilenetv3_small_050", "input": "face", "image_size": 32},
        "voice": {"kind": "logmel", "id": "logmel", "input": "mixture", "n_mels": 16},
    }
    table = benchmark_backbones(backbones, manifest, audio).set_index("backbone")
    assert (table["frames"] == manifest["n_rows"].sum()).all() and (table["frames_per_s"] > 0).all()
    assert table.loc["voice", "dim"] == 16

    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("backbones: {x: {kind: timm, id: a, batch_size: 4}}\nextraction: {shards: 2}\n")
    second.write_text("backbones: {x: {id: b}}\n")
    assert merge_configs([first, second])["backbones"]["x"] == {"kind": "timm", "id": "b", "batch_size": 4}
