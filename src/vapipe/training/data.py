"""A fold's training data: cached features loaded once into memory, cleaned and normalised."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from vapipe.data.affwild2 import DatasetError, read_annotation
from vapipe.data.timing import row_spans
from vapipe.features.cache import read_store, store_path


@dataclass
class TrialData:
    """One trial's model inputs {feature name: [T, D]}, labels [T, 2] (None for test) and rate.

    `fps` is the rate of the rows (the video's, or a lower one after `resample_trial`); `times`
    the time of each row in seconds (default i / fps); `speech` the frames that are speech (voice
    activity or mouth open), when a system trains on speech frames only.
    """

    trial: str
    fps: float
    inputs: dict[str, np.ndarray]
    valid: dict[str, np.ndarray]
    labels: np.ndarray | None
    speech: np.ndarray | None = None
    times: np.ndarray | None = None

    def __post_init__(self):
        if self.times is None:
            self.times = np.arange(self.n_rows) / self.fps

    @property
    def n_rows(self) -> int:
        return len(next(iter(self.inputs.values())))


def fill_invalid(features: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Replace invalid rows by the nearest earlier valid row (the next one before the first)."""
    if valid.all() or not valid.any():
        return features if valid.any() else np.zeros_like(features)
    index = np.where(valid, np.arange(len(valid)), -1)
    np.maximum.accumulate(index, out=index)
    index[index < 0] = np.argmax(valid)
    return features[index]


def load_speech(trial: str, n_rows: int, mask_root: str | Path) -> np.ndarray:
    """Speech frames of a trial: voice activity or mouth open (see vapipe.features.masks)."""
    from vapipe.features.mask_store import mask_binary, mask_path, read_mask, speech_frames

    masks = {}
    for kind in ("vad", "mouth"):
        path = mask_path(mask_root, kind, trial)
        masks[kind] = read_mask(path)
        if len(masks[kind].valid) != n_rows:
            raise DatasetError(f"{path}: {len(masks[kind].valid)} rows, manifest says {n_rows}")
    return speech_frames(mask_binary(masks["vad"]), mask_binary(masks["mouth"]))


def load_trial(
    row, feature_names: list[str], feature_root: str | Path, mask_root: str | Path | None = None
) -> TrialData:
    """Read a manifest row's stores and labels (and speech masks); each must have n_rows rows."""
    inputs, valid = {}, {}
    for name in feature_names:
        path = store_path(feature_root, name, row.trial)
        store = read_store(path)
        if len(store.features) != row.n_rows:
            raise DatasetError(f"{path}: {len(store.features)} rows, manifest says {row.n_rows}")
        inputs[name] = fill_invalid(store.features, store.valid)
        valid[name] = store.valid
    labels = read_annotation(row.annotation_path) if row.annotation_path else None
    if labels is not None and len(labels) != row.n_rows:
        raise DatasetError(f"{row.annotation_path}: {len(labels)} rows, manifest says {row.n_rows}")
    speech = load_speech(row.trial, row.n_rows, mask_root) if mask_root is not None else None
    times = row_spans(row)[0] if bool(getattr(row, "variable_rate", False)) else None  # None: i / fps
    return TrialData(row.trial, float(row.fps), inputs, valid, labels, speech=speech, times=times)


def load_trials(
    manifest: pd.DataFrame,
    trials: list[str],
    feature_names: list[str],
    feature_root: str | Path,
    mask_root: str | Path | None = None,
) -> list[TrialData]:
    """Load the named trials, in the given order (with their speech frames if `mask_root`)."""
    rows = manifest.set_index("trial")
    missing = [t for t in trials if t not in rows.index]
    if missing:
        raise DatasetError(f"manifest has no trial '{missing[0]}'")
    return [
        load_trial(row, feature_names, feature_root, mask_root) for row in rows.loc[trials].reset_index().itertuples()
    ]


NORMALIZATIONS = ("zscore", "minmax", "trial_minmax")


class Standardizer:
    """Per-feature normalisation, fitted on the valid frames of training trials only.

    ``zscore`` (default) and ``minmax`` (to [-1, 1]) use statistics of the training trials;
    ``trial_minmax`` rescales each trial by its own valid frames' min and max (Dresvyanskiy et
    al. try it), so it has nothing to fit. The valid mask is appended as a last channel.
    """

    def __init__(self, kind: str = "zscore"):
        if kind not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization '{kind}'; known: {', '.join(NORMALIZATIONS)}")
        self.kind = kind
        self.mean_, self.scale_ = {}, {}

    @staticmethod
    def _centre_scale(x: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
        if kind == "zscore":
            return x.mean(axis=0), x.std(axis=0) + 1e-6
        low, high = x.min(axis=0), x.max(axis=0)
        return (low + high) / 2, (high - low) / 2 + 1e-6

    def fit(self, trials: list[TrialData]) -> Standardizer:
        self.mean_, self.scale_ = {}, {}
        if self.kind == "trial_minmax":
            return self
        for name in trials[0].inputs:
            stacked = np.concatenate([t.inputs[name][t.valid[name]] for t in trials if t.valid[name].any()])
            self.mean_[name], self.scale_[name] = self._centre_scale(stacked, self.kind)
        return self

    def transform(self, trial: TrialData) -> dict[str, np.ndarray]:
        """Normalised features with the valid mask appended as a last channel."""
        out = {}
        for name, x in trial.inputs.items():
            valid = trial.valid[name]
            if self.kind == "trial_minmax":
                centre, scale = self._centre_scale(x[valid], "minmax") if valid.any() else (0.0, 1.0)
            else:
                centre, scale = self.mean_[name], self.scale_[name]
            out[name] = np.concatenate([(x - centre) / scale, valid[:, None]], axis=1).astype(np.float32)
        return out

    def state_dict(self) -> dict:
        return {"kind": self.kind, "mean": self.mean_, "scale": self.scale_}

    def load_state_dict(self, state: dict) -> Standardizer:
        self.kind = state.get("kind", "zscore")
        self.mean_, self.scale_ = state["mean"], state["scale"]
        return self
