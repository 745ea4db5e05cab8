"""A fold's training data: cached features loaded once into memory, cleaned and normalised."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from vapipe.data.affwild2 import DatasetError, read_annotation
from vapipe.features.cache import read_store, store_path


@dataclass
class TrialData:
    """One trial's model inputs {feature name: [T, D]}, labels [T, 2] (None for test) and fps."""

    trial: str
    fps: float
    inputs: dict[str, np.ndarray]
    valid: dict[str, np.ndarray]
    labels: np.ndarray | None

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


def load_trial(row, feature_names: list[str], feature_root: str | Path) -> TrialData:
    """Read a manifest row's stores and labels; every array must have the trial's n_rows."""
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
    return TrialData(row.trial, float(row.fps), inputs, valid, labels)


def load_trials(
    manifest: pd.DataFrame, trials: list[str], feature_names: list[str], feature_root: str | Path
) -> list[TrialData]:
    """Load the named trials, in the given order."""
    rows = manifest.set_index("trial")
    missing = [t for t in trials if t not in rows.index]
    if missing:
        raise DatasetError(f"manifest has no trial '{missing[0]}'")
    return [load_trial(row, feature_names, feature_root) for row in rows.loc[trials].reset_index().itertuples()]


class Standardizer:
    """Per-feature z-score fitted on the valid frames of training trials only."""

    def fit(self, trials: list[TrialData]) -> "Standardizer":
        self.mean_, self.scale_ = {}, {}
        for name in trials[0].inputs:
            stacked = np.concatenate([t.inputs[name][t.valid[name]] for t in trials if t.valid[name].any()])
            self.mean_[name] = stacked.mean(axis=0)
            self.scale_[name] = stacked.std(axis=0) + 1e-6
        return self

    def transform(self, trial: TrialData) -> dict[str, np.ndarray]:
        """Normalised features with the valid mask appended as a last channel."""
        return {
            name: np.concatenate(
                [(x - self.mean_[name]) / self.scale_[name], trial.valid[name][:, None]], axis=1
            ).astype(np.float32)
            for name, x in trial.inputs.items()
        }

    def state_dict(self) -> dict:
        return {"mean": self.mean_, "scale": self.scale_}

    def load_state_dict(self, state: dict) -> "Standardizer":
        self.mean_, self.scale_ = state["mean"], state["scale"]
        return self
