"""Random-forest late fusion of Dresvyanskiy et al., ABAW 2024 (paper 001, sec. 3.3, Table 5 system 4).

The base models' frame-level outputs, concatenated (all models' valence and arousal: the paper
stacks "the concatenated ... vectors from the base models"), feed one RandomForestRegressor per
target. The number of trees is chosen on out-of-bag predictions, as in the paper, here jointly
with the split criterion: n_estimators in {10, 20, 50, 100} x criterion, best out-of-bag CCC.

Out-of-bag scores are optimistic on frame sequences: a frame left out of a tree's bootstrap sample
has its neighbours, with nearly the same inputs and label, in it. The paper's RF scored 0.763 on
development and 0.432 on test (Table 5). So the method is also scored by video-grouped
cross-fitting (GroupKFold, same seed): inside each split the whole selection (out-of-bag CCC over
the grid, then the chosen forest) runs on that split's training frames alone and predicts the
held-out videos, which never take part in choosing the settings that score them: ``cv_scores_``,
with each split's choice in ``cv_params_``.

Criteria: "squared_error" (leaf mean) and "absolute_error" (leaf median, robust to outlying
labels). In the installed scikit-learn (1.9) "friedman_mse" is deprecated as identical to
"squared_error", and "absolute_error" is no longer quadratic: it measured 2.5-3x the time of
"squared_error" per tree (20k-100k frames, 6 inputs). "poisson" needs non-negative targets, which
valence and arousal are not.

Cost and memory at Aff-Wild2's size (0.37 M validation frames x 3 systems; ~1 M frames for the K
folds' out-of-fold predictions): the grid is searched 1 + ``cv_splits`` times per target (all
fitting frames, then each split's training frames), and a fully grown tree there holds ~1 M nodes;
on all frames that was estimated at 1.5-3 h on one core and ~8 GB (issue 15). Neighbouring frames of a trial are
near-duplicates (labels at 25-30 fps change over seconds), so a fit uses every k-th annotated frame
in trial and frame order, k the smallest stride that leaves at most ``MAX_FIT_FRAMES`` (12 000: one
frame in 32, about one a second, of the official validation set); fitted forests then predict every
frame. On Aff-Wild2's size (`vapipe rehearse --fraction 1`: 375 165 validation frames x 3
systems, 959 211 test frames) the whole fusion step took 7.2 minutes on 2 threads of a shared
2-core machine (4.1 CPU-minutes) and 1.5 GB.
Data under the cap (the demo: 1 239 frames) is fitted whole, frame for frame as before.
``max_samples`` (fraction of frames per bootstrap sample) and ``min_samples_leaf`` bound the
trees further; the defaults are scikit-learn's, as the paper states no others. ``n_jobs`` grows a
forest's trees in threads (the same trees for any value: each tree's seed is drawn up front); the
workflow passes the rule's threads. Only one split's forests are held at a time.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestRegressor

from vapipe import TARGETS
from vapipe.evaluation.metrics import ccc
from vapipe.fusion.base import LateFusion, _json_ready, check_base_predictions, pyplot, register_fusion, save_figure

N_ESTIMATORS_GRID = (10, 20, 50, 100)
CRITERIA = ("squared_error", "absolute_error")
# Most frames a forest is fitted on; larger fitting sets are thinned to every k-th frame (see above).
MAX_FIT_FRAMES = 12_000


def oob_ccc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """CCC as scikit-learn's ``oob_score`` callable (it passes y as [N, 1], the prediction as [N])."""
    return ccc(np.ravel(y_pred), np.ravel(y_true))


