"""Scoring per-frame prediction tables against the annotation files."""

from __future__ import annotations

import numpy as np
import pandas as pd

from vapipe.data.affwild2 import DatasetError, read_annotation
from vapipe.evaluation.metrics import va_scores


def score_predictions(predictions: pd.DataFrame, manifest: pd.DataFrame) -> dict[str, float]:
    """Pooled CCC of per-frame predictions over all valid frames of the trials they cover."""
    info = manifest.set_index("trial")
    pred_all, true_all = [], []
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
    return va_scores(np.concatenate(pred_all), np.concatenate(true_all))


def score_folds(frames_by_fold: dict[str, pd.DataFrame], manifest: pd.DataFrame) -> pd.DataFrame:
    """One row per fold (held-out CCC) plus 'kfold_pooled': all K folds' out-of-fold frames at once."""
    rows, out_of_fold = [], []
    for fold, frames in frames_by_fold.items():
        heldout = frames[frames["set"] == "heldout"]
        rows.append({"fold": fold, **score_predictions(heldout, manifest)})
        if fold != "official":
            out_of_fold.append(heldout)
    if out_of_fold:
        rows.append({"fold": "kfold_pooled", **score_predictions(pd.concat(out_of_fold), manifest)})
    return pd.DataFrame(rows, columns=["fold", "valence", "arousal", "mean", "n_frames"])
