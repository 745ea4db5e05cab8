"""Post-processing of frame-level predictions: upsampling to every frame and Hamming smoothing."""

from __future__ import annotations

import numpy as np


def upsample_to_frames(times: np.ndarray, values: np.ndarray, frame_times: np.ndarray) -> np.ndarray:
    """Linearly interpolate [N, C] values at `times` onto `frame_times`, holding the edge values.

    Used for low-rate (e.g. 5 FPS) model outputs; at the native rate it is the identity.
    """
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if len(times) != len(values) or len(times) == 0:
        raise ValueError(f"upsample_to_frames: {len(times)} times for {len(values)} values")
    if np.any(np.diff(times) <= 0):
        raise ValueError("upsample_to_frames: times must increase strictly")
    # np.interp holds the first/last value outside [times[0], times[-1]].
    return np.stack([np.interp(frame_times, times, values[:, c]) for c in range(values.shape[1])], axis=1)


def hamming_window_length(fps: float, seconds: float = 0.5) -> int:
    """Odd window length of about `seconds` at `fps` (Dresvyanskiy et al. use fps // 2 frames)."""
    length = max(1, int(round(fps * seconds)))
    return length if length % 2 == 1 else length + 1


def smooth_hamming(values: np.ndarray, window: int) -> np.ndarray:
    """Smooth [N, C] (or [N]) along time with a normalised Hamming window, edge-padded.

    Edge padding keeps both ends at their level; a plain 'same' convolution drags them to zero.
    """
    values = np.asarray(values, dtype=np.float64)
    squeeze = values.ndim == 1
    if squeeze:
        values = values[:, None]
    if window <= 1 or len(values) == 0:
        return values[:, 0] if squeeze else values
    kernel = np.hamming(window)
    kernel /= kernel.sum()
    half = window // 2
    padded = np.pad(values, ((half, window - 1 - half), (0, 0)), mode="edge")
    smoothed = np.stack([np.convolve(padded[:, c], kernel, mode="valid") for c in range(values.shape[1])], axis=1)
    return smoothed[:, 0] if squeeze else smoothed
