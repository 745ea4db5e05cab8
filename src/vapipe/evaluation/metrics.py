"""The ABAW valence-arousal metric: concordance correlation coefficient (CCC)."""

from __future__ import annotations

import numpy as np

from vapipe import INVALID_LABEL, TARGETS

# A CCC denominator below this means both series are constant: their variances are rounding
# residue (~1e-33), and dividing by them would make, e.g., two constant 0.4 series score 1.
CONSTANT_DENOMINATOR = 1e-12


def ccc(prediction: np.ndarray, truth: np.ndarray) -> float:
    """CCC = 2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))^2), population moments."""
    x = np.asarray(prediction, dtype=np.float64)
    y = np.asarray(truth, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"ccc: prediction shape {x.shape} differs from truth shape {y.shape}")
    if x.size < 2:
        raise ValueError("ccc: need at least two frames")
    mx, my = x.mean(), y.mean()
    cov = np.mean((x - mx) * (y - my))
    denominator = x.var() + y.var() + (mx - my) ** 2
    return float(2.0 * cov / denominator) if denominator > CONSTANT_DENOMINATOR else 0.0


def valid_label_mask(labels: np.ndarray) -> np.ndarray:
    """Frames whose valence and arousal are both annotated (Aff-Wild2 writes -5 for neither)."""
    labels = np.asarray(labels)
    return np.all(labels != INVALID_LABEL, axis=-1) & np.all(np.isfinite(labels), axis=-1)


def va_scores(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """CCC per target over valid frames of [N, 2] arrays (columns valence, arousal) and their mean.

    Callers concatenate all trials first: the challenge scores the pooled frames, not a per-trial mean.
    """
    predictions = np.asarray(predictions, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if predictions.shape != labels.shape or predictions.ndim != 2 or predictions.shape[1] != 2:
        raise ValueError(f"va_scores: expected two [N, 2] arrays, got {predictions.shape} and {labels.shape}")
    keep = valid_label_mask(labels)
    scores = {name: ccc(predictions[keep, i], labels[keep, i]) for i, name in enumerate(TARGETS)}
    scores["mean"] = (scores["valence"] + scores["arousal"]) / 2.0
    scores["n_frames"] = int(keep.sum())
    return scores
