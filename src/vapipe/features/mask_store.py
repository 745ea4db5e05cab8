"""Mask stores: the per-frame voice-activity and mouth-open masks as Stage 2 reads them, and the
rule that turns them into speech frames (`SPEECH_RULES`, `read_speech`).

Kept apart from `vapipe.features.masks` (which runs silero-vad and MediaPipe) so that training
reads the masks without importing Stage 1's detectors; see that module for what a mask holds.
"""

from __future__ import annotations

from dataclasses import dataclass
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


# How a frame is judged speech for `train_on: speech` (TrainSpec.speech_rule), and the masks each
# rule reads. "mouth" is Dresvyanskiy et al.'s (sec. 4.2.1): the target's mouth is open, since the
# audio may hold other speakers; "vad_or_mouth" also counts voice activity on the separated vocals.
SPEECH_RULES = {"mouth": ("mouth",), "vad_or_mouth": ("vad", "mouth")}


def speech_frames(
    vad: np.ndarray | None,
    mouth: np.ndarray,
    vad_valid: np.ndarray | None = None,
    mouth_valid: np.ndarray | None = None,
    rule: str = "mouth",
) -> np.ndarray:
    """bool [T]: an open mouth ("mouth"), or voice activity or an open mouth ("vad_or_mouth");
    an unknown frame counts as neither."""
    if rule not in SPEECH_RULES:
        raise ValueError(f"unknown speech rule '{rule}'; known: {', '.join(SPEECH_RULES)}")
    mouth = np.asarray(mouth, dtype=bool)
    if mouth_valid is not None:
        mouth = mouth & np.asarray(mouth_valid, dtype=bool)
    if rule == "mouth":
        return mouth
    if vad is None:
        raise ValueError("speech_frames: rule 'vad_or_mouth' needs the vad mask")
    vad = np.asarray(vad, dtype=bool)
    if vad.shape != mouth.shape:
        raise ValueError(f"speech_frames: vad {vad.shape} and mouth {mouth.shape} differ")
    if vad_valid is not None:
        vad = vad & np.asarray(vad_valid, dtype=bool)
    return vad | mouth


def runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, length, value) of each run of equal values of a bool [T]."""
    mask = np.asarray(mask, dtype=bool)
    if not len(mask):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool)
    starts = np.concatenate([[0], np.flatnonzero(mask[1:] != mask[:-1]) + 1])
    lengths = np.diff(np.concatenate([starts, [len(mask)]]))
    return starts, lengths, mask[starts]


def voiced_segments(speech: np.ndarray, fps: float, gap_seconds: float = 0.5, min_seconds: float = 2.0) -> np.ndarray:
    """Dresvyanskiy et al.'s voiced segments (their audio data loader): every run of non-speech
    frames shorter than `gap_seconds` (the mouth closing between syllables) counts as speech,
    then every speech run shorter than `min_seconds` is dropped (no window is formed on it).
    Durations are in frames of round(fps), as the authors count them."""
    frames_per_second = max(1, int(np.floor(fps + 0.5)))
    gap, shortest = gap_seconds * frames_per_second, min_seconds * frames_per_second
    out = np.asarray(speech, dtype=bool).copy()
    starts, lengths, values = runs(out)
    for start, length in zip(starts[~values], lengths[~values]):
        if length < gap:
            out[start : start + length] = True
    starts, lengths, values = runs(out)
    for start, length in zip(starts[values], lengths[values]):
        if length < shortest:
            out[start : start + length] = False
    return out


@dataclass(frozen=True)
class SpeechRule:
    """Which frames are speech for `train_on: speech`, and the voiced segments they form:
    `rule` (SPEECH_RULES) per frame, then `voiced_segments` with `gap_seconds` and `min_seconds`
    (0 and 0: the per-frame rule alone)."""

    rule: str = "mouth"
    gap_seconds: float = 0.5
    min_seconds: float = 2.0

    def __post_init__(self):
        if self.rule not in SPEECH_RULES:
            raise ValueError(f"unknown speech rule '{self.rule}'; known: {', '.join(SPEECH_RULES)}")
        if self.gap_seconds < 0 or self.min_seconds < 0:
            raise ValueError(
                f"speech gap and minimum segment must be >= 0 s, got {self.gap_seconds}, {self.min_seconds}"
            )

    def frames(self, mask_root: str | Path, trial: str, n_rows: int, fps: float) -> np.ndarray:
        """bool [n_rows]: the trial's speech frames, in voiced segments."""
        return voiced_segments(
            read_speech(mask_root, trial, n_rows, self.rule), fps, self.gap_seconds, self.min_seconds
        )


def read_speech(mask_root: str | Path, trial: str, n_rows: int, rule: str = "mouth") -> np.ndarray:
    """bool [n_rows]: a trial's speech frames by `rule`, from the mask stores that rule reads
    (each must have n_rows rows)."""
    if rule not in SPEECH_RULES:
        raise ValueError(f"unknown speech rule '{rule}'; known: {', '.join(SPEECH_RULES)}")
    masks = {}
    for kind in SPEECH_RULES[rule]:
        path = mask_path(mask_root, kind, trial)
        store = read_mask(path)
        if len(store.valid) != n_rows:
            raise DatasetError(f"{path}: {len(store.valid)} rows, manifest says {n_rows}")
        masks[kind] = mask_binary(store)
    return speech_frames(masks.get("vad"), masks["mouth"], rule=rule)
