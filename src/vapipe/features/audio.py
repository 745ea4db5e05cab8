"""Audio track extraction: raw video -> 16 kHz mono WAV, decoded with PyAV."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import av
import numpy as np

from vapipe.data.affwild2 import DatasetError
from vapipe.data.timing import read_timing
from vapipe.errors import InputError

SAMPLE_RATE = 16_000


def decode_audio(video_path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode a container's first audio stream to float32 mono at `sample_rate`."""
    video_path = Path(video_path)
    chunks = []
    try:
        with av.open(str(video_path)) as container:
            if not container.streams.audio:
                raise DatasetError(f"{video_path}: no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):  # flush the resampler's delay line
                chunks.append(out.to_ndarray().reshape(-1))
    except av.error.FFmpegError as error:
        raise DatasetError(f"{video_path}: cannot decode audio ({error})") from None
    if not chunks:
        raise DatasetError(f"{video_path}: audio stream holds no samples")
    return np.concatenate(chunks).astype(np.float32)


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write float samples in [-1, 1] as 16-bit PCM mono, atomically (temp file, then rename)."""
    path = Path(path)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with wave.open(str(tmp), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(pcm.tobytes())
    os.replace(tmp, path)


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV into float32 mono samples and its sample rate."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as handle:
            if handle.getsampwidth() != 2:
                raise DatasetError(f"{path}: expected 16-bit PCM, got {8 * handle.getsampwidth()}-bit")
            channels, rate = handle.getnchannels(), handle.getframerate()
            data = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    except (wave.Error, EOFError) as error:
        raise DatasetError(f"{path}: not a readable WAV file ({error})") from None
    samples = data.reshape(-1, channels).mean(axis=1) / 32767.0
    return samples.astype(np.float32), rate


def on_video_clock(samples: np.ndarray, audio_offset: float | None, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decoded audio placed so that sample 0 is the first video frame's presentation time: an audio
    stream that starts late is preceded by silence, one that starts early loses its head."""
    shift = int(round((audio_offset or 0.0) * sample_rate))
    if shift > 0:
        return np.concatenate([np.zeros(shift, samples.dtype), samples])
    return samples[-shift:]


def decode_audio_on_video_clock(video_path: str | Path) -> np.ndarray:
    """16 kHz mono audio of a video, sample 0 at its first frame (`vapipe.data.timing`)."""
    try:
        offset = read_timing(video_path).audio_offset
    except InputError as error:
        raise DatasetError(str(error)) from None
    return on_video_clock(decode_audio(video_path), offset)


def extract_audio(video_path: str | Path, wav_path: str | Path) -> float:
    """Extract the audio track of a raw video to a 16 kHz mono WAV on the video's clock; returns
    its duration in s."""
    samples = decode_audio_on_video_clock(video_path)
    write_wav(wav_path, samples)
    return len(samples) / SAMPLE_RATE


def video_of_track(path: str | Path) -> str:
    """The video a workflow audio track belongs to: results/audio/{video}[.vocals].wav."""
    return Path(path).name.removesuffix(".wav").removesuffix(".vocals")
