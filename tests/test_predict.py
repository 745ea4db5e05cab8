"""`vapipe predict` on videos a user might bring: a real photograph with real synthesized speech, and a demo video."""

from __future__ import annotations

import shutil
import subprocess
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from conftest import REPO
from vapipe.cli import main
from vapipe.data.affwild2 import probe_video
from vapipe.features.backbones import create_backbone
from vapipe.training.data import TrialData
from vapipe.training.trainer import SystemTrainer, TrainConfig

SYSTEM = "tcn_av"


@pytest.fixture(scope="module")
def trained_results(tmp_path_factory) -> Path:
    """A results folder holding one fold model of a tiny system, with its backbone specs."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    tiny = yaml.safe_load((REPO / "tests/config/tiny.yaml").read_text())
    backbones = {name: {**config["backbones"][name], **tiny["backbones"].get(name, {})} for name in config["backbones"]}
    dims = {name: create_backbone(name, spec).dim for name, spec in backbones.items()}
    rng = np.random.default_rng(0)
    trials = [
        TrialData(f"t{i}", 25.0, {n: rng.normal(size=(80, d)).astype(np.float32) for n, d in dims.items()},
                  {n: np.ones(80, bool) for n in dims}, rng.uniform(-0.5, 0.5, (80, 2)).astype(np.float32))
        for i in range(3)
    ]
    trainer = SystemTrainer("tcn_fusion", {"hidden": 8, "levels": 1}, 40, 20, TrainConfig(epochs=1, device="cpu"))
    trainer.fit(trials)
    results = tmp_path_factory.mktemp("results")
    (results / "models" / SYSTEM / "k0").mkdir(parents=True)
    torch.save({**trainer.state_dict(), "backbones": backbones}, results / "models" / SYSTEM / "k0" / "model.pt")
    return results


def speech_wav(path: Path, text: str) -> np.ndarray:
    """Real synthesized speech from espeak-ng, as float samples at 22.05 kHz."""
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    with wave.open(str(path)) as handle:
        assert handle.getframerate() == 22050
        return np.frombuffer(handle.readframes(handle.getnframes()), "<i2").astype(np.float32) / 32768


def photo_video(path: Path, speech: np.ndarray, fps: int = 25, blank=range(30, 36)) -> int:
    """The astronaut photograph's face moving and scaling over a plain background; a few blank frames."""
    import skimage.data

    face = Image.fromarray(skimage.data.astronaut()[20:260, 120:330])  # her head and shoulders
    n_frames = int(len(speech) / 22050 * fps)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=Fraction(fps))
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        audio = container.add_stream("aac", rate=22050)
        audio.layout = "mono"
        for i in range(n_frames):
            canvas = np.full((240, 320, 3), 200, np.uint8)
            if i not in blank:
                scale = 0.6 + 0.25 * np.sin(i / 15)
                patch = np.asarray(face.resize((int(210 * scale), int(240 * scale))))
                x = int(20 + 60 * (1 + np.sin(i / 20)))
                y = int(max(0, 240 - patch.shape[0] - 5 * (1 + np.cos(i / 10))))
                canvas[y : y + patch.shape[0], x : x + patch.shape[1]] = patch[: 240 - y, : 320 - x]
            for packet in video.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        for start in range(0, len(speech), 1024):
            chunk = av.AudioFrame.from_ndarray(speech[None, start : start + 1024].copy(), format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 22050, start
            for packet in audio.encode(chunk):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    return n_frames


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs Debian's espeak-ng (.ci/run installs it)")
def test_predict_on_a_real_photo_with_synthesized_speech(trained_results, tmp_path, capsys):
    speech = speech_wav(tmp_path / "speech.wav", "Hello there. I am very pleased to see you today, this is wonderful news.")
    video = tmp_path / "astronaut.mp4"
    photo_video(video, speech)
    n_frames = probe_video(video).n_frames
    assert main(["predict", str(video), "--system", SYSTEM, "--results", str(trained_results), "--out", str(tmp_path / "out")]) == 0
    table = pd.read_csv(tmp_path / "out.va.csv")
    assert list(table.columns) == ["frame", "time", "valence", "arousal", "face"]
    assert len(table) == n_frames and table["frame"].tolist() == list(range(1, n_frames + 1))
    assert table[["valence", "arousal"]].abs().le(1).all().all() and table.notna().all().all()
    assert table.loc[table["frame"].between(31, 36), "face"].eq(0).all()  # the blank frames are flagged
    assert table["face"].mean() > 0.8  # the real face is found while it moves and scales
    png = (tmp_path / "out.va.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert f"{n_frames} frames" in capsys.readouterr().out


def test_predict_on_a_generated_demo_video(trained_results, tmp_path):
    from vapipe.data.demo import DemoSpec, generate_demo_dataset

    generate_demo_dataset(tmp_path / "demo", DemoSpec(seed=5, n_videos=3, min_frames=40, max_frames=50,
                                                      n_test_videos=1, n_validation_videos=1))
    video = sorted((tmp_path / "demo/videos").rglob("*.mp4"))[-1]
    assert main(["predict", str(video), "--system", SYSTEM, "--results", str(trained_results), "--out", str(tmp_path / "demo_out")]) == 0
    table = pd.read_csv(tmp_path / "demo_out.va.csv")
    assert len(table) == probe_video(video).n_frames
    assert table["face"].mean() > 0.5


def test_predict_names_what_is_missing(trained_results, tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nope.mp4"), "--system", SYSTEM, "--results", str(trained_results)]) == 2
    assert "nope.mp4: video file does not exist" in capsys.readouterr().err
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    assert main(["predict", str(video), "--system", "other", "--results", str(trained_results)]) == 2
    assert "no trained model" in capsys.readouterr().err
