"""Per-frame prediction tables for late fusion: aligning base models, collecting folds.

A per-frame table (``vapipe.post.predictions``) has columns trial, frame (1-based), valence,
arousal, set. Fusion works on frame-rate tables, i.e. after upsampling and before the final
smoothing (issue 5): the base models' tables are made with ``smoothing_seconds = 0`` and the fused
table is smoothed afterwards.

Fold handling: the K fold models' held-out frames together are the out-of-fold predictions on
which fusion is fitted (`out_of_fold_predictions`); their test predictions are either averaged
(`average_folds`) or chosen per target by held-out CCC (`targetwise_fold_selection`, SAGE,
paper 000, sec. 4.3.2).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from vapipe import TARGETS
from vapipe.data.affwild2 import DatasetError, read_annotation
from vapipe.data.folds import OFFICIAL
from vapipe.errors import InputError

KEYS = ["trial", "frame"]


def _indexed(table: pd.DataFrame, name: str, what: str) -> pd.DataFrame:
    missing = [c for c in (*KEYS, *TARGETS) if c not in table.columns]
    if missing:
        raise InputError(f"{what} '{name}': prediction table lacks column(s) {', '.join(missing)}")
    indexed = table.set_index(KEYS)
    duplicated = indexed.index.duplicated()
    if duplicated.any():
        trial, frame = indexed.index[duplicated][0]
        raise InputError(f"{what} '{name}': frame {frame} of trial '{trial}' appears more than once")
    return indexed


def align_predictions(tables: Mapping[str, pd.DataFrame], what: str = "model") -> tuple[pd.DataFrame, np.ndarray]:
    """(keys [N] trial, frame(, set) sorted by trial then frame, preds [N, M, 2]) of M tables.

    Every table must predict exactly the same (trial, frame) pairs: a frame that one table has and
    another lacks is an InputError naming both and the trial, never a silent inner join. The set
    column, where present, must agree too. ``what`` names the tables in messages ("model", "fold").
    """
    if not tables:
        raise ValueError(f"align_predictions: no {what} tables given")
    names = list(tables)
    indexed = {name: _indexed(tables[name], name, what) for name in names}
    union = indexed[names[0]].index
    for name in names[1:]:
        union = union.union(indexed[name].index)
    union = union.sort_values()
    for name in names:
        absent = union.difference(indexed[name].index)
        if len(absent):
            trial, frame = absent[0]
            owner = next(n for n in names if (trial, frame) in indexed[n].index)
            n_in_trial = int((absent.get_level_values("trial") == trial).sum())
            raise InputError(
                f"{what} '{name}' lacks {n_in_trial} frame(s) of trial '{trial}' that {what} "
                f"'{owner}' predicts (first: frame {frame}); all {what}s must cover the same frames"
            )
    keys = union.to_frame(index=False)
    keys["frame"] = keys["frame"].astype(np.int64)
    with_set = [n for n in names if "set" in indexed[n].columns]
    if with_set:
        reference = indexed[with_set[0]]["set"].reindex(union).to_numpy()
        for name in with_set[1:]:
            other = indexed[name]["set"].reindex(union).to_numpy()
            if (other != reference).any():
                i = int(np.argmax(other != reference))
                raise InputError(
                    f"{what} '{name}': frame {union[i][1]} of trial '{union[i][0]}' is in set "
                    f"'{other[i]}', {what} '{with_set[0]}' has it in '{reference[i]}'"
                )
        keys["set"] = reference
    preds = np.stack([indexed[n][list(TARGETS)].reindex(union).to_numpy(dtype=np.float64) for n in names], axis=1)
    return keys, preds


def fused_table(keys: pd.DataFrame, values: np.ndarray) -> pd.DataFrame:
    """Per-frame table (trial, frame, valence, arousal(, set)) from `align_predictions` keys and [N, 2]."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(keys), 2):
        raise ValueError(f"fused_table: expected values of shape ({len(keys)}, 2), got {values.shape}")
    out = keys[KEYS].copy()
    out["valence"], out["arousal"] = values[:, 0], values[:, 1]
    if "set" in keys.columns:
        out["set"] = keys["set"].to_numpy()
    return out.reset_index(drop=True)


