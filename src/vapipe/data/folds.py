"""Folds: the official Train/Validation split, K folds over train+validation grouped by video, and
K folds within the official Train_Set, each scored on the official Validation_Set.

Fold names (paths, config ``folds:``, metrics rows):

- ``official``: Train_Set -> Validation_Set.
- ``k0`` .. ``k{K-1}`` (``folds.k``): a partition of train+validation by video; fold i holds out part i.
  Their held-out parts together cover every annotated trial once (the pooled out-of-fold score).
- ``train_k0`` .. ``train_k{K-1}`` (``folds.train_k``): a partition of the official Train_Set by video;
  fold i trains on the other parts and is scored on the official Validation_Set, so every fold is
  scored on the same frames and folds can be compared and selected there (SAGE, paper 000, sec. 4.1:
  "K-fold cross-validation within the official training set"; sec. 4.3.2: target-wise selection).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vapipe.data.affwild2 import TEST_SPLIT

OFFICIAL = "official"
TRAIN_SPLIT = "Train_Set"
VALIDATION_SPLIT = "Validation_Set"
KFOLD_PREFIX = "k"
WITHIN_TRAIN_PREFIX = "train_k"


def balanced_video_groups(rows_per_video: pd.Series, k: int, seed: int) -> dict[str, int]:
    """{video: group in 0..k-1}: videos in a seeded random order, each to the group with the fewest
    label rows so far, which balances groups by frames rather than by video count."""
    rows_per_video = rows_per_video.sort_index()
    order = np.random.default_rng(seed).permutation(len(rows_per_video))
    load = np.zeros(k, dtype=np.int64)
    group_of_video: dict[str, int] = {}
    for index in order:
        group = int(np.argmin(load))
        group_of_video[rows_per_video.index[index]] = group
        load[group] += rows_per_video.iloc[index]
    return group_of_video


def _assign_by_video(
    manifest: pd.DataFrame, labelled: pd.DataFrame, k: int, seed: int, key: str, what: str
) -> pd.Series:
    if k < 2:
        raise ValueError(f"folds.{key} must be at least 2, got {k}")
    rows_per_video = labelled.groupby("video")["n_rows"].sum()
    if len(rows_per_video) < k:
        raise ValueError(f"folds.{key} = {k} exceeds the {len(rows_per_video)} {what} videos")
    group_of_video = balanced_video_groups(rows_per_video, k, seed)
    return manifest["video"].map(group_of_video).fillna(-1).astype(int)


def assign_kfolds(manifest: pd.DataFrame, k: int, seed: int) -> pd.Series:
    """Fold index per annotated trial (train+validation); both people of one video land in the same fold."""
    return _assign_by_video(manifest, manifest[manifest["split"] != TEST_SPLIT], k, seed, "k", "annotated")


def assign_within_train_folds(manifest: pd.DataFrame, k: int, seed: int) -> pd.Series:
    """Fold index per Train_Set trial (-1 for every other trial), grouped by video like `assign_kfolds`."""
    train = manifest[manifest["split"] == TRAIN_SPLIT]
    groups = _assign_by_video(manifest, train, k, seed, "train_k", "Train_Set")
    return groups.where(manifest["split"] == TRAIN_SPLIT, -1)


def make_folds(manifest: pd.DataFrame, k: int, seed: int, train_k: int = 0) -> pd.DataFrame:
    """Table trial, video, split, kfold (-1 for test trials), train_kfold (-1 outside Train_Set)."""
    folds = manifest[["trial", "video", "split"]].copy()
    folds["kfold"] = assign_kfolds(manifest, k, seed) if k else -1
    folds["train_kfold"] = assign_within_train_folds(manifest, train_k, seed) if train_k else -1
    return folds


def fold_names(k: int, official: bool = True, train_k: int = 0) -> list[str]:
    """Fold identifiers used in paths: 'official', 'k0' .. 'k{K-1}', 'train_k0' .. 'train_k{K-1}'."""
    return ([OFFICIAL] if official else []) + kfold_names(k) + within_train_fold_names(train_k)


def kfold_names(k: int) -> list[str]:
    return [f"{KFOLD_PREFIX}{i}" for i in range(k)]


def within_train_fold_names(train_k: int) -> list[str]:
    return [f"{WITHIN_TRAIN_PREFIX}{i}" for i in range(train_k)]


def _index_after(fold: str, prefix: str) -> int | None:
    rest = fold[len(prefix) :] if fold.startswith(prefix) else ""
    return int(rest) if rest.isdigit() else None


def is_kfold(fold: str) -> bool:
    """A part of the K folds over train+validation (their held-out parts pool to out-of-fold)."""
    return _index_after(fold, KFOLD_PREFIX) is not None


def is_within_train_fold(fold: str) -> bool:
    """A fold within Train_Set, scored on the official Validation_Set."""
    return _index_after(fold, WITHIN_TRAIN_PREFIX) is not None


def split_fold(folds: pd.DataFrame, fold: str) -> tuple[list[str], list[str], list[str]]:
    """(train, held-out, test) trials of one fold.

    A within-train fold ``train_k<i>`` trains on the Train_Set trials outside part i and holds out
    the official Validation_Set; part i itself is neither trained on nor scored.
    """
    test = folds.loc[folds["split"] == TEST_SPLIT, "trial"].tolist()
    labelled = folds[folds["split"] != TEST_SPLIT]
    if fold == OFFICIAL:
        heldout_mask = labelled["split"] == VALIDATION_SPLIT
        train_mask = ~heldout_mask
    elif is_kfold(fold):
        heldout_mask = labelled["kfold"] == _index_after(fold, KFOLD_PREFIX)
        train_mask = ~heldout_mask
    elif is_within_train_fold(fold):
        if "train_kfold" not in labelled.columns:
            raise ValueError(f"fold '{fold}': the folds table has no within-train folds (set folds.train_k)")
        index = _index_after(fold, WITHIN_TRAIN_PREFIX)
        in_train = labelled["split"] == TRAIN_SPLIT
        heldout_mask = labelled["split"] == VALIDATION_SPLIT
        train_mask = in_train & (labelled["train_kfold"] >= 0) & (labelled["train_kfold"] != index)
        if not (labelled["train_kfold"] == index).any():
            raise ValueError(f"fold '{fold}': no Train_Set video is in within-train part {index}")
    else:
        raise ValueError(f"unknown fold '{fold}': expected '{OFFICIAL}', 'k<index>' or 'train_k<index>'")
    train = labelled.loc[train_mask, "trial"].tolist()
    heldout = labelled.loc[heldout_mask, "trial"].tolist()
    if not train or not heldout:
        raise ValueError(f"fold '{fold}' has {len(train)} training and {len(heldout)} held-out trials")
    return train, heldout, test


def video_halves(manifest: pd.DataFrame, trials: list[str], seed: int) -> tuple[list[str], list[str]]:
    """The trials split in two halves by base video (both people of a video in one half), balanced
    by label rows in a seeded order: for choosing on one half and scoring on the other."""
    table = manifest[manifest["trial"].isin(trials)]
    rows_per_video = table.groupby("video")["n_rows"].sum()
    if len(rows_per_video) < 2:
        raise ValueError(f"splitting trials in halves by video needs at least two videos, got {len(rows_per_video)}")
    half_of_video = balanced_video_groups(rows_per_video, 2, seed)
    half = table["video"].map(half_of_video)
    first = sorted(table.loc[half == 0, "trial"])
    second = sorted(table.loc[half == 1, "trial"])
    return first, second
