"""Report figures of a system: predicted-vs-true traces and CCC per trial (rule system_figures).

Both use the frames a table reports (`vapipe.evaluation.tables.headline_row`): the official
validation fold when the system trained it, otherwise every K fold's held-out frames.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from vapipe import TARGETS
from vapipe.data.affwild2 import read_annotation
from vapipe.data.folds import OFFICIAL
from vapipe.evaluation.metrics import ccc, valid_label_mask


def reported_heldout(frames_by_fold: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Held-out rows of the official fold, or of all K folds together."""
    if OFFICIAL in frames_by_fold:
        tables = [frames_by_fold[OFFICIAL]]
    else:
        tables = list(frames_by_fold.values())
    frames = pd.concat([t[t["set"] == "heldout"] for t in tables], ignore_index=True)
    return frames.sort_values(["trial", "frame"], ignore_index=True)


def trial_labels(frames: pd.DataFrame, manifest: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    """{trial: (its prediction rows by frame, [rows, 2] labels of those frames)}."""
    paths = manifest.set_index("trial")["annotation_path"]
    out = {}
    for trial, group in frames.groupby("trial", sort=True):
        labels = read_annotation(paths.loc[trial])
        out[trial] = (group, labels[group["frame"].to_numpy() - 1])
    return out


def ccc_per_trial(frames: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """trial, valence, arousal, mean CCC, n_frames (annotated) of each held-out trial."""
    rows = []
    for trial, (group, labels) in trial_labels(frames, manifest).items():
        keep = valid_label_mask(labels)
        scores = {
            t: ccc(group[t].to_numpy()[keep], labels[keep, i]) if keep.sum() > 1 else np.nan
            for i, t in enumerate(TARGETS)
        }
        rows.append({"trial": trial, **scores, "mean": np.mean(list(scores.values())), "n_frames": int(keep.sum())})
    return pd.DataFrame(rows, columns=["trial", *TARGETS, "mean", "n_frames"])


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def trace_figure(
    frames: pd.DataFrame, manifest: pd.DataFrame, per_trial: pd.DataFrame, n_trials: int, title: str, path
) -> list[str]:
    """Predicted and true valence and arousal over time of the best, median and worst trials (by
    mean CCC; up to n_trials); returns the trials drawn."""
    plt = _pyplot()
    ranked = per_trial.dropna(subset=["mean"]).sort_values("mean", ascending=False)["trial"].tolist()
    picks = (
        ranked
        if len(ranked) <= n_trials
        else [ranked[int(round(i))] for i in np.linspace(0, len(ranked) - 1, n_trials)]
    )
    data = trial_labels(frames[frames["trial"].isin(picks)], manifest)
    fps = manifest.set_index("trial")["fps"]
    fig, axes = plt.subplots(len(picks), len(TARGETS), figsize=(11, 2.3 * len(picks)), squeeze=False, sharey=True)
    for r, trial in enumerate(picks):
        group, labels = data[trial]
        seconds = (group["frame"].to_numpy() - 1) / float(fps.loc[trial])
        for c, target in enumerate(TARGETS):
            ax = axes[r, c]
            truth = np.where(labels[:, c] == -5, np.nan, labels[:, c])
            ax.plot(seconds, truth, color="black", linewidth=1.2, label="annotation")
            ax.plot(seconds, group[target].to_numpy(), color="tab:orange", linewidth=1.0, label="prediction")
            score = per_trial.set_index("trial").loc[trial, target]
            ax.set_title(f"{trial}: {target}, CCC {score:.3f}", fontsize=9)
            ax.set_ylim(-1.05, 1.05)
    for ax in axes[-1]:
        ax.set_xlabel("seconds")
    axes[0, 0].legend(fontsize=8, loc="lower left")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return picks


def per_trial_figure(per_trial: pd.DataFrame, title: str, path) -> None:
    """Horizontal bars of valence and arousal CCC per held-out trial, sorted by their mean."""
    plt = _pyplot()
    table = per_trial.sort_values("mean")
    y = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.28 * len(table)))
    ax.barh(y - 0.2, table["valence"], height=0.4, label="valence")
    ax.barh(y + 0.2, table["arousal"], height=0.4, label="arousal")
    ax.set_yticks(y, table["trial"], fontsize=7)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("CCC")
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
