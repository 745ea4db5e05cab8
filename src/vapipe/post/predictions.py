"""Bring raw model outputs to every frame of a trial and smooth them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from vapipe.data.timing import row_spans
from vapipe.post.signal import hamming_window_length, smooth_hamming, upsample_to_frames


def postprocess_trial(
    times: np.ndarray,
    values: np.ndarray,
    n_rows: int,
    fps: float,
    smoothing_seconds: float,
    frame_times: np.ndarray | None = None,
) -> np.ndarray:
    """Upsample [N, 2] outputs at `times` to rows 0 .. n_rows - 1 (at `frame_times`, i / fps by
    default), then Hamming-smooth them (a window of about `smoothing_seconds` at the mean rate)."""
    frame_times = np.arange(n_rows) / fps if frame_times is None else frame_times
    dense = upsample_to_frames(times, values, frame_times)
    if smoothing_seconds > 0:
        dense = smooth_hamming(dense, hamming_window_length(fps, smoothing_seconds))
    return dense


def postprocess_predictions(raw: pd.DataFrame, manifest: pd.DataFrame, smoothing_seconds: float) -> pd.DataFrame:
    """Per-frame table trial, frame (1-based), valence, arousal, set from raw (trial, time, ...)."""
    info = manifest.set_index("trial")
    out = []
    for (trial, subset), group in raw.groupby(["trial", "set"], sort=True):
        row = info.loc[trial]
        frame_times = row_spans(row)[0] if bool(row.get("variable_rate", False)) else None
        dense = postprocess_trial(
            group["time"].to_numpy(),
            group[["valence", "arousal"]].to_numpy(),
            int(row["n_rows"]),
            float(row["fps"]),
            smoothing_seconds,
            frame_times,
        )
        out.append(
            pd.DataFrame(
                {
                    "trial": trial,
                    "frame": np.arange(1, len(dense) + 1),
                    "valence": dense[:, 0],
                    "arousal": dense[:, 1],
                    "set": subset,
                }
            )
        )
    return pd.concat(out, ignore_index=True)


def smooth_frames(frames: pd.DataFrame, manifest: pd.DataFrame, smoothing_seconds: float) -> pd.DataFrame:
    """Hamming-smooth each trial of a per-frame table at its video's frame rate (the final step,
    after any late fusion of upsampled tables). Frames must be consecutive from 1 per trial."""
    if smoothing_seconds <= 0:
        return frames.copy()
    fps = manifest.set_index("trial")["fps"]
    out = []
    for (trial, _), group in frames.groupby(["trial", "set"], sort=True):
        group = group.sort_values("frame")
        if not np.array_equal(group["frame"].to_numpy(), np.arange(1, len(group) + 1)):
            raise ValueError(f"trial '{trial}': frames are not 1 .. {len(group)}, cannot smooth")
        window = hamming_window_length(float(fps.loc[trial]), smoothing_seconds)
        smoothed = group.copy()
        smoothed[["valence", "arousal"]] = smooth_hamming(group[["valence", "arousal"]].to_numpy(), window)
        out.append(smoothed)
    return pd.concat(out, ignore_index=True)
