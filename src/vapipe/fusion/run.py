"""A fused system from its base systems' upsampled per-frame tables (rule fuse_systems).

Fitting frames: the base systems' held-out frames of the fusion's folds, i.e. the out-of-fold
predictions of the K folds, or the official validation predictions when the folds are
['official'] (the papers choose fusion weights on the development set). A score is never
reported on the frames it was chosen on: the fused held-out rows are cross-fitted (weights or
forests chosen on the other trials, `grouped_splits`), then smoothed, and scored like any system.
Test rows: each base system's test predictions averaged over the folds, fused by the fit on all
fitting frames, then smoothed.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from vapipe import TARGETS
from vapipe.data.folds import OFFICIAL
from vapipe.evaluation.metrics import valid_label_mask
from vapipe.evaluation.scoring import score_predictions
from vapipe.fusion.dirichlet import DirichletWeightedFusion
from vapipe.fusion.folds import align_predictions, average_folds, frame_labels, fused_table, out_of_fold_predictions
from vapipe.fusion.forest import ForestFusion
from vapipe.post.predictions import smooth_frames

METHODS = ("dwf", "random_forest")
# Metrics rows of a fused system: the score on the fitting frames themselves (DWF: the chosen
# weights' CCC; RF: out-of-bag CCC), both optimistic; the cross-fitted score before and after
# smoothing. The last is the one tables report, comparable with a base system's held-out score.
FIT_ROW = {"dwf": "fit", "random_forest": "out_of_bag"}
CV_ROW = "grouped_cv"
HEADLINE_ROW = "grouped_cv_smoothed"


def fitting_frames(folds: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Held-out frames a fusion is fitted on: official validation, or the K folds' out-of-fold frames."""
    if list(folds) == [OFFICIAL]:
        frames = folds[OFFICIAL]
        return frames[frames["set"] == "heldout"].sort_values(["trial", "frame"], ignore_index=True)
    if OFFICIAL in folds:
        raise ValueError("a fusion fits on ['official'] or on K folds, not on both")
    return out_of_fold_predictions(folds)


def make_fuser(spec: dict) -> DirichletWeightedFusion | ForestFusion:
    method = spec["method"]
    if method == "dwf":
        return DirichletWeightedFusion(pool_size=spec.get("pool_size", 2000), seed=spec.get("seed", 0),
                                       cv_splits=spec.get("cv_splits", 5))
    if method == "random_forest":
        return ForestFusion(seed=spec.get("seed", 0), cv_splits=spec.get("cv_splits", 5),
                            max_samples=spec.get("max_samples"), min_samples_leaf=spec.get("min_samples_leaf", 1),
                            n_jobs=spec.get("n_jobs"))
    raise ValueError(f"unknown fusion method '{method}'; known: {', '.join(METHODS)}")


def fuse_systems(
    spec: dict,
    upsampled: Mapping[str, Mapping[str, pd.DataFrame]],
    manifest: pd.DataFrame,
    smoothing_seconds: float,
) -> tuple[pd.DataFrame, dict, pd.DataFrame, tuple]:
    """(frames, summary, metrics, (fitted fuser, fitting preds [N, M, 2], labels [N, 2])) of a spec.

    ``upsampled[system][fold]`` is a base system's unsmoothed per-frame table (trial, frame,
    valence, arousal, set). ``frames`` holds the cross-fitted held-out rows and the test rows,
    smoothed; ``metrics`` has rows fit/out_of_bag, grouped_cv and grouped_cv_smoothed.
    """
    systems = list(spec["systems"])
    keys, preds = align_predictions({s: fitting_frames(upsampled[s]) for s in systems}, what="system")
    labels = frame_labels(keys, manifest)
    fuser = make_fuser(spec).fit(preds, labels, groups=keys["trial"].to_numpy())
    heldout = fused_table(keys, fuser.cv_predictions_).assign(set="heldout")

    parts = [heldout]
    tests = {s: average_folds(upsampled[s], subset="test") for s in systems}
    if all(len(t) for t in tests.values()):
        test_keys, test_preds = align_predictions(tests, what="system")
        parts.append(fused_table(test_keys, fuser.predict(test_preds)).assign(set="test"))
    frames = smooth_frames(pd.concat(parts, ignore_index=True), manifest, smoothing_seconds)

    if isinstance(fuser, DirichletWeightedFusion):
        summary = fuser.summary(systems)
        fit_scores, cv_scores = fuser.fit_scores_, fuser.cv_scores_
    else:
        summary = fuser.summary()
        annotated = int(valid_label_mask(labels).sum())
        fit_scores = {**fuser.oob_ccc_, "n_frames": annotated}
        cv_scores = {**fuser.grouped_cv_ccc_, "n_frames": annotated}
    summary |= {"systems": systems, "folds": list(next(iter(upsampled.values()))), "n_fitting_frames": len(keys)}
    smoothed = score_predictions(frames[frames["set"] == "heldout"], manifest)
    metrics = pd.DataFrame(
        [{"fold": FIT_ROW[spec["method"]], **fit_scores}, {"fold": CV_ROW, **cv_scores},
         {"fold": HEADLINE_ROW, **smoothed}],
        columns=["fold", *TARGETS, "mean", "n_frames"],
    )
    return frames, summary, metrics, (fuser, preds, labels)


def fusion_figure(fitted: tuple, systems: list[str], path) -> None:
    """DWF: each pool draw's CCC against each model's weight, chosen draw marked; RF: OOB CCC of
    the (n_estimators, criterion) grid with the grouped cross-validated CCC of the chosen forest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fuser, preds, labels = fitted
    if isinstance(fuser, DirichletWeightedFusion):
        scores = fuser.pool_scores(preds, labels)
        fig, axes = plt.subplots(len(TARGETS), len(systems), figsize=(3.2 * len(systems), 5.6),
                                 squeeze=False, sharey="row")
        for i, target in enumerate(TARGETS):
            for m, system in enumerate(systems):
                ax = axes[i, m]
                ax.scatter(fuser.pools_[target][:, m], scores[target], s=2, alpha=0.3, color="tab:blue")
                ax.scatter([fuser.weights_[target][m]], [scores[target].max()], color="tab:red", marker="*",
                           s=120, label="chosen")
                ax.set_xlabel(f"weight of {system}")
                if m == 0:
                    ax.set_ylabel(f"{target} CCC of the draw")
        axes[0, 0].legend(loc="lower right")
        fig.suptitle(f"DWF: {fuser.pool_size} Dirichlet(1, ..., 1) draws per target (seed {fuser.seed})")
    else:
        fig, axes = plt.subplots(1, len(TARGETS), figsize=(9, 3.6), squeeze=False, sharey=True)
        for i, target in enumerate(TARGETS):
            ax = axes[0, i]
            grid = fuser.selection_[fuser.selection_["target"] == target]
            for criterion, rows in grid.groupby("criterion"):
                ax.plot(rows["n_estimators"], rows["oob_ccc"], marker="o", label=f"out-of-bag, {criterion}")
            ax.axhline(fuser.grouped_cv_ccc_[target], color="black", linestyle="--",
                       label="trial-grouped CV (chosen forest)")
            ax.set_xscale("log")
            ax.set_xlabel("n_estimators")
            ax.set_title(target)
        axes[0, 0].set_ylabel("CCC")
        axes[0, 0].legend(fontsize=7)
        fig.suptitle("Random-forest fusion: out-of-bag selection against trial-grouped CV")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
