"""Voice-activity and mouth-open masks: on a small generated demo against its ground truth, and by hand."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vapipe.data.affwild2 import DatasetError
from vapipe.data.demo import DemoSpec, generate_demo_dataset
from vapipe.data.manifest import DatasetLayout, build_manifest
from vapipe.features.audio import extract_audio
from vapipe.features.cache import is_complete, write_store
from vapipe.features.masks import (
    MouthSpec,
    VadSpec,
    detect_mouth_open_shard,
    detect_voice_activity_shard,
    frame_coverage,
    mask_binary,
    mask_path,
    mouth_opening,
    otsu_threshold,
    read_mask,
    speech_frames,
    write_mask,
)


@pytest.fixture(scope="module")
def demo_masks(tmp_path_factory):
    """A 3-video demo (one video holds two people), its manifest, and both masks of every trial."""
    tmp = tmp_path_factory.mktemp("masks_demo")
    root = tmp / "demo"
    generate_demo_dataset(
        root, DemoSpec(seed=1, n_videos=3, min_frames=60, max_frames=90, n_test_videos=1, n_validation_videos=1)
    )
    layout = DatasetLayout(
        root=root,
        annotations=root / "annotations/VA_Estimation_Challenge",
        crops=(root / "cropped_aligned", root / "cropped_aligned_new_50_vids"),
        videos=root / "videos",
        test_list=root / "names_of_videos_in_each_test_set/Valence_Arousal_Estimation_Challenge_test_set_release.txt",
        example_submission=root / "CVPR_6th_ABAW_VA_test_set_example.txt",
    )
    manifest, _ = build_manifest(layout)
    audio = {}
    for video, path in manifest.groupby("video")["video_path"].first().items():
        audio[video] = str(tmp / "audio" / f"{video}.wav")
        Path(audio[video]).parent.mkdir(exist_ok=True)
        extract_audio(path, audio[video])
    masks = tmp / "masks"
    vad = detect_voice_activity_shard(manifest, 0, 1, audio, masks, VadSpec())
    mouth = detect_mouth_open_shard(manifest, 0, 1, masks, MouthSpec())
    return {"root": root, "manifest": manifest, "audio": audio, "masks": masks, "summaries": (vad, mouth)}


def truth(demo_masks, trial: str) -> dict:
    return dict(np.load(demo_masks["root"] / "ground_truth" / f"{trial}.npz"))


def anyone_speaks(demo_masks, video: str) -> np.ndarray:
    """Per-frame truth for a shared audio track: any person of the video speaks."""
    files = sorted((demo_masks["root"] / "ground_truth").glob(f"{video}*.npz"))
    people = [np.load(f)["speaking"] for f in files if not f.name.endswith(".audio.npz")]
    return np.logical_or.reduce(people)


def test_vad_finds_the_speaking_segments_of_the_demo_voice(demo_masks):
    tp = fp = fn = 0
    for row in demo_masks["manifest"].itertuples():
        speaks = anyone_speaks(demo_masks, row.video)
        found = mask_binary(read_mask(mask_path(demo_masks["masks"], "vad", row.trial)))[: len(speaks)]
        tp += int((found & speaks).sum())
        fp += int((found & ~speaks).sum())
        fn += int((~found & speaks).sum())
    assert tp > 0
    assert 2 * tp / (2 * tp + fp + fn) >= 0.8


def test_both_people_of_a_video_share_its_voice_activity(demo_masks):
    manifest = demo_masks["manifest"]
    pair = manifest[manifest.trial.str.endswith(("_left", "_right"))]
    assert len(pair) == 2
    left, right = (read_mask(mask_path(demo_masks["masks"], "vad", t)) for t in pair.trial)
    n = min(len(left.valid), len(right.valid))
    np.testing.assert_array_equal(left.features[:n], right.features[:n])


def test_mouth_measure_rises_with_the_generators_mouth_opening(demo_masks):
    measured, opened = [], []
    for row in demo_masks["manifest"].itertuples():
        store = read_mask(mask_path(demo_masks["masks"], "mouth", row.trial))
        mouth_open = truth(demo_masks, row.trial)["mouth_open"]
        known = store.valid[: len(mouth_open)]
        measured.append(store.features[: len(mouth_open), 0][known])
        opened.append(mouth_open[known])
        if opened[-1].std() > 0:  # a person who never speaks has nothing to correlate with
            assert np.corrcoef(measured[-1], opened[-1])[0, 1] > 0, row.trial
    assert np.corrcoef(np.concatenate(measured), np.concatenate(opened))[0, 1] > 0.2


def test_frames_without_a_crop_stay_unknown_never_closed(demo_masks):
    for row in demo_masks["manifest"].itertuples():
        store = read_mask(mask_path(demo_masks["masks"], "mouth", row.trial))
        visible = truth(demo_masks, row.trial)["face_visible"]
        hidden = np.flatnonzero(~visible)
        assert not store.valid[hidden].any() and not mask_binary(store)[hidden].any()
        assert not store.valid[len(visible) :].any()  # label rows past the video have no crop
        assert store.valid.sum() >= 0.9 * visible.sum()  # the face mesh finds nearly every face


def test_mask_stores_are_complete_aligned_and_described(demo_masks, tmp_path):
    vad_summary, mouth_summary = demo_masks["summaries"]
    manifest = demo_masks["manifest"]
    for summary in (vad_summary, mouth_summary):
        assert sorted(summary.trial) == sorted(manifest.trial)
        assert set(summary.status) == {"computed"}
    for row in manifest.itertuples():
        for mask in ("vad", "mouth"):
            path = mask_path(demo_masks["masks"], mask, row.trial)
            assert is_complete(path)
            store = read_mask(path)
            assert store.features.shape == (row.n_rows, 1)
            assert store.attrs["mask"] == mask and store.attrs["fps"] == pytest.approx(row.fps)
            assert 0 < store.attrs["threshold"] < 1
            assert not store.features[~store.valid].any()  # unknown rows hold no measure
    copy = tmp_path / "masks"
    shutil.copytree(demo_masks["masks"], copy)
    again = detect_voice_activity_shard(manifest, 0, 1, demo_masks["audio"], copy, VadSpec())
    assert set(again.status) == {"cached"}
    other = detect_voice_activity_shard(manifest, 0, 1, demo_masks["audio"], copy, VadSpec(threshold=0.6))
    assert set(other.status) == {"computed"}  # other settings: the fingerprint no longer matches


def test_vad_rows_past_the_end_of_the_audio_are_unknown():
    sample_rate, fps = 100, 10.0  # 10 samples per frame
    active = np.zeros(35, dtype=bool)
    active[5:20] = True  # half of frame 0, all of frame 1
    coverage, valid = frame_coverage(active, n_rows=6, fps=fps, sample_rate=sample_rate)
    np.testing.assert_allclose(coverage, [0.5, 1.0, 0.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(valid, [True, True, True, True, False, False])  # frame 3 is half inside


def test_speech_filter_truth_table():
    vad = np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=bool)
    mouth = np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=bool)
    mouth_known = np.array([0, 1, 0, 1, 0, 1, 0, 1], dtype=bool)
    # The paper's rule (the default): the mouth is open and known; voice activity does not count.
    np.testing.assert_array_equal(
        speech_frames(vad, mouth, mouth_valid=mouth_known), [False, False, False, True, False, False, False, True]
    )
    expected = [False, False, False, True, True, True, True, True]
    np.testing.assert_array_equal(speech_frames(vad, mouth, mouth_valid=mouth_known, rule="vad_or_mouth"), expected)
    vad_known = np.array([1, 1, 1, 1, 0, 1, 1, 1], dtype=bool)
    np.testing.assert_array_equal(
        speech_frames(vad, mouth, vad_valid=vad_known, mouth_valid=mouth_known, rule="vad_or_mouth"),
        [False, False, False, True, False, True, True, True],
    )
    with pytest.raises(ValueError):
        speech_frames(vad, mouth[:3], rule="vad_or_mouth")
    with pytest.raises(ValueError, match="unknown speech rule 'vad'"):
        speech_frames(vad, mouth, rule="vad")


def test_mouth_opening_keeps_talking_and_ignores_a_held_smile():
    fps = 25.0
    t = np.arange(250) / fps
    talking = (t >= 2) & (t < 6)
    syllables = 0.08 * np.sin(np.pi * 4 * t) ** 2  # lips close between syllables
    smile = np.where(t >= 7, 0.1, 0.0)  # lips held apart, no talking
    rng = np.random.default_rng(0)
    gaps = 0.02 + smile + np.where(talking, syllables, 0.0) + rng.normal(0, 0.002, len(t))
    gaps[100:110] = np.nan  # no face found: unknown
    measure, valid, threshold = mouth_opening(gaps, fps, MouthSpec())
    is_open = valid & (measure >= threshold)
    assert not valid[100:110].any() and not is_open[100:110].any()
    core = talking & valid & (np.abs(t - 4) < 1.7)
    assert is_open[core].mean() > 0.9
    assert not is_open[(t > 7.5) & (t < 9.5)].any()  # the smile
    assert not is_open[t < 1.5].any()


def test_a_trial_that_never_talks_has_no_open_mouth():
    gaps = 0.03 + np.random.default_rng(1).normal(0, 0.001, 300)
    measure, valid, threshold = mouth_opening(gaps, 30.0, MouthSpec())
    assert valid.all() and threshold == MouthSpec().min_threshold
    assert not (measure >= threshold).any()


def test_otsu_splits_two_clusters_between_them():
    values = np.r_[np.full(30, 0.01), np.full(10, 0.09), [0.012, 0.011, 0.088]]
    assert 0.012 < otsu_threshold(values) < 0.088
    assert otsu_threshold(np.full(5, 0.3)) is None


def test_binary_from_a_store_equals_the_binary_before_writing(tmp_path):
    measure = np.array([0.1, 0.49999, 0.5, 0.50001, 0.9, 0.7], dtype=np.float32)
    valid = np.array([1, 1, 1, 1, 1, 0], dtype=bool)
    path = tmp_path / "vad" / "t.zarr"
    write_mask(path, "vad", measure, valid, 0.5, {"fps": 30.0, "fingerprint": "x"})
    store = read_mask(path)
    np.testing.assert_array_equal(mask_binary(store), [False, True, True, True, True, False])  # float16
    write_store(tmp_path / "f.zarr", np.zeros((3, 2)), np.ones(3, bool), {"fingerprint": "x"})
    with pytest.raises(DatasetError, match="not a mask store"):
        read_mask(tmp_path / "f.zarr")


OFFLINE_CHECK = """
import socket
def refuse(*args, **kwargs):
    raise OSError("network use attempted")
socket.socket.connect = refuse
socket.create_connection = refuse
import numpy as np
from vapipe.features.masks import FaceMesh, MouthSpec, load_vad_model, speech_probabilities
model = load_vad_model()
noise = np.random.default_rng(0).normal(0, 0.01, 16000).astype(np.float32)
probs = speech_probabilities(model, noise)
assert len(probs) == 32 and (probs < 0.5).all(), probs
with FaceMesh(MouthSpec()) as mesh:
    assert mesh.landmarks(np.zeros((112, 112, 3), np.uint8)) is None
print("OFFLINE OK")
"""


def test_silero_and_the_face_mesh_load_with_no_network(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NO_PROXY": "*"}
    result = subprocess.run([sys.executable, "-c", OFFLINE_CHECK], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OFFLINE OK" in result.stdout