def frame_labels(keys: pd.DataFrame, manifest: pd.DataFrame) -> np.ndarray:
    """[N, 2] label of each (trial, frame) of ``keys`` from the manifest's annotation files (-5 kept)."""
    paths = manifest.set_index("trial")["annotation_path"]
    labels = np.empty((len(keys), 2), dtype=np.float64)
    for trial, rows in keys.groupby("trial", sort=False).indices.items():
        path = paths.get(trial)
        if not isinstance(path, str) or not path:
            raise DatasetError(f"trial '{trial}' has no annotation file to fuse against")
        annotation = read_annotation(path)
        frames = keys["frame"].to_numpy()[rows]
        if frames.min() < 1 or frames.max() > len(annotation):
            raise DatasetError(f"{path}: {len(annotation)} rows, but predictions reach frame {frames.max()}")
        labels[rows] = annotation[frames - 1]
    return labels


def out_of_fold_predictions(frames_by_fold: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Held-out frames of the K folds together (the official fold left out): one prediction per frame.

    These are the frames fusion is fitted on: each was predicted by a model that never saw it.
    """
    heldout = [
        frames[frames["set"] == "heldout"].assign(fold=fold)
        for fold, frames in frames_by_fold.items()
        if fold != OFFICIAL
    ]
    if not heldout:
        raise ValueError("out_of_fold_predictions: no K-fold tables given (only 'official' or none)")
    table = pd.concat(heldout, ignore_index=True)
    twice = table.duplicated(KEYS)
    if twice.any():
        trial = table.loc[twice, "trial"].iloc[0]
        folds = sorted(table.loc[table["trial"] == trial, "fold"].unique())
        raise InputError(f"trial '{trial}' is held out in more than one fold ({', '.join(folds)})")
    return table.drop(columns="fold").sort_values(KEYS, ignore_index=True)


def _test_rows(tables: Mapping[str, pd.DataFrame], subset: str | None) -> dict[str, pd.DataFrame]:
    if subset is None:
        return dict(tables)
    return {fold: t[t["set"] == subset] if "set" in t.columns else t for fold, t in tables.items()}


def average_folds(test_tables: Mapping[str, pd.DataFrame], subset: str | None = "test") -> pd.DataFrame:
    """Frame-wise mean of the folds' predictions (rows of set ``subset``; None: every row)."""
    keys, preds = align_predictions(_test_rows(test_tables, subset), what="fold")
    return fused_table(keys, preds.mean(axis=1))


def targetwise_fold_selection(
    heldout_scores: Mapping[str, Mapping[str, float]],
    test_tables: Mapping[str, pd.DataFrame],
    subset: str | None = "test",
) -> tuple[pd.DataFrame, dict[str, str]]:
    """SAGE's target-wise fold selection (paper 000, sec. 4.3.2): per target, the fold with the best
    held-out CCC supplies that target's test predictions.

    ``heldout_scores[fold]`` holds the fold's held-out CCC per target (e.g. the rows of
    `vapipe.evaluation.scoring.score_folds`); only folds in ``test_tables`` compete, the first in
    their order wins a tie. Returns the table and {target: chosen fold}.
    """
    folds = list(test_tables)
    for fold in folds:
        for target in TARGETS:
            score = heldout_scores.get(fold, {}).get(target)
            if score is None or not np.isfinite(score):
                raise InputError(f"fold '{fold}' has no held-out {target} CCC to select folds by")
    chosen = {t: max(folds, key=lambda f, t=t: (heldout_scores[f][t], -folds.index(f))) for t in TARGETS}
    keys, preds = align_predictions(_test_rows(test_tables, subset), what="fold")
    values = np.stack([preds[:, folds.index(chosen[t]), i] for i, t in enumerate(TARGETS)], axis=1)
    return fused_table(keys, values), chosen
