"""Fixed-length training windows over a sequence."""

from __future__ import annotations


def window_starts(n_rows: int, window: int, stride: int) -> list[int]:
    """Starts of windows of `window` rows every `stride` rows; the last one ends at the sequence end.

    A sequence shorter than `window` gets one window starting at 0 (the batch pads it).
    """
    if window <= 0 or stride <= 0:
        raise ValueError(f"window ({window}) and stride ({stride}) must be positive")
    if n_rows <= window:
        return [0]
    starts = list(range(0, n_rows - window + 1, stride))
    if starts[-1] + window < n_rows:
        starts.append(n_rows - window)
    return starts
