"""Mapping audio-backbone frames onto video frame times.

Video row i (0-based) spans [i / fps, (i + 1) / fps) seconds, with the container's true fps
(29.97 is not 30); a variable-rate video's row spans from its presentation timestamp to the next
(`vapipe.data.timing`). An audio backbone emits native frames at its own hop (20 ms for WavLM); each
native frame has a centre time. The feature of video row i is the mean of the native frames whose
centres fall in row i's span. A span that holds no centre (video faster than the audio hop) takes
the native frame nearest to the span's midpoint. Rows that start after the audio ends (annotation
files often have a row or two more than the video) repeat the last native frame and are marked
invalid, so they never pass for observed audio.
"""

from __future__ import annotations

import numpy as np

from vapipe.data.timing import grid_spans

frame_spans = grid_spans  # [i / fps, (i + 1) / fps) of a constant-rate video's rows


def native_frame_centres(n_frames: int, hop: int, receptive_field: int, sample_rate: int) -> np.ndarray:
    """Centre time of each output frame of a strided conv front end (e.g. wav2vec2: 320, 400)."""
    return (np.arange(n_frames) * hop + receptive_field / 2.0) / sample_rate


def pool_to_frames(
    native: np.ndarray,
    centres: np.ndarray,
    n_rows: int,
    fps: float,
    audio_seconds: float,
    spans: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Average native [M, D] features over each video row's span; returns ([n_rows, D], valid).
    `spans` ([start, end) per row, `vapipe.data.timing.row_spans`) replaces the i / fps grid of a
    variable-rate video."""
    native = np.asarray(native, dtype=np.float64)
    if len(native) != len(centres) or len(native) == 0:
        raise ValueError(f"pool_to_frames: {len(native)} native frames for {len(centres)} centres")
    starts, ends = spans if spans is not None else frame_spans(n_rows, fps)
    first = np.searchsorted(centres, starts, side="left")
    last = np.searchsorted(centres, ends, side="left")  # exclusive
    cumulative = np.concatenate([np.zeros((1, native.shape[1])), np.cumsum(native, axis=0)])
    counts = last - first
    pooled = np.empty((n_rows, native.shape[1]), dtype=np.float64)
    has = counts > 0
    pooled[has] = (cumulative[last[has]] - cumulative[first[has]]) / counts[has, None]
    if (~has).any():
        midpoints = (starts[~has] + ends[~has]) / 2.0
        nearest = np.clip(np.searchsorted(centres, midpoints), 1, len(centres) - 1)
        left_closer = (midpoints - centres[nearest - 1]) <= (centres[nearest] - midpoints)
        nearest = np.where(left_closer, nearest - 1, nearest)
        pooled[~has] = native[nearest]
    valid = starts < audio_seconds
    return pooled, valid
