"""Rows are timed by presentation timestamps, and audio sits at its stream's start time: proved
with videos whose truth is known (a tone burst at a known presentation time must land on the right
row of a log-mel store, +-1 row), in a variable-frame-rate video and in one whose audio starts late."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pandas as pd
import pytest
from conftest import mini_dataset_config, write_crops, write_labels, write_video

from vapipe.data.affwild2 import DatasetError
from vapipe.data.manifest import DatasetLayout, build_manifest
from vapipe.data.timing import read_timing
from vapipe.features.audio import extract_audio
from vapipe.features.cache import read_store, store_path
from vapipe.features.extract import extract_shard
from vapipe.post.predictions import postprocess_predictions
from vapipe.training.data import TrialData
from vapipe.training.resample import resample_trial

RATE = 16000
TRAIN = "annotations/VA_Estimation_Challenge/Train_Set"


def tone_burst(seconds: float, burst_at: float, length: float = 0.2) -> np.ndarray:
    """Near-silence with a loud 1 kHz burst at `burst_at` s (audio-local time)."""
    t = np.arange(int(seconds * RATE)) / RATE
    audio = 0.001 * np.sin(2 * np.pi * 200 * t)
    on = (t >= burst_at) & (t < burst_at + length)
    audio[on] = 0.5 * np.sin(2 * np.pi * 1000 * t[on])
    return audio.astype(np.float32)


def write_timed_video(
    path, frame_times: list[float], audio: np.ndarray, audio_start: float = 0.0, rate: int = 30
) -> None:
    """An mp4 whose frames are presented at `frame_times` (ms clock) and whose audio stream starts at
    `audio_start` seconds; `rate` is the frame rate the container declares."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.codec_context.time_base = Fraction(1, 1000)
        sound = container.add_stream("aac", rate=RATE)
        sound.layout = "mono"
        for i, t in enumerate(frame_times):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i % 255, np.uint8), format="rgb24")
            frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        offset = round(audio_start * RATE)
        for start in range(0, len(audio), 1024):
            chunk = av.AudioFrame.from_ndarray(audio[None, start : start + 1024].copy(), format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = RATE, offset + start, Fraction(1, RATE)
            for packet in sound.encode(chunk):
                container.mux(packet)
        for packet in sound.encode():
            container.mux(packet)


def add_trial(root, name: str, n_rows: int) -> None:
    write_labels(root / TRAIN / f"{name}.txt", ["0.1,0.1"] * n_rows)
    write_crops(root / "cropped_aligned" / name, [1, 2, 3])


def loudest_row(root, tmp_path, trial: str) -> tuple[int, pd.Series]:
    """Build the manifest, extract the audio on the video's clock, cache log mel; the row with the most energy."""
    manifest, _ = build_manifest(DatasetLayout.from_config(mini_dataset_config(root)))
    row = manifest.set_index("trial").loc[trial]
    wav = tmp_path / f"{trial}.wav"
    extract_audio(row["video_path"], wav)
    spec = {"kind": "logmel", "id": "logmel", "input": "mixture", "n_mels": 64}
    extract_shard("mel", spec, manifest[manifest["trial"] == trial], 0, 1, tmp_path / "features", {trial: str(wav)})
    energy = read_store(store_path(tmp_path / "features", "mel", trial)).features.astype(np.float64).mean(axis=1)
    return int(np.argmax(energy)), row


def test_a_burst_in_a_variable_frame_rate_video_lands_on_its_row(mini_dataset, tmp_path):
    # 90 frames at 30 fps, then 60 at 10 fps: frame 120 is presented at 6.0 s (i / mean fps: 7.2 s)
    times = [i / 30 for i in range(90)] + [3.0 + k / 10 for k in range(60)]
    write_timed_video(mini_dataset / "videos/batch1/vfr.mp4", times, tone_burst(9.0, burst_at=6.0))
    add_trial(mini_dataset, "vfr", 150)
    row_index, row = loudest_row(mini_dataset, tmp_path, "vfr")
    assert row["variable_rate"] and row["timing_note"].startswith("frames at 10.00-30.30 fps")  # ms clock
    assert abs(row_index - 120) <= 1, row_index


def test_a_burst_in_a_video_whose_audio_starts_late_lands_on_its_row(mini_dataset, tmp_path):
    # 25 fps for 10 s; the audio stream starts 0.94 s after the first frame, its burst 2.06 s later:
    # at 3.0 s on the video's clock, row 75 (read as starting at 0: 2.06 s, row 51)
    write_timed_video(
        mini_dataset / "videos/batch1/late.mp4",
        [i / 25 for i in range(250)],
        tone_burst(9.06, burst_at=2.06),
        audio_start=0.94,
        rate=25,
    )
    add_trial(mini_dataset, "late", 250)
    row_index, row = loudest_row(mini_dataset, tmp_path, "late")
    # the decoder keeps the encoder's 1024 priming samples (64 ms) in front of the signal, and times them
    assert not row["variable_rate"] and row["audio_offset"] == pytest.approx(0.94 - 1024 / RATE, abs=0.002)
    assert abs(row_index - 75) <= 1, row_index


def test_video_and_audio_lengths_that_disagree_stop_or_skip_the_trial(mini_dataset):
    write_video(mini_dataset / "videos/batch1/cut.mp4", Fraction(25), 375, audio_seconds=12.0)  # 15 s video
    add_trial(mini_dataset, "cut", 375)
    layout = DatasetLayout.from_config(mini_dataset_config(mini_dataset))
    with pytest.raises(DatasetError, match=r"cut.mp4: video lasts 15.00 s but audio ends at 12.\d\d s"):
        build_manifest(layout)
    manifest, skipped = build_manifest(layout, on_bad_trial="skip")
    assert skipped["trial"].tolist() == ["cut"] and "cut" not in set(manifest["trial"])
    manifest, _ = build_manifest(layout, require_audio=False)  # no audio backbone: only a warning
    assert "video lasts 15.00 s" in manifest.set_index("trial").loc["cut", "timing_note"]


def test_a_constant_rate_video_keeps_the_i_over_fps_grid(mini_dataset):
    timing = read_timing(mini_dataset / "videos/batch1/clipA-60-64x48.mp4")
    assert not timing.variable_rate and timing.audio_offset == 0.0
    np.testing.assert_array_equal(timing.row_spans(13)[0], np.arange(13) / (30000 / 1001))


def test_stage_2_bins_and_upsamples_a_variable_rate_trial_by_its_times(tmp_path):
    times = np.array([0.0, 0.05, 0.1, 0.15, 0.9, 1.0, 1.1, 1.5])  # 20 fps, then a gap, then 10 fps
    trial = TrialData(
        "v", 8 / 1.6, {"f": np.arange(8, dtype=np.float32)[:, None]}, {"f": np.ones(8, bool)}, labels=None, times=times
    )
    low = resample_trial(trial, rate=2.0)  # 0.5 s bins: [0, .5) [.5, 1) [1, 1.5) [1.5, 2)
    np.testing.assert_allclose(low.times, [0.075, 0.9, 1.05, 1.5])
    np.testing.assert_allclose(low.inputs["f"][:, 0], [1.5, 4.0, 5.5, 7.0])
    raw = pd.DataFrame({"trial": "v", "time": [0.0, 1.5], "valence": [0.0, 1.5], "arousal": 0.0, "set": "test"})
    video = tmp_path / "vfr.mp4"
    write_timed_video(video, list(times), tone_burst(1.6, 0.5))
    manifest = pd.DataFrame([{"trial": "v", "n_rows": 8, "fps": 5.0, "variable_rate": True, "video_path": str(video)}])
    frames = postprocess_predictions(raw, manifest, smoothing_seconds=0.0)
    np.testing.assert_allclose(frames["valence"], times, atol=1e-3)  # linear in time, not in row index
