"""Dirichlet-based random weighted fusion (DWF) of Dresvyanskiy et al., ABAW 2024 (paper 001, sec. 3.3).

A large pool of weight vectors over the M base models is drawn from Dirichlet(1, ..., 1) (so every
vector is non-negative and sums to one), separately for valence and for arousal; the vector whose
fused prediction sum_m w_m * pred_m has the best CCC is kept. The paper selects on the development
set and submits on test (Table 5, systems 2-3): here the selection data are the base models'
out-of-fold predictions, and a score that was not selected on comes from trial-grouped
cross-validation of the selection itself (`cv_scores_`).

Speed: the fused prediction is linear in w, so its mean, variance and covariance with the labels
are w'mu, w'Sigma w and w'c, with mu, Sigma (M x M) and c the moments of the base predictions.
`pool_ccc` scores a whole pool from these moments: one pass over the N frames, then O(P M^2),
never an N x P matrix.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.model_selection import GroupKFold

from vapipe import TARGETS
from vapipe.evaluation.metrics import va_scores, valid_label_mask


def minimum_pool_size(n_models: int) -> int:
    """Fewest draws allowed: 1000 for two models, 2000 for three, 1000 more per further model."""
    return 1000 * max(1, n_models - 1)


def dirichlet_pool(n_models: int, size: int, seed: int | np.random.Generator) -> np.ndarray:
    """[size, n_models] weight vectors drawn from Dirichlet(1, ..., 1): uniform on the simplex."""
    if n_models < 1 or size < 1:
        raise ValueError(f"dirichlet_pool: need n_models >= 1 and size >= 1, got {n_models}, {size}")
    return np.random.default_rng(seed).dirichlet(np.ones(n_models), size=size)


def moments(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """(mean_x [M], cov_xx [M, M], cov_xy [M], mean_y, var_y) of [N, M] predictions and [N] labels.

    Population moments (divided by N), as in `vapipe.evaluation.metrics.ccc`; centred first, so
    float64 accumulation stays exact enough for millions of frames.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    mean_x, mean_y = x.mean(axis=0), float(y.mean())
    xc, yc = x - mean_x, y - mean_y
    return mean_x, xc.T @ xc / n, xc.T @ yc / n, mean_y, float(yc @ yc / n)


