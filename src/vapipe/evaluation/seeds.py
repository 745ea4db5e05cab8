"""Several training seeds of one system: their seed-average predictions and their spread.

A system listing `seeds` trains one member system per seed (`vapipe.specs.expand_seeds`). Its own
predictions are the members' average, frame by frame (the declared rule for its submission and
fusions; a member's name submits one seed instead), and its seeds table gives, per fold, the mean and
standard deviation of the members' CCCs: how much a number moves with nothing but the seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vapipe import TARGETS

KEYS = ["trial", "time", "set"]


def average_seed_predictions(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Frame-wise mean of raw prediction tables (trial, time, valence, arousal, set) of one fold's seeds.

    The members share data, windows and rates, so their rows must match exactly; a mismatch names the
    member (a different config slipped in) instead of averaging misaligned frames.
    """
    if not tables:
        raise ValueError("average_seed_predictions: no seed tables")
    names = list(tables)
    first = tables[names[0]][KEYS].reset_index(drop=True)
    values = []
    for name in names:
        table = tables[name].reset_index(drop=True)
        if len(table) != len(first) or not table[KEYS].equals(first):
            raise ValueError(f"{name}: its rows (trial, time, set) differ from {names[0]}'s; cannot average seeds")
        values.append(table[list(TARGETS)].to_numpy(dtype=np.float64))
    averaged = first.copy()
    mean = np.mean(values, axis=0)
    for i, target in enumerate(TARGETS):
        averaged[target] = mean[:, i]
    return averaged[["trial", "time", *TARGETS, "set"]]


def seed_summary(metrics: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """Per fold: mean and standard deviation (ddof 1) over seeds of each CCC, and the number of seeds."""
    if len(metrics) < 2:
        raise ValueError(f"seed_summary: needs at least two seeds, got {len(metrics)}")
    stacked = pd.concat([table.assign(seed=seed) for seed, table in metrics.items()], ignore_index=True)
    rows = []
    for fold, group in stacked.groupby("fold", sort=False):
        row = {"fold": fold, "n_seeds": len(group)}
        for name in (*TARGETS, "mean"):
            row[f"{name}_mean"] = group[name].mean()
            row[f"{name}_sd"] = group[name].std(ddof=1)
        rows.append(row)
    return pd.DataFrame(rows)
