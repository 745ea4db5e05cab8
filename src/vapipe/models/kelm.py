"""Functionals + Kernel ELM of Dresvyanskiy et al., ABAW 2024 (paper 001, sec. 3.2.2, Table 4).

Per-frame face embeddings are summarised over non-overlapping 2-s windows by their mean, minimum
and maximum (`window_functionals`); a Kernel Extreme Learning Machine maps the functionals of a
window to its (valence, arousal). KELM's output weights (Eq. 1) are beta = (I / C + K)^-1 T and a
prediction is K(x, D) beta: exactly kernel ridge regression with alpha = 1 / C and no intercept,
so `KELMRegressor` wraps scikit-learn's `KernelRidge`. C (and the kernel) are chosen on a
validation set, as the paper chooses C on the challenge development set. The fit is a linear
solve: deterministic (a training set over ``max_windows`` is subsampled with a fixed seed).

Memory: the kernel matrix is the whole cost (N^2 float64 for N training windows). scikit-learn's
`KernelRidge.fit` holds it twice (the matrix and the solver's copy) plus an N^2 distance matrix
while building an RBF kernel; `KELMRegressor` builds K in row blocks and factorises K + I / C in
place (Cholesky), so a fit peaks at one N^2 matrix, and predicts in row blocks. On Aff-Wild2 the
paper's non-overlapping 2-s windows of ~1.6 M training frames at 30 fps are ~26,700 windows
(K: 5.7 GB); 0.5-s steps would be ~107,000 (K: 91 GB). ``max_windows`` (20,000: K 3.2 GB) caps N
with a seeded subset: scipy's LAPACK factorised a 17,000^2 matrix (2.3 GB) but crashed on a
25,000^2 one (5 GB, over 2^32 bytes) here. `kelm_fit_benchmark` measures a fit's peak memory and
`vapipe.rehearsal_resources.kelm_system_mem_mb` is what the training rule adds for a KELM system.
"""

from __future__ import annotations

import itertools
import logging
import math
import resource
import time

import numpy as np
from scipy import linalg
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics.pairwise import pairwise_kernels
from sklearn.preprocessing import StandardScaler

from vapipe.evaluation.metrics import ccc, valid_label_mask

log = logging.getLogger(__name__)

BLOCK_ELEMENTS = 2**24  # kernel entries built at once (128 MB of float64) when filling or predicting


def window_bounds(
    n_frames: int, fps: float, window_seconds: float = 2.0, step_seconds: float | None = None
) -> list[tuple[int, int]]:
    """[start, stop) frame ranges of windows of ``window_seconds`` every ``step_seconds`` (default:
    the window, i.e. non-overlapping); the last window is cut at the end so every frame is covered."""
    length = max(1, int(round(window_seconds * fps)))
    step = max(1, int(round((step_seconds if step_seconds is not None else window_seconds) * fps)))
    bounds = []
    for start in range(0, n_frames, step):
        bounds.append((start, min(start + length, n_frames)))
        if start + length >= n_frames:
            break
    return bounds


FUNCTIONALS = {"mean": np.mean, "min": np.min, "max": np.max}


