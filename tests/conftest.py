"""Shared fixtures: a hand-built miniature of the Aff-Wild2 layout with known answers."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def write_video(
    path: Path,
    fps: Fraction,
    n_frames: int,
    audio_seconds: float | None = None,
    codec: str = "libx264",
    audio_codec: str = "aac",
) -> None:
    """A small video with a tone as its audio track (none when audio_seconds is None)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = None
        if audio_seconds is not None:
            audio = container.add_stream(audio_codec, rate=16000)
            audio.layout = "mono"
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i % 255, np.uint8), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio is not None:
            samples = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(audio_seconds * 16000)) / 16000)).astype(np.float32)
            fmt = "s16" if audio_codec == "pcm_s16le" else "fltp"
            data = (samples * 32767).astype(np.int16)[None] if fmt == "s16" else samples[None]
            step = 1024
            for start in range(0, data.shape[1], step):
                chunk = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(data[:, start : start + step]), format=fmt, layout="mono"
                )
                chunk.sample_rate = 16000
                chunk.pts = start
                for packet in audio.encode(chunk):
                    container.mux(packet)
            for packet in audio.encode():
                container.mux(packet)


def write_crops(folder: Path, frames: list[int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f in frames:
        Image.fromarray(np.full((112, 112, 3), f % 255, np.uint8)).save(folder / f"{f:05d}.jpg")


def write_labels(path: Path, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("valence,arousal\n" + "\n".join(rows) + "\n")


@pytest.fixture
def mini_dataset(tmp_path) -> Path:
    """Three videos, four trials, every convention the reader must handle.

    - 'clipA-60-64x48' (mp4, 29.97 fps, 12 frames; the "-60-" is not its rate): labels 13 rows (one extra),
      rows 3-4 are -5, crops 00003.jpg and 00007.jpg missing, crops in the second crops folder.
    - 'duo' (avi, 25 fps, 10 frames): two people, trials duo_left and duo_right, 10 rows each.
    - 'testvid' (mp4, 10 fps, 8 frames): the test trial.
    """
    root = tmp_path / "affwild2"
    write_video(root / "videos/batch1/clipA-60-64x48.mp4", Fraction(30000, 1001), 12, 12 / 29.97)
    write_video(root / "videos/batch2/duo.avi", Fraction(25), 10, 0.4, codec="mpeg4", audio_codec="pcm_s16le")
    write_video(root / "videos/batch2/testvid.mp4", Fraction(10), 8, 0.8)
    ann = root / "annotations/VA_Estimation_Challenge"
    rows_a = [f"{0.1 * (i % 5):.1f},{-0.05 * i:.2f}" for i in range(13)]
    rows_a[2] = rows_a[3] = "-5,-5"
    write_labels(ann / "Train_Set/clipA-60-64x48.txt", rows_a)
    write_labels(ann / "Train_Set/duo_left.txt", ["0.5,0.5"] * 10)
    write_labels(ann / "Validation_Set/duo_right.txt", ["-0.5,0.25"] * 10)
    write_crops(root / "cropped_aligned_new_50_vids/clipA-60-64x48", [f for f in range(1, 13) if f not in (3, 7)])
    write_crops(root / "cropped_aligned/duo_left", list(range(1, 11)))
    write_crops(root / "cropped_aligned/duo_right", list(range(1, 11)))
    write_crops(root / "cropped_aligned/testvid", list(range(1, 9)))
    (root / "names_of_videos_in_each_test_set").mkdir()
    (root / "names_of_videos_in_each_test_set/test.txt").write_text("testvid\n")
    (root / "example.txt").write_text(
        "image_location,valence,arousal\n" + "".join(f"testvid/{f:05d}.jpg,0,0\n" for f in range(1, 9))
    )
    return root


def mini_dataset_config(root: Path) -> dict:
    return {
        "root": str(root),
        "annotations": "annotations/VA_Estimation_Challenge",
        "crops": ["cropped_aligned", "cropped_aligned_new_50_vids"],
        "videos": "videos",
        "test_list": "names_of_videos_in_each_test_set/test.txt",
        "example_submission": "example.txt",
    }


@pytest.fixture
def single_thread():
    """Tiny models run fastest on one torch thread, and do not stall when the machine is busy."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_system(model: str, params: dict, window: int = 100, stride: int = 60, features=("f",), **train):
    """An unfitted system of the config entry these settings make (CPU)."""
    from vapipe.specs import SystemSpec, TrainSpec
    from vapipe.training.system import create_system

    spec = SystemSpec(
        model=model,
        features=tuple(features),
        window=window,
        stride=stride,
        params=params,
        train=TrainSpec(**{"device": "cpu", **train}),
    )
    return create_system(spec)
