"""Sliding windows for audio backbones that embed a window at a time (AST, VGGish, ResNet-18).

A window is centred on each requested time: every ``hop_seconds`` from 0, or every video frame's
centre (``hop_seconds: frame``, USTC's VGGish at one feature per frame). The signal is padded with
silence, so windows at the edges are full. A window's reported centre is where it really is,
after rounding to the spectrogram's frame grid or the sample grid.
"""

from __future__ import annotations

import numpy as np


def _round_half_up(x: np.ndarray) -> np.ndarray:
    """Nearest integer, halves up (np.rint rounds halves to even, which alternates direction)."""
    return np.floor(np.asarray(x) + 0.5 + 1e-9).astype(np.int64)


def window_centres(duration: float, hop_seconds: float | str, fps: float | None = None) -> np.ndarray:
    """Requested window centres in seconds over [0, duration]."""
    if hop_seconds == "frame":
        if not fps:
            raise ValueError("hop_seconds: frame needs the video's fps")
        return (np.arange(max(1, int(np.ceil(duration * fps)))) + 0.5) / fps
    hop = float(hop_seconds)
    if hop <= 0:
        raise ValueError(f"hop_seconds must be positive or 'frame', got {hop_seconds!r}")
    return np.arange(int(np.floor(duration / hop + 1e-9)) + 1) * hop


def frame_window_starts(
    n_frames: int, first_centre: float, frame_hop: float, length: int, centres: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """First frame of the `length`-frame window nearest each centre, and its true centre.

    Frame j of the spectrogram is centred at ``first_centre + j * frame_hop``; starts lie in
    [-length, n_frames], i.e. within a spectrogram padded by `length` frames on both sides.
    """
    starts = _round_half_up((np.asarray(centres) - first_centre) / frame_hop - (length - 1) / 2.0)
    starts = np.clip(starts, -length, n_frames)
    return starts, first_centre + frame_hop * (starts + (length - 1) / 2.0)


def pad_frames(frames: np.ndarray, length: int, value: float) -> np.ndarray:
    """[N, B] spectrogram with `length` frames of `value` (silence) added at both ends."""
    pad = np.full((length, frames.shape[1]), value, dtype=frames.dtype)
    return np.concatenate([pad, frames, pad])


def gather_windows(padded: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """[len(starts), length, B] windows of a spectrogram padded by `length` frames."""
    return padded[(np.asarray(starts) + length)[:, None] + np.arange(length)[None, :]]


def pad_samples(samples: np.ndarray, window: int) -> np.ndarray:
    """Waveform with silence added: window // 2 samples before, enough after for a full last window."""
    return np.pad(np.asarray(samples, dtype=np.float32), (window // 2, window - window // 2 + 1))


def sample_window_starts(
    centres: np.ndarray, window: int, sample_rate: int, n_samples: int
) -> tuple[np.ndarray, np.ndarray]:
    """Start (in the `pad_samples` waveform) and true centre in seconds of each `window`-sample window."""
    lead = window // 2
    starts = _round_half_up(np.asarray(centres) * sample_rate - window / 2.0 + lead)
    starts = np.clip(starts, 0, n_samples + 1)  # the padded waveform ends n_samples + 1 after a full window
    return starts, (starts - lead + window / 2.0) / sample_rate