def window_functionals(
    features: np.ndarray,
    fps: float,
    window_seconds: float = 2.0,
    step_seconds: float | None = None,
    functionals: tuple[str, ...] = ("mean", "min", "max"),
) -> tuple[np.ndarray, np.ndarray]:
    """([N, len(functionals) * D] the functionals of each window's frames, in the order given,
    [N] window centre frames). Table 4 of the paper compares (mean, min, max), (mean, max), (mean, min)."""
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"features must be [T, D], got shape {features.shape}")
    unknown = [f for f in functionals if f not in FUNCTIONALS]
    if unknown or not functionals:
        raise ValueError(f"functionals must be a non-empty list of {', '.join(FUNCTIONALS)}, got {list(functionals)}")
    bounds = window_bounds(len(features), fps, window_seconds, step_seconds)
    functions = [FUNCTIONALS[f] for f in functionals]
    functionals = (
        np.stack([np.concatenate([f(features[s:e], axis=0) for f in functions]) for s, e in bounds])
        if bounds
        else np.zeros((0, len(functions) * features.shape[1]), features.dtype)
    )
    centres = np.array([(s + e - 1) // 2 for s, e in bounds], dtype=np.int64)
    return functionals.astype(np.float32), centres


def window_targets(
    labels: np.ndarray,
    fps: float,
    window_seconds: float = 2.0,
    step_seconds: float | None = None,
    invalid: float = -5.0,
) -> np.ndarray:
    """[N, 2] mean label of each window's annotated frames (``invalid`` where none is annotated)."""
    labels = np.asarray(labels, dtype=np.float64)
    keep = valid_label_mask(labels)
    rows = []
    for s, e in window_bounds(len(labels), fps, window_seconds, step_seconds):
        chunk = labels[s:e][keep[s:e]]
        rows.append(chunk.mean(0) if len(chunk) else np.full(labels.shape[1], invalid))
    return np.array(rows, dtype=np.float32).reshape(-1, labels.shape[1])


def mean_ccc(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Mean over columns of the CCC (`vapipe.evaluation.metrics.ccc`)."""
    return float(np.mean([ccc(prediction[:, j], truth[:, j]) for j in range(truth.shape[1])]))


def kernel_matrix(A: np.ndarray, B: np.ndarray, kernel: str, gamma: float | None, out: np.ndarray | None = None):
    """K(A, B) [len(A), len(B)] float64, built in row blocks (no full-size temporaries); into `out`."""
    out = np.empty((len(A), len(B))) if out is None else out
    rows = max(1, min(BLOCK_ELEMENTS // max(1, len(B)), -(-len(A) // 16)))  # 128 MB, or 1/16 of K
    for start in range(0, len(A), rows):
        out[start : start + rows] = pairwise_kernels(
            A[start : start + rows], B, metric=kernel, filter_params=True, gamma=gamma
        )
    return out


def kernel_predict(X: np.ndarray, D: np.ndarray, beta: np.ndarray, kernel: str, gamma: float | None) -> np.ndarray:
    """K(X, D) beta, a block of rows of X at a time."""
    rows = max(1, BLOCK_ELEMENTS // max(1, len(D)))
    out = np.empty((len(X), *beta.shape[1:]))
    for start in range(0, len(X), rows):
        out[start : start + rows] = kernel_matrix(X[start : start + rows], D, kernel, gamma) @ beta
    return out


def kelm_weights(X: np.ndarray, T: np.ndarray, C: float, kernel: str, gamma: float | None) -> np.ndarray:
    """beta = (I / C + K)^-1 T (Eq. 1), K built and factorised in place: one N x N matrix at most."""
    K = kernel_matrix(X, X, kernel, gamma)
    K.flat[:: len(X) + 1] += 1.0 / C
    try:  # K is symmetric: its transpose is the Fortran-ordered array LAPACK factorises without a copy
        factor = linalg.cho_factor(K.T, lower=True, overwrite_a=True, check_finite=False)
        return linalg.cho_solve(factor, T, check_finite=False)
    except linalg.LinAlgError:  # not positive definite in floating point: a symmetric solve instead
        K = kernel_matrix(X, X, kernel, gamma, out=K)
        K.flat[:: len(X) + 1] += 1.0 / C
        return linalg.solve(K.T, T, assume_a="sym", overwrite_a=True, check_finite=False)


class KELMRegressor(BaseEstimator, RegressorMixin):
    """Kernel ELM: beta = (I / C + K)^-1 T (paper 001, Eq. 1) = KernelRidge(alpha = 1 / C).

    ``fit(X, y)`` uses ``C`` and ``kernel``; ``fit(X, y, val_X, val_y)`` first tries every
    (kernel, C) of ``kernel_grid`` x ``C_grid``, keeps the pair with the best mean validation CCC
    (the first in grid order on a tie) and fits it on the training set. ``selection_`` lists the
    scores. Rows whose label is -5 (or not finite) are left out. ``standardize`` z-scores the
    features with the training statistics first (the RBF ``gamma`` default, 1 / n_features, assumes
    unit-scale features). Over ``max_windows`` training rows, a random subset of that many (drawn
    with ``seed``) is fitted, so the kernel matrix stays within max_windows^2 float64 (None: all).
    """

    def __init__(
        self,
        C: float = 1.0,
        kernel: str = "rbf",
        gamma: float | None = None,
        C_grid: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0),
        kernel_grid: tuple[str, ...] = ("linear", "rbf"),
        standardize: bool = True,
        max_windows: int | None = 20000,
        seed: int = 0,
    ):
        self.C = C
        self.kernel = kernel
        self.gamma = gamma
        self.C_grid = C_grid
        self.kernel_grid = kernel_grid
        self.standardize = standardize
        self.max_windows = max_windows
        self.seed = seed

    def _ridge(self, C: float, kernel: str, X: np.ndarray, y: np.ndarray) -> KernelRidge:
        """A fitted `KernelRidge` (alpha = 1 / C): the weights solved in place by `kelm_weights`."""
        ridge = KernelRidge(alpha=1.0 / C, kernel=kernel, gamma=self.gamma)
        ridge.X_fit_, ridge.dual_coef_, ridge.n_features_in_ = X, kelm_weights(X, y, C, kernel, self.gamma), X.shape[1]
        return ridge

    @staticmethod
    def _valid(X, y, max_rows: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The labelled rows as float64 (a seeded subset of `max_rows` of them when there are more)."""
        y = np.asarray(y, dtype=np.float64)
        keep = np.flatnonzero(valid_label_mask(y) if y.ndim == 2 else np.isfinite(y) & (y != -5.0))
        if max_rows is not None and len(keep) > max_rows:
            log.info("KELM: %d of %d training windows (max_windows)", max_rows, len(keep))
            keep = np.sort(np.random.default_rng(seed).choice(keep, max_rows, replace=False))
        return np.asarray(np.asarray(X)[keep], dtype=np.float64), y[keep]

    def fit(self, X, y, val_X=None, val_y=None) -> KELMRegressor:
        """Fit on (X, y); with a validation set, choose (kernel, C) on it first."""
        X, y = self._valid(X, y, self.max_windows, self.seed)
        self.scaler_ = StandardScaler().fit(X) if self.standardize else None
        Xs = self.scaler_.transform(X, copy=False) if self.scaler_ is not None else X  # X is our own copy
        self.C_, self.kernel_ = float(self.C), self.kernel
        self.selection_ = []
        if val_X is not None:
            vX, vy = self._valid(val_X, val_y)
            vXs = self._scale(vX)
            truth = vy.reshape(len(vy), -1)
            best = -math.inf
            for kernel, C in itertools.product(self.kernel_grid, self.C_grid):
                beta = kelm_weights(Xs, y, C, kernel, self.gamma)
                prediction = kernel_predict(vXs, Xs, beta, kernel, self.gamma).reshape(len(vy), -1)
                score = mean_ccc(prediction, truth)
                self.selection_.append({"kernel": kernel, "C": float(C), "val_ccc": score})
                if score > best:
                    best, self.C_, self.kernel_ = score, float(C), kernel
        self.model_ = self._ridge(self.C_, self.kernel_, Xs, y)
        return self

    def _scale(self, X: np.ndarray) -> np.ndarray:
        return self.scaler_.transform(X) if self.scaler_ is not None else X

    def predict(self, X) -> np.ndarray:
        """K(X, D) beta."""
        ridge = self.model_
        X = self._scale(np.asarray(X, dtype=np.float64))
        return kernel_predict(X, ridge.X_fit_, ridge.dual_coef_, ridge.kernel, ridge.gamma)


def aff_wild2_windows(
    n_frames: int = 1_600_000, fps: float = 30.0, window_seconds: float = 2.0, step_seconds: float | None = 0.5
) -> int:
    """Windows of `window_seconds` every `step_seconds` over `n_frames` (as one long trial; per-trial
    ends add at most one window per trial)."""
    return len(window_bounds(n_frames, fps, window_seconds, step_seconds))


def kelm_fit_benchmark(n_windows: int, n_features: int, max_windows: int | None = 20000, seed: int = 0) -> dict:
    """Fit one (rbf, C = 1) KELM on random functionals of `n_windows` x `n_features` and report the
    kernel size and this process's peak resident memory (run it in a fresh process)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_windows, n_features), dtype=np.float32)
    y = np.tanh(X[:, :2] + 0.1 * rng.standard_normal((n_windows, 2), dtype=np.float32))
    started = time.perf_counter()
    model = KELMRegressor(C=1.0, kernel="rbf", max_windows=max_windows, seed=seed).fit(X, y)
    fitted = len(model.model_.X_fit_)
    return {
        "n_windows": n_windows,
        "fitted_windows": fitted,
        "n_features": n_features,
        "features_gb": round(X.nbytes / 1e9, 3),
        "kernel_gb": round(fitted**2 * 8 / 1e9, 3),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 3),
        "fit_seconds": round(time.perf_counter() - started, 1),
    }
