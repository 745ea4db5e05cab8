"""A fused system from its base systems' upsampled per-frame tables (rule fuse_systems).

Fitting frames: the base systems' held-out frames of the fusion's folds, i.e. the out-of-fold
predictions of the K folds, or the official validation predictions when the folds are
['official'] (the papers choose fusion weights on the development set). A score is never
reported on the frames it was chosen on: the fused held-out rows are cross-fitted (weights, or
forests with their hyper-parameters, chosen on the other splits' frames alone, `grouped_splits`),
then smoothed, and scored like any system. Test rows: each base system's test predictions averaged
over the folds, fused by the fit on all fitting frames, then smoothed.

Cross-fitting groups frames by base video (`vapipe.data.affwild2.base_video`), for every method:
``<video>_left`` and ``<video>_right`` are two people in one video (same audio, same scene), so
they are always held out together, never one fitted on while the other is scored.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from vapipe import TARGETS
from vapipe.data.affwild2 import base_video
from vapipe.data.folds import OFFICIAL
from vapipe.evaluation.scoring import INTERVAL_COLUMNS, score_predictions
from vapipe.fusion.base import LateFusion, create_fusion, fusion_options
from vapipe.fusion.folds import align_predictions, average_folds, frame_labels, fused_table, out_of_fold_predictions
from vapipe.post.predictions import smooth_frames

# Metrics rows of a fused system: the score on the fitting frames themselves (the fuser's
# `fit_score_name`, e.g. DWF "fit": the chosen weights' CCC; RF "out_of_bag"), optimistic; the
# cross-fitted score before and after smoothing. The last is the one tables report, comparable with
# a base system's held-out score.
CV_ROW = "grouped_cv"
HEADLINE_ROW = "grouped_cv_smoothed"
# Keys of a fusion spec (a config's fusions.<name>) that are not options of the method.
SPEC_KEYS = ("method", "systems", "folds")


def fitting_frames(folds: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Held-out frames a fusion is fitted on: official validation, or the K folds' out-of-fold frames."""
    if list(folds) == [OFFICIAL]:
        frames = folds[OFFICIAL]
        return frames[frames["set"] == "heldout"].sort_values(["trial", "frame"], ignore_index=True)
    if OFFICIAL in folds:
        raise ValueError("a fusion fits on ['official'] or on K folds, not on both")
    return out_of_fold_predictions(folds)


def cross_fitting_groups(keys: pd.DataFrame) -> np.ndarray:
    """[N] the base video of each frame's trial: the groups a fusion is cross-fitted over."""
    return keys["trial"].map(base_video).to_numpy()


def make_fuser(spec: dict, n_jobs: int | None = None) -> LateFusion:
    """The spec's registered method (`vapipe.fusion.base`), built with every other key as an option;
    ``n_jobs`` (the job's threads) goes to a method that takes it and whose spec does not set it."""
    options = {k: v for k, v in spec.items() if k not in SPEC_KEYS}
    if n_jobs is not None and "n_jobs" in fusion_options(spec["method"]):
        options.setdefault("n_jobs", n_jobs)
    return create_fusion(spec["method"], **options)


def fuse_systems(
    spec: dict,
    upsampled: Mapping[str, Mapping[str, pd.DataFrame]],
    manifest: pd.DataFrame,
    smoothing_seconds: float,
    n_jobs: int | None = None,
    bootstrap=None,
) -> tuple[pd.DataFrame, dict, pd.DataFrame, tuple]:
    """(frames, summary, metrics, (fitted fuser, fitting preds [N, M, 2], labels [N, 2])) of a spec.

    ``upsampled[system][fold]`` is a base system's unsmoothed per-frame table (trial, frame,
    valence, arousal, set). ``frames`` holds the cross-fitted held-out rows and the test rows,
    smoothed; ``metrics`` has rows <fuser.fit_score_name> (fit, out_of_bag), grouped_cv and
    grouped_cv_smoothed. ``n_jobs``: threads for a method that takes them (`make_fuser`). With a
    `vapipe.specs.BootstrapSpec`, the two cross-fitted rows carry intervals over base videos.
    """
    systems = list(spec["systems"])
    keys, preds = align_predictions({s: fitting_frames(upsampled[s]) for s in systems}, what="system")
    labels = frame_labels(keys, manifest)
    fuser = make_fuser(spec, n_jobs).fit(preds, labels, groups=cross_fitting_groups(keys))
    heldout = fused_table(keys, fuser.cv_predictions_).assign(set="heldout")

    parts = [heldout]
    tests = {s: average_folds(upsampled[s], subset="test") for s in systems}
    if all(len(t) for t in tests.values()):
        test_keys, test_preds = align_predictions(tests, what="system")
        parts.append(fused_table(test_keys, fuser.predict(test_preds)).assign(set="test"))
    frames = smooth_frames(pd.concat(parts, ignore_index=True), manifest, smoothing_seconds)

    summary = fuser.summary(systems)
    summary |= {"systems": systems, "folds": list(next(iter(upsampled.values()))), "n_fitting_frames": len(keys)}
    smoothed = score_predictions(frames[frames["set"] == "heldout"], manifest, bootstrap)
    cross_fitted = dict(fuser.cv_scores_)
    columns = ["fold", *TARGETS, "mean", "n_frames"]
    if bootstrap is not None and bootstrap.resamples > 0:  # the fitting-frame row gets none: it is optimistic
        intervals = score_predictions(heldout, manifest, bootstrap)
        cross_fitted.update({k: intervals[k] for k in INTERVAL_COLUMNS})
        columns += INTERVAL_COLUMNS
    metrics = pd.DataFrame(
        [
            {"fold": fuser.fit_score_name, **fuser.fit_scores_},
            {"fold": CV_ROW, **cross_fitted},
            {"fold": HEADLINE_ROW, **smoothed},
        ],
        columns=columns,
    )
    return frames, summary, metrics, (fuser, preds, labels)
