"""Scoring per-frame prediction tables against the annotation files."""

from __future__ import annotations

import numpy as np
import pandas as pd

from vapipe.data.affwild2 import DatasetError, read_annotation
from vapipe.data.folds import is_kfold
from vapipe.evaluation.bootstrap import base_video_groups, paired_bootstrap, video_bootstrap
from vapipe.evaluation.metrics import va_scores

VOICED_SUFFIX = "_voiced"  # metrics row of a fold scored on its voiced segments (`score_voiced`)
INTERVAL_COLUMNS = [f"{name}_{end}" for name in ("valence", "arousal", "mean") for end in ("low", "high")]


def labelled_frames(predictions: pd.DataFrame, manifest: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictions, labels and trial of every frame, trial by trial in name order, frames in order;
    a trial whose predictions do not cover exactly its annotated frames is an error naming the file."""
    info = manifest.set_index("trial")
    pred_all, true_all, trials = [], [], []
    for trial, group in predictions.groupby("trial", sort=True):
        path = info.loc[trial, "annotation_path"]
        if not path:
            raise DatasetError(f"trial '{trial}' has no annotation file to score against")
        labels = read_annotation(path)
        frames = group["frame"].to_numpy()
        if len(frames) != len(labels) or np.any(np.sort(frames) != np.arange(1, len(labels) + 1)):
            raise DatasetError(f"{path}: predictions cover {len(frames)} frames, file has {len(labels)} rows")
        ordered = group.sort_values("frame")
        pred_all.append(ordered[["valence", "arousal"]].to_numpy())
        true_all.append(labels)
        trials.append(np.full(len(labels), trial, dtype=object))
    return np.concatenate(pred_all), np.concatenate(true_all), np.concatenate(trials)


def score_predictions(
    predictions: pd.DataFrame, manifest: pd.DataFrame, bootstrap=None, kept: dict[str, np.ndarray] | None = None
) -> dict[str, float]:
    """Pooled CCC of per-frame predictions over all valid frames of the trials they cover (only the
    frames `kept` {trial: bool [n_rows]} marks, when given); with a `vapipe.specs.BootstrapSpec`,
    also each score's interval over resampled base videos."""
    predictions, labels, trials = labelled_frames(predictions, manifest)
    if kept is not None:
        missing = sorted(set(trials) - set(kept))
        if missing:
            raise ValueError(f"no kept frames given for trial '{missing[0]}'")
        names = sorted(set(trials))  # labelled_frames' order
        keep = np.concatenate([np.asarray(kept[name], dtype=bool) for name in names])
        if len(keep) != len(labels):
            raise ValueError(f"kept frames cover {len(keep)} rows, the predictions {len(labels)}")
        predictions, labels, trials = predictions[keep], labels[keep], trials[keep]
    scores = va_scores(predictions, labels)
    if bootstrap is not None and bootstrap.resamples > 0:
        intervals = video_bootstrap(
            predictions,
            labels,
            base_video_groups(trials),
            resamples=bootstrap.resamples,
            seed=bootstrap.seed,
            level=bootstrap.level,
        )
        for name, interval in intervals.items():
            scores[f"{name}_low"], scores[f"{name}_high"] = interval.low, interval.high
    return scores


def score_voiced(
    upsampled_by_fold: dict[str, pd.DataFrame], manifest: pd.DataFrame, speech, mask_root, bootstrap=None
) -> pd.DataFrame:
    """One row per fold, '<fold>_voiced': the held-out CCC on the voiced segments only (`speech`, a
    `vapipe.features.mask_store.SpeechRule`), of the outputs brought to every frame and not smoothed.
    Dresvyanskiy et al.'s Table 2 scores their audio models on voiced windows, before post-processing."""
    info = manifest.set_index("trial")
    rows = []
    for fold, frames in upsampled_by_fold.items():
        heldout = frames[frames["set"] == "heldout"]
        kept = {
            trial: speech.frames(mask_root, trial, int(info.loc[trial, "n_rows"]), float(info.loc[trial, "fps"]))
            for trial in heldout["trial"].unique()
        }
        if not any(k.any() for k in kept.values()):
            raise ValueError(f"fold {fold}: no held-out trial has a voiced segment by {speech}")
        rows.append({"fold": f"{fold}{VOICED_SUFFIX}", **score_predictions(heldout, manifest, bootstrap, kept)})
    return pd.DataFrame(rows)


def compare_predictions(a: pd.DataFrame, b: pd.DataFrame, manifest: pd.DataFrame, bootstrap) -> dict:
    """Paired bootstrap of CCC(a) - CCC(b) over the same base videos; both must cover the same trials."""
    trials_a, trials_b = sorted(a["trial"].unique()), sorted(b["trial"].unique())
    if trials_a != trials_b:
        only = sorted(set(trials_a) ^ set(trials_b))[:3]
        raise ValueError(f"compared predictions cover different trials (e.g. {', '.join(only)})")
    pred_a, labels, trials = labelled_frames(a, manifest)
    pred_b, _, _ = labelled_frames(b, manifest)
    return paired_bootstrap(
        pred_a,
        pred_b,
        labels,
        base_video_groups(trials),
        resamples=bootstrap.resamples,
        seed=bootstrap.seed,
        level=bootstrap.level,
    )


def score_folds(frames_by_fold: dict[str, pd.DataFrame], manifest: pd.DataFrame, bootstrap=None) -> pd.DataFrame:
    """One row per fold (held-out CCC) plus 'kfold_pooled': all K folds' out-of-fold frames at once."""
    rows, out_of_fold = [], []
    for fold, frames in frames_by_fold.items():
        heldout = frames[frames["set"] == "heldout"]
        rows.append({"fold": fold, **score_predictions(heldout, manifest, bootstrap)})
        if is_kfold(fold):  # not official, nor a within-train fold (those all hold out Validation_Set)
            out_of_fold.append(heldout)
    if out_of_fold:
        rows.append({"fold": "kfold_pooled", **score_predictions(pd.concat(out_of_fold), manifest, bootstrap)})
    columns = ["fold", "valence", "arousal", "mean", "n_frames"]
    if bootstrap is not None and bootstrap.resamples > 0:
        columns += INTERVAL_COLUMNS
    return pd.DataFrame(rows, columns=columns)
