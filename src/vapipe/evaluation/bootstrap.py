"""Confidence intervals of the pooled CCC that resample videos, and paired comparisons of two systems.

Neighbouring frames of one video are far from independent (a face, a voice, a mood last seconds), so
resampling frames would pretend there are ~10^5 independent observations where there are a few dozen
videos. The bootstrap here resamples **base videos** with replacement (``<video>_left`` and
``<video>_right`` together: one scene, one audio track) and recomputes the pooled CCC over the frames
of the drawn videos, the way the challenge pools them. Each video is reduced once to the sufficient
statistics of the CCC (count, sums, sums of squares and products), so a resample is one matrix product.

The interval is the percentile interval of the resampled CCCs. A paired comparison draws the same
videos for both systems, so what the two share (hard videos, easy videos) cancels in the difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vapipe import TARGETS
from vapipe.data.affwild2 import base_video
from vapipe.evaluation.metrics import CONSTANT_DENOMINATOR, valid_label_mask

# count, sum x, sum y, sum x^2, sum y^2, sum xy
_N_MOMENTS = 6


@dataclass(frozen=True)
class Interval:
    """A CCC (or a difference of two) on all videos, and its bootstrap interval."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class Difference(Interval):
    """System A minus system B on the same resampled videos; `share_positive`: P(A > B) over resamples."""

    share_positive: float


def video_moments(predictions: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per group and target, the CCC's sufficient statistics over valid frames: ([G], [G, 2, 6]).

    Both series are shifted by the labels' overall mean first (the CCC does not change when x and y move
    together) so that sums of squares do not cancel catastrophically on millions of frames.
    """
    predictions = np.asarray(predictions, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    groups = np.asarray(groups)
    if predictions.shape != labels.shape or predictions.ndim != 2 or predictions.shape[1] != len(TARGETS):
        raise ValueError(f"video_moments: expected two [N, 2] arrays, got {predictions.shape} and {labels.shape}")
    if groups.shape != (len(labels),):
        raise ValueError(f"video_moments: {groups.shape} groups for {len(labels)} frames")
    keep = valid_label_mask(labels)
    predictions, labels, groups = predictions[keep], labels[keep], groups[keep]
    names, index = np.unique(groups, return_inverse=True)
    shift = labels.mean(axis=0) if len(labels) else np.zeros(len(TARGETS))
    x, y = predictions - shift, labels - shift
    columns = [np.ones_like(x), x, y, x * x, y * y, x * y]
    moments = np.zeros((len(names), len(TARGETS), _N_MOMENTS))
    for k, column in enumerate(columns):
        for t in range(len(TARGETS)):
            moments[:, t, k] = np.bincount(index, weights=column[:, t], minlength=len(names))
    return names, moments


def ccc_from_moments(moments: np.ndarray) -> np.ndarray:
    """Population-moment CCC from summed statistics [..., 6]; 0 where the denominator vanishes (as `ccc`)."""
    n, sx, sy, sxx, syy, sxy = np.moveaxis(moments, -1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = sx / n, sy / n
        vx, vy = sxx / n - mx * mx, syy / n - my * my
        cov = sxy / n - mx * my
        denominator = vx + vy + (mx - my) ** 2
        value = 2.0 * cov / denominator
    return np.where(denominator > CONSTANT_DENOMINATOR, value, 0.0)


def resample_counts(n_groups: int, resamples: int, seed: int) -> np.ndarray:
    """[resamples, n_groups]: how often each group is drawn in each resample (n_groups draws with replacement)."""
    if n_groups < 2:
        raise ValueError(f"bootstrap over videos needs at least two videos, got {n_groups}")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=resamples).astype(np.float64)


def _per_target(moments: np.ndarray, counts: np.ndarray | None) -> np.ndarray:
    """CCC per target and their mean, [3] on all groups or [resamples, 3] under `counts`."""
    totals = moments.sum(axis=0) if counts is None else np.einsum("bg,gtk->btk", counts, moments)
    scores = ccc_from_moments(totals)
    return np.concatenate([scores, scores.mean(axis=-1, keepdims=True)], axis=-1)


def _bounds(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    tail = (1.0 - level) / 2.0
    return np.quantile(samples, tail, axis=0), np.quantile(samples, 1.0 - tail, axis=0)


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"bootstrap level must be in (0, 1), got {level}")


def video_bootstrap(
    predictions: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Interval]:
    """Pooled CCC of valence, arousal and their mean, each with a `level` percentile interval over groups."""
    _check_level(level)
    _, moments = video_moments(predictions, labels, groups)
    estimate = _per_target(moments, None)
    low, high = _bounds(_per_target(moments, resample_counts(len(moments), resamples, seed)), level)
    names = [*TARGETS, "mean"]
    return {name: Interval(float(estimate[i]), float(low[i]), float(high[i])) for i, name in enumerate(names)}


def paired_bootstrap(
    predictions_a: np.ndarray,
    predictions_b: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Difference]:
    """CCC(A) - CCC(B) per target and for the mean, both systems scored on the same resampled groups."""
    _check_level(level)
    names_a, moments_a = video_moments(predictions_a, labels, groups)
    names_b, moments_b = video_moments(predictions_b, labels, groups)
    if not np.array_equal(names_a, names_b):  # same labels and groups: only a shape bug gets here
        raise ValueError("paired_bootstrap: the two systems cover different videos")
    counts = resample_counts(len(names_a), resamples, seed)
    estimate = _per_target(moments_a, None) - _per_target(moments_b, None)
    samples = _per_target(moments_a, counts) - _per_target(moments_b, counts)
    low, high = _bounds(samples, level)
    positive = (samples > 0).mean(axis=0)
    names = [*TARGETS, "mean"]
    return {
        name: Difference(float(estimate[i]), float(low[i]), float(high[i]), float(positive[i]))
        for i, name in enumerate(names)
    }


def base_video_groups(trials: np.ndarray) -> np.ndarray:
    """The resampling unit of every frame: its trial's raw video (``_left`` and ``_right`` together)."""
    unique, index = np.unique(np.asarray(trials), return_inverse=True)
    return np.array([base_video(str(t)) for t in unique], dtype=object)[index]
