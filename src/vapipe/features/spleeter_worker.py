"""Spleeter 2-stems vocals of one 16 kHz mono WAV; runs inside the Spleeter environment.

    <spleeter-env>/bin/python -I spleeter_worker.py INPUT.wav OUTPUT.wav --input-rms 0.1 --chunk-seconds 120

This file is executed as a script by the environment that `build_spleeter_env` makes (TensorFlow
2.12, NumPy < 2): it imports only the standard library, NumPy, SciPy and Spleeter, never vapipe.
Audio is read and written with the stdlib `wave` module and handed to Spleeter's Python API as an
array, so no ffmpeg binary is needed and no duration limit applies (the CLI's `-d` defaults to
600 s and silently truncates; the estimator crops each output to its input's length, checked here).
Spleeter finds its checkpoint under the MODEL_PATH environment variable (`<MODEL_PATH>/2stems/`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import wave
from collections.abc import Callable, Iterable, Iterator
from math import gcd

import numpy as np
from scipy.signal import resample_poly

MODEL_RATE = 44_100  # Spleeter's models are trained at 44.1 kHz
PCM_SCALE = 32767.0
SUMMARY_PREFIX = "spleeter_worker summary: "  # the last line printed, JSON after this prefix
# Spleeter cuts its STFT into segments of T = 512 frames of 1024 samples and masks each one as a
# whole; a chunk that starts and ends on that grid, read with one extra segment on each side,
# gives exactly the samples that the whole file would (see separate_in_chunks).
SEGMENT = 512 * 1024

# Stereo float32 chunks at 44.1 kHz -> their stereo vocals, in order.
Predict = Callable[[Iterable[np.ndarray]], Iterator[np.ndarray]]


class WorkerError(Exception):
    """A check failed; main() prints it as one line and exits with status 2."""


def read_pcm16(path: str) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV as float64 mono samples and its sample rate."""
    with wave.open(path, "rb") as handle:
        if handle.getsampwidth() != 2:
            raise WorkerError(f"{path}: expected 16-bit PCM, got {8 * handle.getsampwidth()}-bit")
        channels, rate = handle.getnchannels(), handle.getframerate()
        data = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    return data.reshape(-1, channels).mean(axis=1) / PCM_SCALE, rate


def write_pcm16(path: str, samples: np.ndarray, rate: int) -> int:
    """Write float samples as 16-bit PCM mono; returns how many samples had to be clipped."""
    clipped = int(np.count_nonzero(np.abs(samples) > 1.0))
    pcm = (np.clip(samples, -1.0, 1.0) * PCM_SCALE).round().astype("<i2")
    with wave.open(path, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())
    return clipped


