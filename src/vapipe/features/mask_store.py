"""Mask stores: the per-frame voice-activity and mouth-open masks as Stage 2 reads them.

Kept apart from `vapipe.features.masks` (which runs silero-vad and MediaPipe) so that training
reads the masks without importing Stage 1's detectors; see that module for what a mask holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vapipe.data.affwild2 import DatasetError
from vapipe.features.cache import FeatureStore, read_store, write_store


def mask_path(mask_root: str | Path, mask: str, trial: str) -> Path:
    """Where the store of (mask, trial) lives."""
    return Path(mask_root) / mask / f"{trial}.zarr"


def as_stored(measure: np.ndarray) -> np.ndarray:
    """The measure as the store keeps it (float16), so thresholds agree before and after writing."""
    return np.asarray(measure, dtype=np.float16).astype(np.float32)


def write_mask(
    path: str | Path,
    mask: str,
    measure: np.ndarray,
    valid: np.ndarray,
    threshold: float,
    attrs: dict[str, Any],
) -> None:
    """Write a mask store: the measure as [T, 1], unknown rows zeroed, the threshold in attrs."""
    measure = np.where(valid, as_stored(measure), 0.0).astype(np.float32)
    write_store(path, measure[:, None], valid, {**attrs, "mask": mask, "threshold": float(threshold)})


def read_mask(path: str | Path) -> FeatureStore:
    """Load a complete mask store (raises IncompleteStoreError otherwise)."""
    store = read_store(path)
    if "mask" not in store.attrs:
        raise DatasetError(f"{path}: a feature store, not a mask store")
    return store


def mask_binary(store: FeatureStore) -> np.ndarray:
    """bool [T]: the measure at or above the store's threshold, and known."""
    return store.valid & (store.features[:, 0] >= store.attrs["threshold"])


def speech_frames(
    vad: np.ndarray,
    mouth: np.ndarray,
    vad_valid: np.ndarray | None = None,
    mouth_valid: np.ndarray | None = None,
) -> np.ndarray:
    """bool [T]: voice activity or an open mouth; an unknown frame counts as neither."""
    vad, mouth = np.asarray(vad, dtype=bool), np.asarray(mouth, dtype=bool)
    if vad.shape != mouth.shape:
        raise ValueError(f"speech_frames: vad {vad.shape} and mouth {mouth.shape} differ")
    if vad_valid is not None:
        vad = vad & np.asarray(vad_valid, dtype=bool)
    if mouth_valid is not None:
        mouth = mouth & np.asarray(mouth_valid, dtype=bool)
    return vad | mouth