def thinning_stride(n_frames: int, max_frames: int) -> int:
    """Smallest k such that every k-th of ``n_frames`` frames is at most ``max_frames`` frames."""
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    return max(1, -(-n_frames // max_frames))


def stack_features(preds: np.ndarray) -> np.ndarray:
    """[N, 2M] forest inputs: model 0's valence, arousal, model 1's valence, arousal, ..."""
    preds = check_base_predictions(preds)
    return preds.reshape(len(preds), -1)


@register_fusion("random_forest")
class ForestFusion(LateFusion):
    """RF stacking (paper 001, sec. 3.3): per target, a RandomForestRegressor on all base outputs.

    ``fit(preds [N, M, 2], labels [N, 2], groups [N])`` (`LateFusion`): frames whose label is -5 are
    left out. For each criterion, one forest is grown with warm start through ``n_estimators_grid``
    (scikit-learn skips the random draws of trees already grown, so each step equals a fresh fit of
    that size); the (n_estimators, criterion) with the best out-of-bag CCC (first in grid order on a
    tie) is kept, regrown only when it is not the largest forest. Fitted attributes: ``models_``,
    ``params_`` {target: ...}, ``fit_scores_`` (the chosen forests' out-of-bag CCC; metrics row
    "out_of_bag"), ``selection_`` (every grid point's OOB CCC), all chosen on all fitting frames;
    ``cv_predictions_`` [N, 2] (every frame, annotated or not, predicted by a ForestFusion fitted
    on the other groups' annotated frames alone: the same seed, its own selection over the grid),
    ``cv_scores_`` (their CCC) and ``cv_params_`` (per split, the {target: params} it chose).

    With 10 trees about (1 - 1/e)^10 = 1% of frames are in every bootstrap sample; scikit-learn
    predicts 0 for them out-of-bag (and warns, silenced here), which slightly handicaps the
    smallest forests. ``max_samples`` and ``min_samples_leaf`` go to every forest. A fit on more
    than ``max_fit_frames`` annotated frames uses every ``fit_stride_``-th of them (in the trial and
    frame order the fitting frames come in; see the module docstring), out-of-bag scores included.
    """

    display_name = "RF fusion"
    fit_score_name = "out_of_bag"
    # A class attribute, not an option: the thinning is part of the method at scale, not a knob.
    max_fit_frames: int = MAX_FIT_FRAMES

    def __init__(
        self,
        seed: int = 0,
        n_estimators_grid: tuple[int, ...] = N_ESTIMATORS_GRID,
        criteria: tuple[str, ...] = CRITERIA,
        cv_splits: int = 5,
        max_samples: float | None = None,
        min_samples_leaf: int = 1,
        n_jobs: int | None = None,
    ):
        self.seed = seed
        self.n_estimators_grid = n_estimators_grid
        self.criteria = criteria
        self.cv_splits = cv_splits
        self.max_samples = max_samples
        self.min_samples_leaf = min_samples_leaf
        self.n_jobs = n_jobs

    def _forest(self, **params) -> RandomForestRegressor:
        return RandomForestRegressor(
            random_state=self.seed,
            max_samples=self.max_samples,
            min_samples_leaf=self.min_samples_leaf,
            n_jobs=self.n_jobs,
            **params,
        )

    def _select(self, X: np.ndarray, y: np.ndarray) -> tuple[list[dict], RandomForestRegressor | None]:
        """OOB CCC of every grid point; also the best forest when it is a fully grown one."""
        rows, best, kept = [], -np.inf, None
        for criterion in self.criteria:
            forest = self._forest(criterion=criterion, oob_score=oob_ccc, warm_start=True)
            for n in sorted(self.n_estimators_grid):
                forest.set_params(n_estimators=n)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Some inputs do not have OOB scores")
                    forest.fit(X, y)
                rows.append({"criterion": criterion, "n_estimators": n, "oob_ccc": float(forest.oob_score_)})
                if forest.oob_score_ > best:  # strict: the first of equal scores wins
                    best = forest.oob_score_
                    kept = forest if n == max(self.n_estimators_grid) else None
        return rows, kept

    def _fit_frames(self, preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        self.fit_stride_ = thinning_stride(len(preds), self.max_fit_frames)
        X = stack_features(preds)[:: self.fit_stride_]
        labels = labels[:: self.fit_stride_]
        self.n_features_, self.n_fit_frames_ = X.shape[1], len(X)
        self.models_, self.params_, scores, selection = {}, {}, {}, []
        for i, target in enumerate(TARGETS):
            y = labels[:, i]
            rows, model = self._select(X, y)
            selection += [{"target": target, **row} for row in rows]
            best = max(rows, key=lambda r: r["oob_ccc"])  # max keeps the first of equal scores
            params = {"n_estimators": best["n_estimators"], "criterion": best["criterion"]}
            if model is None:  # a smaller forest won: grow it afresh (same seed, same trees)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Some inputs do not have OOB scores")
                    model = self._forest(**params, oob_score=oob_ccc).fit(X, y)
            model.set_params(warm_start=False)
            self.models_[target], self.params_[target] = model, params
            scores[target] = float(model.oob_score_)
        self.selection_ = pd.DataFrame(selection, columns=["target", "criterion", "n_estimators", "oob_ccc"])
        return scores

    def _chosen_params(self) -> dict:
        """{target: {n_estimators, criterion}} this fit chose (per split: ``cv_params_``)."""
        return {t: dict(params) for t, params in self.params_.items()}

    def _predict_frames(self, preds: np.ndarray) -> np.ndarray:
        X = stack_features(preds)
        return np.stack([self.models_[t].predict(X) for t in TARGETS], axis=1)

    def summary(self, models: list[str] | None = None) -> dict:
        """JSON-ready record: seed, chosen hyper-parameters, every grid point's OOB CCC, scores, and
        per cross-fitting split the hyper-parameters chosen there (``cv_params``; None without groups)."""
        return super().summary(models) | _json_ready(
            {
                "params": self.params_,
                "selection": self.selection_.to_dict("records"),
                "cv_params": self.cv_params_,
                "fit_stride": self.fit_stride_,
                "n_fit_frames": self.n_fit_frames_,
            }
        )

    def figure(self, preds, labels, models: list[str], path) -> None:
        """OOB CCC of the (n_estimators, criterion) grid, with the cross-fitted CCC (selection per split)."""
        plt = pyplot()
        fig, axes = plt.subplots(1, len(TARGETS), figsize=(9, 3.6), squeeze=False, sharey=True)
        for i, target in enumerate(TARGETS):
            ax = axes[0, i]
            grid = self.selection_[self.selection_["target"] == target]
            for criterion, rows in grid.groupby("criterion"):
                ax.plot(rows["n_estimators"], rows["oob_ccc"], marker="o", label=f"out-of-bag, {criterion}")
            ax.axhline(self.cv_scores_[target], color="black", linestyle="--", label="grouped CV (selected per split)")
            ax.set_xscale("log")
            ax.set_xlabel("n_estimators")
            ax.set_title(target)
        axes[0, 0].set_ylabel("CCC")
        axes[0, 0].legend(fontsize=7)
        fig.suptitle("Random-forest fusion: out-of-bag selection against video-grouped CV")
        save_figure(fig, path)
