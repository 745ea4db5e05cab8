"""Functionals + Kernel ELM of Dresvyanskiy et al., ABAW 2024 (paper 001, sec. 3.2.2, Table 4).

Per-frame face embeddings are summarised over non-overlapping 2-s windows by their mean, minimum
and maximum (`window_functionals`); a Kernel Extreme Learning Machine maps the functionals of a
window to its (valence, arousal). KELM's output weights (Eq. 1) are beta = (I / C + K)^-1 T and a
prediction is K(x, D) beta: exactly kernel ridge regression with alpha = 1 / C and no intercept,
so `KELMRegressor` wraps scikit-learn's `KernelRidge`. C (and the kernel) are chosen on a
validation set, as the paper chooses C on the challenge development set. The fit is a linear
solve: deterministic, with nothing random to seed.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.kernel_ridge import KernelRidge
from sklearn.preprocessing import StandardScaler

from vapipe.evaluation.metrics import ccc, valid_label_mask


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


class KELMRegressor(BaseEstimator, RegressorMixin):
    """Kernel ELM: beta = (I / C + K)^-1 T (paper 001, Eq. 1) = KernelRidge(alpha = 1 / C).

    ``fit(X, y)`` uses ``C`` and ``kernel``; ``fit(X, y, val_X, val_y)`` first tries every
    (kernel, C) of ``kernel_grid`` x ``C_grid``, keeps the pair with the best mean validation CCC
    (the first in grid order on a tie) and fits it on the training set. ``selection_`` lists the
    scores. Rows whose label is -5 (or not finite) are left out. ``standardize`` z-scores the
    features with the training statistics first (the RBF ``gamma`` default, 1 / n_features, assumes
    unit-scale features).
    """

    def __init__(
        self,
        C: float = 1.0,
        kernel: str = "rbf",
        gamma: float | None = None,
        C_grid: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0),
        kernel_grid: tuple[str, ...] = ("linear", "rbf"),
        standardize: bool = True,
    ):
        self.C = C
        self.kernel = kernel
        self.gamma = gamma
        self.C_grid = C_grid
        self.kernel_grid = kernel_grid
        self.standardize = standardize

    def _ridge(self, C: float, kernel: str) -> KernelRidge:
        return KernelRidge(alpha=1.0 / C, kernel=kernel, gamma=self.gamma)

    @staticmethod
    def _valid(X, y) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        keep = valid_label_mask(y) if y.ndim == 2 else np.isfinite(y) & (y != -5.0)
        return X[keep], y[keep]

    def fit(self, X, y, val_X=None, val_y=None) -> KELMRegressor:
        """Fit on (X, y); with a validation set, choose (kernel, C) on it first."""
        X, y = self._valid(X, y)
        self.scaler_ = StandardScaler().fit(X) if self.standardize else None
        Xs = self._scale(X)
        self.C_, self.kernel_ = float(self.C), self.kernel
        self.selection_ = []
        if val_X is not None:
            vX, vy = self._valid(val_X, val_y)
            vXs = self._scale(vX)
            truth = vy.reshape(len(vy), -1)
            best = -math.inf
            for kernel, C in itertools.product(self.kernel_grid, self.C_grid):
                prediction = self._ridge(C, kernel).fit(Xs, y).predict(vXs).reshape(len(vy), -1)
                score = mean_ccc(prediction, truth)
                self.selection_.append({"kernel": kernel, "C": float(C), "val_ccc": score})
                if score > best:
                    best, self.C_, self.kernel_ = score, float(C), kernel
        self.model_ = self._ridge(self.C_, self.kernel_).fit(Xs, y)
        return self

    def _scale(self, X: np.ndarray) -> np.ndarray:
        return self.scaler_.transform(X) if self.scaler_ is not None else X

    def predict(self, X) -> np.ndarray:
        """K(X, D) beta."""
        return self.model_.predict(self._scale(np.asarray(X, dtype=np.float64)))
