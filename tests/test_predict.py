"""`vapipe predict` on videos a user might bring: a real photograph with real synthesized speech, and a demo video."""

from __future__ import annotations

import shutil
import subprocess
import wave
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO
from PIL import Image

from vapipe.cli import main
from vapipe.data.affwild2 import probe_video
from vapipe.features.backbones import create_backbone
from vapipe.specs import PipelineSpec
from vapipe.training.data import TrialData
from vapipe.training.system import create_system, load_system

SYSTEM = "tcn_av"
# Every system kind and rate: tcn_av (native rate), dresvyanskiy_face (5 FPS), kelm_face (KELM),
# dasp (text prototypes read from a file at training time, a buffer of its checkpoint after).
SYSTEMS = ("tcn_av", "dresvyanskiy_face", "kelm_face", "dasp")


def tiny_config() -> dict:
    """config/config.yaml with tests/config/tiny.yaml's backbone and system overrides merged in."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    tiny = yaml.safe_load((REPO / "tests/config/tiny.yaml").read_text())
    for section in ("backbones", "systems"):
        for name, override in tiny[section].items():
            config[section][name] = {**config[section][name], **override}
    return config


@pytest.fixture(scope="module")
def trained_results(tmp_path_factory) -> Path:
    """A results folder holding one fold checkpoint of each of SYSTEMS, trained on random features
    of their backbones' widths, saved the way rule train_fold saves them."""
    spec = PipelineSpec.from_config(tiny_config())
    results = tmp_path_factory.mktemp("results")
    prototypes = results / "prototypes.npy"
    np.save(prototypes, np.random.default_rng(1).normal(size=(9, 12)).astype(np.float32))
    rng = np.random.default_rng(0)
    for name in SYSTEMS:
        system = spec.systems[name]
        params = {**system.params, "prototypes": str(prototypes)} if "prototypes" in system.params else system.params
        system = replace(system, params=params, train=replace(system.train, epochs=1, device="cpu"))
        backbones = {b: spec.backbones[b].to_dict() for b in system.features}
        dims = {b: create_backbone(b, backbones[b]).dim for b in system.features}
        trials = [
            TrialData(
                f"t{i}",
                25.0,
                {n: rng.normal(size=(120, d)).astype(np.float32) for n, d in dims.items()},
                {n: np.ones(120, bool) for n in dims},
                rng.uniform(-0.5, 0.5, (120, 2)).astype(np.float32),
            )
            for i in range(4)
        ]
        fitted = create_system(system).fit(trials[:3], validation=trials[3:])
        fitted.save(
            results / "models" / name / "k0",
            {"system": name, "fold": "k0", "backbones": backbones, "postprocess": {"smoothing_seconds": 0.5}},
        )
    prototypes.unlink()  # a DASP checkpoint needs nothing but its own folder
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
    speech = speech_wav(
        tmp_path / "speech.wav", "Hello there. I am very pleased to see you today, this is wonderful news."
    )
    video = tmp_path / "astronaut.mp4"
    photo_video(video, speech)
    n_frames = probe_video(video).n_frames
    assert (
        main(
            [
                "predict",
                str(video),
                "--system",
                SYSTEM,
                "--results",
                str(trained_results),
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    table = pd.read_csv(tmp_path / "out.va.csv")
    assert list(table.columns) == ["frame", "time", "valence", "arousal", "face"]
    assert len(table) == n_frames and table["frame"].tolist() == list(range(1, n_frames + 1))
    assert table[["valence", "arousal"]].abs().le(1).all().all() and table.notna().all().all()
    assert table.loc[table["frame"].between(31, 36), "face"].eq(0).all()  # the blank frames are flagged
    assert table["face"].mean() > 0.8  # the real face is found while it moves and scales
    png = (tmp_path / "out.va.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert f"{n_frames} frames" in capsys.readouterr().out


@pytest.fixture(scope="module")
def demo_video(tmp_path_factory) -> Path:
    from vapipe.data.demo import DemoSpec, generate_demo_dataset

    root = tmp_path_factory.mktemp("demo")
    generate_demo_dataset(
        root / "demo",
        DemoSpec(seed=5, n_videos=3, min_frames=40, max_frames=50, n_test_videos=1, n_validation_videos=1),
    )
    return sorted((root / "demo/videos").rglob("*.mp4"))[-1]


@pytest.mark.parametrize("system", SYSTEMS)
def test_predict_on_a_generated_demo_video_with_every_system_kind_and_rate(
    system, trained_results, demo_video, tmp_path
):
    out = tmp_path / "demo_out"
    assert (
        main(["predict", str(demo_video), "--system", system, "--results", str(trained_results), "--out", str(out)])
        == 0
    )
    table = pd.read_csv(f"{out}.va.csv")
    n_frames = probe_video(demo_video).n_frames
    assert len(table) == n_frames and table["frame"].tolist() == list(range(1, n_frames + 1))
    assert table["face"].mean() > 0.5 and table.notna().all().all()


def test_a_checkpoint_loads_from_another_directory_with_nothing_else_on_disk(trained_results, tmp_path, monkeypatch):
    """DASP read its prototypes from a file that is gone now; the copy sits in a fresh folder."""
    copy = tmp_path / "elsewhere" / "dasp"
    shutil.copytree(trained_results / "models" / "dasp" / "k0", copy)
    assert sorted(p.name for p in copy.iterdir()) == ["config.json", "model.safetensors"]
    monkeypatch.chdir(tmp_path)
    again, original = load_system(copy), load_system(trained_results / "models" / "dasp" / "k0")
    rng = np.random.default_rng(3)
    dims = again.input_dims_
    trial = TrialData(
        "x",
        25.0,
        {n: rng.normal(size=(50, d - 1)).astype(np.float32) for n, d in dims.items()},
        {n: np.ones(50, bool) for n in dims},
        labels=None,
    )
    for got, want in zip(again.predict(trial), original.predict(trial)):
        np.testing.assert_array_equal(got, want)
    prototypes = again.model_.soft_prompt.prototypes.numpy()
    assert prototypes.shape == (9, 12) and np.abs(prototypes).sum() > 0  # the trained buffer, not zeros


def test_predict_names_what_is_missing(trained_results, tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nope.mp4"), "--system", SYSTEM, "--results", str(trained_results)]) == 2
    assert "nope.mp4: video file does not exist" in capsys.readouterr().err
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    assert main(["predict", str(video), "--system", "other", "--results", str(trained_results)]) == 2
    assert "no trained model" in capsys.readouterr().err
