"""Folds: the official Train/Validation split plus K folds over train+validation grouped by video."""

from __future__ import annotations

import numpy as np
import pandas as pd

from vapipe.data.affwild2 import TEST_SPLIT

OFFICIAL = "official"


def assign_kfolds(manifest: pd.DataFrame, k: int, seed: int) -> pd.Series:
    """Fold index per annotated trial; both people of one video land in the same fold.

    Videos are visited in a seeded random order and each goes to the fold with the fewest label
    rows so far, which balances folds by frames rather than by trial count.
    """
    if k < 2:
        raise ValueError(f"folds.k must be at least 2, got {k}")
    labelled = manifest[manifest["split"] != TEST_SPLIT]
    rows_per_video = labelled.groupby("video")["n_rows"].sum().sort_index()
    if len(rows_per_video) < k:
        raise ValueError(f"folds.k = {k} exceeds the {len(rows_per_video)} annotated videos")
    order = np.random.default_rng(seed).permutation(len(rows_per_video))
    load = np.zeros(k, dtype=np.int64)
    fold_of_video: dict[str, int] = {}
    for index in order:
        video = rows_per_video.index[index]
        fold = int(np.argmin(load))
        fold_of_video[video] = fold
        load[fold] += rows_per_video.iloc[index]
    return manifest["video"].map(fold_of_video).fillna(-1).astype(int)


def make_folds(manifest: pd.DataFrame, k: int, seed: int) -> pd.DataFrame:
    """Table trial, video, split, kfold (-1 for test trials)."""
    folds = manifest[["trial", "video", "split"]].copy()
    folds["kfold"] = assign_kfolds(manifest, k, seed) if k else -1
    return folds


def fold_names(k: int, official: bool = True) -> list[str]:
    """Fold identifiers used in paths: 'official' and 'k0' .. 'k{K-1}'."""
    return ([OFFICIAL] if official else []) + [f"k{i}" for i in range(k)]


def split_fold(folds: pd.DataFrame, fold: str) -> tuple[list[str], list[str], list[str]]:
    """(train, held-out, test) trials of one fold."""
    test = folds.loc[folds["split"] == TEST_SPLIT, "trial"].tolist()
    labelled = folds[folds["split"] != TEST_SPLIT]
    if fold == OFFICIAL:
        heldout_mask = labelled["split"] == "Validation_Set"
    elif fold.startswith("k") and fold[1:].isdigit():
        heldout_mask = labelled["kfold"] == int(fold[1:])
    else:
        raise ValueError(f"unknown fold '{fold}': expected '{OFFICIAL}' or 'k<index>'")
    train = labelled.loc[~heldout_mask, "trial"].tolist()
    heldout = labelled.loc[heldout_mask, "trial"].tolist()
    if not train or not heldout:
        raise ValueError(f"fold '{fold}' has {len(train)} training and {len(heldout)} held-out trials")
    return train, heldout, test
