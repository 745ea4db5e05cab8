"""Clips of face crops centred on each video row, for video backbones (R3D-18 in IACA).

The clip of row i holds rows ``i + stride * (k - length // 2)`` for k = 0 .. length - 1 (for an
even length the row sits just after the middle), clamped to the trial. A clip row without a crop
takes the nearest row that has one (the earlier on a tie), so a short occlusion does not blank a
clip; the row's own feature is valid only when its own crop exists.
"""

from __future__ import annotations

import numpy as np


def clip_offsets(length: int, stride: int) -> np.ndarray:
    """Row offsets of a clip's frames relative to its centre row."""
    return (np.arange(length) - length // 2) * stride


def nearest_available(wanted: np.ndarray, available: np.ndarray) -> np.ndarray:
    """Index into sorted `available` of the entry nearest each wanted row (earlier on a tie)."""
    if len(available) == 0:
        raise ValueError("nearest_available: no rows with a crop")
    right = np.clip(np.searchsorted(available, wanted, side="left"), 0, len(available) - 1)
    left = np.clip(right - 1, 0, len(available) - 1)
    take_left = np.abs(wanted - available[left]) <= np.abs(available[right] - wanted)
    return np.where(take_left, left, right)


def clip_indices(rows: np.ndarray, available: np.ndarray, n_rows: int, length: int, stride: int) -> np.ndarray:
    """[len(rows), length] indices into `available` (sorted rows with crops) of each row's clip."""
    wanted = np.clip(np.asarray(rows)[:, None] + clip_offsets(length, stride)[None, :], 0, n_rows - 1)
    return nearest_available(wanted, np.asarray(available))