def resampled_length(n: int, rate_in: int, rate_out: int) -> int:
    """Length of `resample_poly` output for n samples: ceil(n * rate_out / rate_in)."""
    return -(-n * rate_out // rate_in)


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling (zero-phase FIR, so no delay) between integer rates."""
    if rate_in == rate_out:
        return samples
    step = gcd(rate_in, rate_out)
    return resample_poly(samples, rate_out // step, rate_in // step)


def input_gain(samples: np.ndarray, target_rms: float | None) -> float:
    """Gain that brings the track's RMS to target_rms (1 for silence or no target)."""
    rms = float(np.sqrt(np.mean(np.square(samples)))) if len(samples) else 0.0
    if not target_rms or rms == 0.0:
        return 1.0
    return target_rms / rms


def back_to_input_rate(vocals: np.ndarray, n: int, rate: int) -> np.ndarray:
    """Vocals at 44.1 kHz -> the input's rate and exactly n samples (drops resampling's <= 1 extra)."""
    out = resample(vocals, MODEL_RATE, rate)
    if not 0 <= len(out) - n <= 1:
        raise WorkerError(f"resampled vocals have {len(out)} samples, expected {n} (+1 at most)")
    return out[:n]


def chunk_bounds(n: int, chunk: int, margin: int) -> list[tuple[int, int, int, int]]:
    """Overlap-save plan: (read_start, read_stop, keep_start, keep_stop) per chunk of n samples."""
    return [
        (max(0, start - margin), min(n, start + chunk + margin), start, min(n, start + chunk))
        for start in range(0, n, chunk)
    ]


def separate_in_chunks(waveform: np.ndarray, predict: Predict, chunk: int, margin: int) -> np.ndarray:
    """Vocals of a mono 44.1 kHz waveform, separated chunk by chunk, exactly as long as it.

    Each chunk is read with `margin` samples of context on both sides and only its middle is kept.
    With chunk and margin multiples of SEGMENT, every kept sample comes from the same segments,
    with the same STFT frames, as in one pass over the whole file (Spleeter zero-pads the start of
    its input, so only the first segment of a chunk differs, and it lies in the margin); memory
    then depends on the chunk, not the file (a whole 700 s file needs 11 GB).
    """
    plan = chunk_bounds(len(waveform), chunk, margin)
    # Mono becomes centre-panned stereo, as Spleeter's own separate() does.
    chunks = (np.repeat(waveform[lo:hi, None], 2, axis=1).astype(np.float32) for lo, hi, _, _ in plan)
    vocals = np.empty(len(waveform))
    try:
        for (lo, hi, keep_lo, keep_hi), stereo in zip(plan, predict(chunks), strict=True):
            if stereo.shape[0] != hi - lo:
                raise WorkerError(f"Spleeter returned {stereo.shape[0]} samples for {hi - lo} (truncated?)")
            vocals[keep_lo:keep_hi] = stereo[keep_lo - lo : keep_hi - lo].mean(axis=1)
    except ValueError as error:  # zip(strict=True): Spleeter skipped or added a chunk
        raise WorkerError(
            f"Spleeter returned a different number of chunks than the {len(plan)} given ({error})"
        ) from None
    return vocals


def chunk_samples(chunk_seconds: float) -> int:
    """Chunk length at 44.1 kHz: chunk_seconds rounded to whole Spleeter segments (11.9 s), at least one."""
    return max(1, round(chunk_seconds * MODEL_RATE / SEGMENT)) * SEGMENT


def separate_vocals(samples: np.ndarray, rate: int, predict: Predict, chunk_seconds: float = 120.0) -> np.ndarray:
    """Vocals of a mono track at `rate`, same length, through Spleeter at 44.1 kHz."""
    upsampled = resample(samples, rate, MODEL_RATE)
    if len(upsampled) != resampled_length(len(samples), rate, MODEL_RATE):
        raise WorkerError(f"upsampling gave {len(upsampled)} samples for {len(samples)} at {rate} Hz")
    vocals = separate_in_chunks(upsampled, predict, chunk_samples(chunk_seconds), SEGMENT)
    return back_to_input_rate(vocals, len(samples), rate)


def spleeter_predictor(params_name: str = "spleeter:2stems") -> Predict:
    """Spleeter's estimator as chunks -> vocals: one graph and checkpoint load for all chunks.

    `Separator.separate` builds a new graph and reloads the checkpoint on every call (about 6 s
    here); feeding every chunk through one `estimator.predict` pays that once per file.
    """
    import tensorflow as tf  # heavy: only when separating
    from spleeter.separator import create_estimator
    from spleeter.utils.configuration import load_configuration

    params = load_configuration(params_name)
    if params["T"] * params["frame_step"] != SEGMENT:
        raise WorkerError(f"{params_name}: segments of {params['T']} x {params['frame_step']} samples, not {SEGMENT}")
    estimator = create_estimator(params, False)
    signature = {"waveform": tf.TensorSpec((None, 2), tf.float32), "audio_id": tf.TensorSpec((), tf.string)}

    def predict(chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        examples = ({"waveform": chunk, "audio_id": ""} for chunk in chunks)

        def input_fn() -> tf.data.Dataset:
            return tf.data.Dataset.from_generator(lambda: examples, output_signature=signature)

        for prediction in estimator.predict(input_fn, yield_single_examples=False):
            yield prediction["vocals"]

    return predict


def run(input_path: str, output_path: str, target_rms: float | None, params: str, chunk_seconds: float) -> dict:
    """Separate one file; returns a summary for the caller's log."""
    samples, rate = read_pcm16(input_path)
    if len(samples) == 0:
        raise WorkerError(f"{input_path}: no samples")
    # The U-Net is not level-invariant: a quiet speech track is brought to a music-like level.
    gain = input_gain(samples, target_rms)
    predict = spleeter_predictor(params)
    start = time.perf_counter()
    vocals = separate_vocals(samples * gain, rate, predict, chunk_seconds) / gain
    seconds = time.perf_counter() - start
    if not np.isfinite(vocals).all():
        raise WorkerError(f"{input_path}: Spleeter returned non-finite samples")
    clipped = write_pcm16(output_path, vocals, rate)
    return {
        "input": input_path,
        "samples": len(samples),
        "rate": rate,
        "audio_seconds": len(samples) / rate,
        "gain": gain,
        "chunk_seconds": chunk_seconds,
        "separation_seconds": round(seconds, 3),
        "clipped_samples": clipped,
        "vocals_rms": float(np.sqrt(np.mean(vocals**2))),
        "mixture_rms": float(np.sqrt(np.mean(samples**2))),
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: INPUT OUTPUT [--input-rms R] [--chunk-seconds S]; prints a JSON summary last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--input-rms", type=float, default=None, help="scale the input to this RMS first")
    parser.add_argument("--params", default="spleeter:2stems", help="Spleeter configuration")
    parser.add_argument("--chunk-seconds", type=float, default=120.0, help="separate in chunks this long")
    args = parser.parse_args(argv)
    if "MODEL_PATH" not in os.environ:
        print("spleeter_worker: MODEL_PATH is not set (the folder holding 2stems/)", file=sys.stderr)
        return 2
    try:
        summary = run(args.input, args.output, args.input_rms, args.params, args.chunk_seconds)
    except (WorkerError, wave.Error, EOFError) as error:
        print(f"spleeter_worker: {error}", file=sys.stderr)
        return 2
    print(SUMMARY_PREFIX + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
