"""A fold's training data: cached features loaded once into memory, cleaned and normalised."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from vapipe.data.affwild2 import DatasetError, read_annotation
from vapipe.data.timing import row_spans
from vapipe.features.cache import read_store, store_dim, store_path
from vapipe.features.mask_store import SpeechRule


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
    augmented: dict[str, np.ndarray] | None = None  # training copies [N, T, D] (vapipe.training.augmented)

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


def load_trial(
    row,
    feature_names: list[str],
    feature_root: str | Path,
    mask_root: str | Path | None = None,
    speech: SpeechRule | None = None,
    dtype=np.float32,
    into: dict[str, np.ndarray] | None = None,
) -> TrialData:
    """Read a manifest row's stores and labels (and speech masks); each must have n_rows rows.

    Features come as `dtype` (float16: as stored); `into` {feature: [n_rows, D] array} receives
    them in place (a fold's rows, `load_groups`), and the trial's inputs are those arrays."""
    inputs, valid = {}, {}
    for name in feature_names:
        path = store_path(feature_root, name, row.trial)
        store = read_store(path, dtype)
        if len(store.features) != row.n_rows:
            raise DatasetError(f"{path}: {len(store.features)} rows, manifest says {row.n_rows}")
        filled = fill_invalid(store.features, store.valid)
        if into is not None:
            if into[name].shape != filled.shape:
                raise DatasetError(
                    f"{path}: {filled.shape[1]} columns, the fold's other '{name}' stores have {into[name].shape[1]}"
                )
            into[name][...] = filled
            filled = into[name]
        inputs[name] = filled
        valid[name] = store.valid
    labels = read_annotation(row.annotation_path) if row.annotation_path else None
    if labels is not None and len(labels) != row.n_rows:
        raise DatasetError(f"{row.annotation_path}: {len(labels)} rows, manifest says {row.n_rows}")
    speech_frames = None
    if mask_root is not None:
        speech_frames = (speech or SpeechRule()).frames(mask_root, row.trial, row.n_rows, float(row.fps))
    times = row_spans(row)[0] if bool(getattr(row, "variable_rate", False)) else None  # None: i / fps
    return TrialData(row.trial, float(row.fps), inputs, valid, labels, speech=speech_frames, times=times)


def load_trials(
    manifest: pd.DataFrame,
    trials: list[str],
    feature_names: list[str],
    feature_root: str | Path,
    mask_root: str | Path | None = None,
    speech: SpeechRule | None = None,
    dtype=np.float32,
) -> list[TrialData]:
    """Load the named trials, in the given order (with their speech frames by `speech` if
    `mask_root`; Dresvyanskiy et al.'s rule by default); their features are row views of one array
    per feature (`load_groups`)."""
    groups = ("trials",) if mask_root is not None else ()
    return load_groups(manifest, {"trials": trials}, feature_names, feature_root, mask_root, speech, groups, dtype)[
        "trials"
    ]


def load_groups(
    manifest: pd.DataFrame,
    groups: dict[str, list[str]],
    feature_names: list[str],
    feature_root: str | Path,
    mask_root: str | Path | None = None,
    speech: SpeechRule | None = None,
    speech_groups: tuple[str, ...] = (),
    dtype=np.float16,
) -> dict[str, list[TrialData]]:
    """{group: its trials} for groups of trial names (e.g. training, validation and held-out), the
    trials of `speech_groups` with their speech frames (from `mask_root`, by `speech`;
    Dresvyanskiy et al.'s rule by default).

    Every feature of every trial is a row view of one [rows of all groups, D] array per feature,
    allocated once and filled store by store: the fold is held once, as `dtype` (float16, as the
    stores hold it, by default), and the trainer gathers its windows from those arrays in place
    (`vapipe.training.windows.stack_rows`)."""
    rows = manifest.set_index("trial")
    names = [t for trials in groups.values() for t in trials]
    missing = [t for t in names if t not in rows.index]
    if missing:
        raise DatasetError(f"manifest has no trial '{missing[0]}'")
    if not names:
        return {group: [] for group in groups}
    selected = rows.loc[names].reset_index()
    starts = np.concatenate([[0], np.cumsum(selected["n_rows"].to_numpy(np.int64))])
    fold = {
        name: np.empty((starts[-1], store_dim(store_path(feature_root, name, names[0]))), dtype)
        for name in feature_names
    }
    loaded, position = {}, 0
    for group, trials in groups.items():
        speech_root = mask_root if group in speech_groups else None
        loaded[group] = []
        for row in selected.iloc[position : position + len(trials)].itertuples():
            into = {name: fold[name][starts[position] : starts[position + 1]] for name in feature_names}
            loaded[group].append(load_trial(row, feature_names, feature_root, speech_root, speech, dtype, into))
            position += 1
    return loaded


NORMALIZATIONS = ("zscore", "minmax", "trial_minmax")
FIT_CHUNK_ROWS = 4096  # rows widened to float64 at a time while fitting


class RunningMoments:
    """Count, mean, sum of squared deviations, min and max of rows added chunk by chunk, in float64.

    Each chunk's own mean and squared deviations are merged with the running ones by Chan, Golub
    and LeVeque's pairwise update, so the variance needs no second pass and does not cancel
    (sum of squares minus n times the squared mean would, for features far from zero)."""

    def __init__(self, dim: int):
        self.count = 0
        self.mean = np.zeros(dim)
        self.squares = np.zeros(dim)
        self.low = np.full(dim, np.inf)
        self.high = np.full(dim, -np.inf)

    def add(self, rows: np.ndarray) -> None:
        if not len(rows):
            return
        x = rows.astype(np.float64)
        n, mean = len(x), x.mean(axis=0)
        total = self.count + n
        delta = mean - self.mean
        self.squares += ((x - mean) ** 2).sum(axis=0) + delta**2 * (self.count * n / total)
        self.mean += delta * (n / total)
        self.count = total
        np.minimum(self.low, x.min(axis=0), out=self.low)
        np.maximum(self.high, x.max(axis=0), out=self.high)

    def centre_scale(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """zscore: (mean, std + 1e-6); minmax: (mid-range, half-range + 1e-6), to [-1, 1]."""
        if kind == "zscore":
            return self.mean.copy(), np.sqrt(self.squares / self.count) + 1e-6
        return (self.low + self.high) / 2, (self.high - self.low) / 2 + 1e-6


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

    def fit(self, trials: list[TrialData]) -> Standardizer:
        """Statistics of the training trials' valid rows, from running float64 sums (`RunningMoments`):
        no copy of the rows is made, whatever their dtype."""
        self.mean_, self.scale_ = {}, {}
        if self.kind == "trial_minmax":
            return self
        for name in trials[0].inputs:
            moments = RunningMoments(trials[0].inputs[name].shape[1])
            for t in trials:
                x, valid = t.inputs[name], t.valid[name]
                for start in range(0, len(x), FIT_CHUNK_ROWS):
                    moments.add(x[start : start + FIT_CHUNK_ROWS][valid[start : start + FIT_CHUNK_ROWS]])
            if not moments.count:
                raise ValueError(f"feature '{name}': no valid frame in the training trials to fit the normalisation on")
            self.mean_[name], self.scale_[name] = moments.centre_scale(self.kind)
        return self

    def statistics(self, trial: TrialData) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{feature: (centre, scale)} float32 [D] that normalise `trial`: (x - centre) / scale."""
        out = {}
        for name, x in trial.inputs.items():
            if self.kind != "trial_minmax":
                out[name] = (np.float32(self.mean_[name]), np.float32(self.scale_[name]))
                continue
            rows = x[trial.valid[name]]
            if not len(rows):
                out[name] = (np.zeros(x.shape[1], np.float32), np.ones(x.shape[1], np.float32))
                continue
            low, high = rows.min(axis=0).astype(np.float32), rows.max(axis=0).astype(np.float32)
            out[name] = ((low + high) / 2, (high - low) / 2 + np.float32(1e-6))
        return out

    def transform(self, trial: TrialData) -> dict[str, np.ndarray]:
        """Normalised features (float32) with the valid mask appended as a last channel: what
        `vapipe.training.windows.gather_windows` makes of a window, for a whole trial at once."""
        out = {}
        for name, (centre, scale) in self.statistics(trial).items():
            x = (trial.inputs[name].astype(np.float32) - centre) / scale
            out[name] = np.concatenate([x, trial.valid[name][:, None]], axis=1).astype(np.float32)
        return out

    def state_dict(self) -> dict:
        return {"kind": self.kind, "mean": self.mean_, "scale": self.scale_}

    def load_state_dict(self, state: dict) -> Standardizer:
        self.kind = state.get("kind", "zscore")
        self.mean_, self.scale_ = state["mean"], state["scale"]
        return self
