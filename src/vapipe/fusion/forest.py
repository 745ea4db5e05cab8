"""Random-forest late fusion of Dresvyanskiy et al., ABAW 2024 (paper 001, sec. 3.3, Table 5 system 4).

The base models' frame-level outputs, concatenated (all models' valence and arousal: the paper
stacks "the concatenated ... vectors from the base models"), feed one RandomForestRegressor per
target. The number of trees is chosen on out-of-bag predictions, as in the paper, here jointly
with the split criterion: n_estimators in {10, 20, 50, 100} x criterion, best out-of-bag CCC.

Out-of-bag scores are optimistic on frame sequences: a frame left out of a tree's bootstrap sample
has its neighbours, with nearly the same inputs and label, in it. The paper's RF scored 0.763 on
development and 0.432 on test (Table 5). So the chosen forest is also scored by trial-grouped
cross-validation (GroupKFold, same hyper-parameters, same seed): ``grouped_cv_ccc_``.

Criteria: "squared_error" (leaf mean) and "absolute_error" (leaf median, robust to outlying
labels). In the installed scikit-learn (1.9) "friedman_mse" is deprecated as identical to
"squared_error", and "absolute_error" is no longer quadratic: it measured 2.5-3x the time of
"squared_error" per tree (20k-100k frames, 6 inputs). "poisson" needs non-negative targets, which
valence and arousal are not.

Cost and memory on Aff-Wild2 (~1M annotated frames): a fully grown tree there holds ~1M nodes
(about 9 MB per tree at 100k frames), so 100 trees per target need several GB; ``max_samples``
(fraction of frames per bootstrap sample) or ``min_samples_leaf`` bound both. The defaults are
scikit-learn's, as the paper states no others.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestRegressor

from vapipe import TARGETS
from vapipe.evaluation.metrics import ccc, valid_label_mask
from vapipe.fusion.dirichlet import check_base_predictions, grouped_splits

N_ESTIMATORS_GRID = (10, 20, 50, 100)
CRITERIA = ("squared_error", "absolute_error")


def oob_ccc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """CCC as scikit-learn's ``oob_score`` callable (it passes y as [N, 1], the prediction as [N])."""
    return ccc(np.ravel(y_pred), np.ravel(y_true))


def stack_features(preds: np.ndarray) -> np.ndarray:
    """[N, 2M] forest inputs: model 0's valence, arousal, model 1's valence, arousal, ..."""
    preds = check_base_predictions(preds)
    return preds.reshape(len(preds), -1)


class ForestFusion(BaseEstimator):
    """RF stacking (paper 001, sec. 3.3): per target, a RandomForestRegressor on all base outputs.

    ``fit(preds [N, M, 2], labels [N, 2], groups [N])``: frames whose label is -5 are left out. For
    each criterion, one forest is grown with warm start through ``n_estimators_grid`` (scikit-learn
    skips the random draws of trees already grown, so each step equals a fresh fit of that size);
    the (n_estimators, criterion) with the best out-of-bag CCC (first in grid order on a tie) is
    kept, regrown only when it is not the largest forest. Fitted attributes: ``models_``,
    ``params_``, ``oob_ccc_`` and ``grouped_cv_ccc_`` {target: ...} (plus "mean" in the score
    dicts), ``selection_`` (every grid point's OOB CCC), ``cv_predictions_`` [N, 2] (every frame,
    annotated or not, predicted by forests grown on the other trials' annotated frames).

    With 10 trees about (1 - 1/e)^10 = 1% of frames are in every bootstrap sample; scikit-learn
    predicts 0 for them out-of-bag (and warns, silenced here), which slightly handicaps the
    smallest forests. ``max_samples`` and ``min_samples_leaf`` go to every forest (see the module
    docstring for their use on a million frames).
    """

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
            random_state=self.seed, max_samples=self.max_samples,
            min_samples_leaf=self.min_samples_leaf, n_jobs=self.n_jobs, **params,
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

    def fit(self, preds, labels, groups) -> "ForestFusion":
        preds = check_base_predictions(preds, labels)
        labels = np.asarray(labels, dtype=np.float64)
        keep = valid_label_mask(labels)
        X = stack_features(preds)
        if not np.isfinite(X).all():
            raise ValueError("RF fusion: base predictions contain NaN or infinite values")
        splits = list(grouped_splits(groups, keep, self.cv_splits, "RF fusion"))
        self.n_features_ = X.shape[1]
        self.models_, self.params_, self.oob_ccc_, self.grouped_cv_ccc_ = {}, {}, {}, {}
        self.cv_predictions_ = np.empty((len(X), len(TARGETS)))
        selection = []
        for i, target in enumerate(TARGETS):
            y = labels[:, i]
            rows, model = self._select(X[keep], y[keep])
            selection += [{"target": target, **row} for row in rows]
            best = max(rows, key=lambda r: r["oob_ccc"])  # max keeps the first of equal scores
            params = {"n_estimators": best["n_estimators"], "criterion": best["criterion"]}
            if model is None:  # a smaller forest won: grow it afresh (same seed, same trees)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Some inputs do not have OOB scores")
                    model = self._forest(**params, oob_score=oob_ccc).fit(X[keep], y[keep])
            model.set_params(warm_start=False)
            for train, test in splits:
                self.cv_predictions_[test, i] = self._forest(**params).fit(X[train], y[train]).predict(X[test])
            self.models_[target], self.params_[target] = model, params
            self.oob_ccc_[target] = float(model.oob_score_)
            self.grouped_cv_ccc_[target] = ccc(self.cv_predictions_[keep, i], y[keep])
        for scores in (self.oob_ccc_, self.grouped_cv_ccc_):
            scores["mean"] = float(np.mean([scores[t] for t in TARGETS]))
        self.selection_ = pd.DataFrame(selection, columns=["target", "criterion", "n_estimators", "oob_ccc"])
        return self

    def predict(self, preds) -> np.ndarray:
        """[N, 2] fused predictions, one forest per target."""
        X = stack_features(preds)
        if X.shape[1] != self.n_features_:
            raise ValueError(f"RF fusion was fitted on {self.n_features_ // 2} models, got {X.shape[1] // 2}")
        return np.stack([self.models_[t].predict(X) for t in TARGETS], axis=1)

    def summary(self) -> dict:
        """JSON-ready record: seed, chosen hyper-parameters, OOB and grouped-CV CCC per target."""
        return {
            "method": "random_forest", "seed": self.seed, "params": self.params_,
            "oob_ccc": self.oob_ccc_, "grouped_cv_ccc": self.grouped_cv_ccc_,
            "selection": self.selection_.to_dict("records"),
        }
