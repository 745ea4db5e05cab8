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

from vapipe import TARGETS
from vapipe.evaluation.metrics import CONSTANT_DENOMINATOR, valid_label_mask
from vapipe.fusion.base import (  # check_base_predictions, grouped_splits: re-exported here
    LateFusion,
    check_base_predictions,
    pyplot,
    register_fusion,
    save_figure,
)


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
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > CONSTANT_DENOMINATOR)


@register_fusion("dwf")
class DirichletWeightedFusion(LateFusion):
    """DWF (paper 001, sec. 3.3): per target, the best of ``pool_size`` Dirichlet(1, ..., 1) weight
    vectors by CCC on the fitting frames; `predict` is the weighted sum of the base predictions.

    ``fit(preds [N, M, 2], labels [N, 2], groups [N] = None)`` (`LateFusion`): frames whose label is
    -5 (either target) are left out. Fitted attributes: ``weights_`` {target: [M]}, ``pools_``
    {target: [pool_size, M]}, ``fit_scores_`` (CCC of the chosen weights on the frames they were
    chosen on: optimistic; metrics row "fit"), and, when ``groups`` (e.g. trials) are given,
    ``cv_predictions_`` [N, 2] (every frame, annotated or not, fused with weights chosen on the
    other splits of a GroupKFold (``cv_splits``) from the same pool) and ``cv_scores_``, their
    pooled CCC on the annotated frames. ``seed`` fixes the pool.
    """

    display_name = "DWF"
    fit_score_name = "fit"

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

    def _check_fit(self, preds: np.ndarray, keep: np.ndarray) -> None:
        n_models = preds.shape[1]
        if n_models < 2:
            raise ValueError(f"DWF fuses at least two models, got {n_models}")
        if self.pool_size < minimum_pool_size(n_models):
            raise ValueError(
                f"DWF pool size {self.pool_size} is below the minimum {minimum_pool_size(n_models)} "
                f"for {n_models} models"
            )
        if keep.sum() < 2:
            raise ValueError(f"DWF needs at least two annotated frames, got {int(keep.sum())}")

    def _fit_frames(self, preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        # The same seed draws the same pools on every split: the cross-fitting selects from them too.
        self.pools_ = self._pools(preds.shape[1])
        self.weights_, scores = self._select(self.pools_, preds, labels)
        return scores

    def _predict_frames(self, preds: np.ndarray) -> np.ndarray:
        return apply_weights(preds, self.weights_)

    def pool_scores(self, preds, labels) -> dict[str, np.ndarray]:
        """{target: [pool_size] CCC} of every draw of the fitted pools on these frames (for figures)."""
        preds = check_base_predictions(preds, labels)
        labels = np.asarray(labels, dtype=np.float64)
        keep = valid_label_mask(labels)
        return {t: pool_ccc(self.pools_[t], moments(preds[keep, :, i], labels[keep, i])) for i, t in enumerate(TARGETS)}

    def summary(self, models: list[str] | None = None) -> dict:
        """JSON-ready record: pool, seed, weights per target (by model name if given), scores."""
        names = self.model_names(models)
        weights = {t: dict(zip(names, map(float, w))) for t, w in self.weights_.items()}
        return super().summary(models) | {"weights": weights}

    def figure(self, preds, labels, models: list[str], path) -> None:
        """Each pool draw's CCC on the fitting frames against each model's weight, chosen draw starred."""
        plt = pyplot()
        models = self.model_names(models)
        scores = self.pool_scores(preds, labels)
        fig, axes = plt.subplots(
            len(TARGETS), len(models), figsize=(3.2 * len(models), 5.6), squeeze=False, sharey="row"
        )
        for i, target in enumerate(TARGETS):
            for m, model in enumerate(models):
                ax = axes[i, m]
                ax.scatter(self.pools_[target][:, m], scores[target], s=2, alpha=0.3, color="tab:blue")
                ax.scatter(
                    [self.weights_[target][m]],
                    [scores[target].max()],
                    color="tab:red",
                    marker="*",
                    s=120,
                    label="chosen",
                )
                ax.set_xlabel(f"weight of {model}")
                if m == 0:
                    ax.set_ylabel(f"{target} CCC of the draw")
        axes[0, 0].legend(loc="lower right")
        fig.suptitle(f"DWF: {self.pool_size} Dirichlet(1, ..., 1) draws per target (seed {self.seed})")
        save_figure(fig, path)


def apply_weights(preds: np.ndarray, weights: dict[str, np.ndarray]) -> np.ndarray:
    """[N, 2]: column i is preds[:, :, i] @ weights[TARGETS[i]]."""
    preds = check_base_predictions(preds)
    return np.stack([preds[:, :, i] @ np.asarray(weights[t]) for i, t in enumerate(TARGETS)], axis=1)