def pool_ccc(pool: np.ndarray, stats: tuple) -> np.ndarray:
    """[P] CCC of the fused predictions x @ w for every row w of the [P, M] pool, from `moments(x, y)`.

    CCC(w) = 2 w'c / (w' Sigma w + var_y + (w' mu - mean_y)^2); 0 where the denominator is 0.
    """
    mean_x, cov_xx, cov_xy, mean_y, var_y = stats
    pool = np.asarray(pool, dtype=np.float64)
    var_f = np.einsum("pm,mk,pk->p", pool, cov_xx, pool)
    denominator = var_f + var_y + (pool @ mean_x - mean_y) ** 2
    numerator = 2.0 * (pool @ cov_xy)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def check_base_predictions(preds: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """preds as float64 [N, M, 2]; labels, when given, must be [N, 2]."""
    preds = np.asarray(preds, dtype=np.float64)
    if preds.ndim != 3 or preds.shape[2] != len(TARGETS):
        raise ValueError(f"expected base predictions of shape [N, models, 2], got {preds.shape}")
    if labels is not None and np.shape(labels) != (preds.shape[0], len(TARGETS)):
        raise ValueError(f"expected labels of shape ({preds.shape[0]}, 2), got {np.shape(labels)}")
    return preds


def grouped_splits(groups, keep: np.ndarray, n_splits: int, what: str):
    """GroupKFold over all frames by group (trial): (train frames with labels, every test frame).

    Test frames include unannotated ones, so each trial gets a complete out-of-split prediction;
    only annotated frames are fitted on.
    """
    groups = np.asarray(groups)
    if groups.shape != keep.shape:
        raise ValueError(f"{what}: expected groups of shape {keep.shape}, got {groups.shape}")
    n_splits = min(n_splits, len(np.unique(groups[keep])))
    if n_splits < 2:
        raise ValueError(f"{what}: the grouped cross-validation needs annotated frames of at least two trials")
    for train, test in GroupKFold(n_splits=n_splits).split(keep, groups=groups):
        yield train[keep[train]], test


class DirichletWeightedFusion(BaseEstimator):
    """DWF (paper 001, sec. 3.3): per target, the best of ``pool_size`` Dirichlet(1, ..., 1) weight
    vectors by CCC on the fitting frames; `predict` is the weighted sum of the base predictions.

    ``fit(preds [N, M, 2], labels [N, 2], groups [N] = None)``: frames whose label is -5 (either
    target) are left out. Fitted attributes: ``weights_`` {target: [M]}, ``fit_scores_`` (CCC of
    the chosen weights on the frames they were chosen on: optimistic), and, when ``groups`` (e.g.
    trials) are given, ``cv_predictions_`` [N, 2] (every frame, annotated or not, fused with weights
    chosen on the other splits of a GroupKFold (``cv_splits``) from the same pool) and
    ``cv_scores_``, their pooled CCC on the annotated frames. ``seed`` fixes the pool.
    """

    def __init__(self, pool_size: int = 2000, seed: int = 0, cv_splits: int = 5):
        self.pool_size = pool_size
        self.seed = seed
        self.cv_splits = cv_splits

    def _pools(self, n_models: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        return {target: dirichlet_pool(n_models, self.pool_size, rng) for target in TARGETS}

    @staticmethod
    def _select(pools: dict[str, np.ndarray], preds: np.ndarray, labels: np.ndarray):
        weights, scores = {}, {}
        for i, target in enumerate(TARGETS):
            ccc = pool_ccc(pools[target], moments(preds[:, :, i], labels[:, i]))
            best = int(np.argmax(ccc))  # the first draw on a tie
            weights[target], scores[target] = pools[target][best].copy(), float(ccc[best])
        return weights, scores

    def fit(self, preds, labels, groups=None) -> "DirichletWeightedFusion":
        preds = check_base_predictions(preds, labels)
        labels = np.asarray(labels, dtype=np.float64)
        n_models = preds.shape[1]
        if n_models < 2:
            raise ValueError(f"DWF fuses at least two models, got {n_models}")
        if self.pool_size < minimum_pool_size(n_models):
            raise ValueError(
                f"DWF pool size {self.pool_size} is below the minimum {minimum_pool_size(n_models)} "
                f"for {n_models} models"
            )
        keep = valid_label_mask(labels)
        if keep.sum() < 2:
            raise ValueError(f"DWF needs at least two annotated frames, got {int(keep.sum())}")
        if not np.isfinite(preds).all():
            raise ValueError("DWF: base predictions contain NaN or infinite values")
        pools = self._pools(n_models)
        self.n_models_ = n_models
        self.pools_ = pools
        self.weights_, scores = self._select(pools, preds[keep], labels[keep])
        self.fit_scores_ = {**scores, "mean": float(np.mean(list(scores.values()))), "n_frames": int(keep.sum())}
        self.cv_scores_ = self.cv_predictions_ = None
        if groups is not None:
            fused = np.empty_like(labels)
            for train, test in grouped_splits(groups, keep, self.cv_splits, "DWF"):
                weights, _ = self._select(pools, preds[train], labels[train])
                fused[test] = apply_weights(preds[test], weights)
            self.cv_predictions_ = fused
            self.cv_scores_ = va_scores(fused[keep], labels[keep])
        return self

    def pool_scores(self, preds, labels) -> dict[str, np.ndarray]:
        """{target: [pool_size] CCC} of every draw of the fitted pools on these frames (for figures)."""
        preds = check_base_predictions(preds, labels)
        labels = np.asarray(labels, dtype=np.float64)
        keep = valid_label_mask(labels)
        return {
            t: pool_ccc(self.pools_[t], moments(preds[keep, :, i], labels[keep, i]))
            for i, t in enumerate(TARGETS)
        }

    def predict(self, preds) -> np.ndarray:
        """[N, 2] fused predictions: per target, the weighted sum over models."""
        preds = check_base_predictions(preds)
        if preds.shape[1] != self.n_models_:
            raise ValueError(f"DWF was fitted on {self.n_models_} models, got {preds.shape[1]}")
        return apply_weights(preds, self.weights_)

    def summary(self, models: list[str] | None = None) -> dict:
        """JSON-ready record: pool, seed, weights per target (by model name if given), scores."""
        names = models if models is not None else [f"model{m}" for m in range(self.n_models_)]
        return {
            "method": "dwf", "pool_size": self.pool_size, "seed": self.seed,
            "weights": {t: dict(zip(names, map(float, w))) for t, w in self.weights_.items()},
            "fit_scores": self.fit_scores_, "cv_scores": self.cv_scores_,
        }


def apply_weights(preds: np.ndarray, weights: dict[str, np.ndarray]) -> np.ndarray:
    """[N, 2]: column i is preds[:, :, i] @ weights[TARGETS[i]]."""
    preds = check_base_predictions(preds)
    return np.stack([preds[:, :, i] @ np.asarray(weights[t]) for i, t in enumerate(TARGETS)], axis=1)
