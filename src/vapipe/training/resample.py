"""Windows at a lower rate than the video's: frames averaged into bins of 1/rate seconds.

Dresvyanskiy et al. train their dynamic models on 5 FPS sequences. Bin k holds the rows whose
time t falls in [k / rate, (k + 1) / rate): with t = i / fps, floor(i * rate / fps) == k, and a
variable-rate video's rows bin by their timestamps (bins no row falls in are left out). Features are
the mean of the bin's valid rows (the bin is valid if any row is); a bin with no valid row carries
the nearest earlier valid bin's value (the next one before the first), as `fill_invalid` fills
frames at the video rate, never zeros, which after normalisation would be a large spurious input.
Labels are the mean of the bin's labelled rows (-5 if none is), and the bin's time is the mean time
of its rows, so the post-processing interpolates the outputs back onto every frame at the right place.
"""

from __future__ import annotations

import numpy as np

from vapipe.training.data import TrialData, fill_invalid


def bin_index(n_rows: int, fps: float, rate: float, times: np.ndarray | None = None) -> np.ndarray:
    """Bin of every row: floor(i * rate / fps), or floor(t * rate) of its time t, numbered from 0
    without gaps."""
    if rate <= 0 or rate > fps:
        raise ValueError(f"resampling rate {rate} must be in (0, fps={fps}]")
    if times is None:
        return np.floor(np.arange(n_rows) * rate / fps + 1e-9).astype(np.int64)
    return np.unique(np.floor(np.asarray(times) * rate + 1e-9).astype(np.int64), return_inverse=True)[1]


def _bin_mean(values: np.ndarray, keep: np.ndarray, bins: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the kept rows of each bin, and whether the bin had any."""
    counts = np.bincount(bins, weights=keep.astype(np.float64), minlength=n_bins)
    sums = np.zeros((n_bins, values.shape[1]))
    np.add.at(sums, bins[keep], values[keep])
    has = counts > 0
    sums[has] /= counts[has, None]
    return sums, has


def resample_trial(trial: TrialData, rate: float) -> TrialData:
    """The trial at `rate` bins per second (inputs, validity, labels, speech, times, augmented copies)."""
    grid = np.arange(trial.n_rows) / trial.fps
    bins = bin_index(trial.n_rows, trial.fps, rate, None if np.array_equal(trial.times, grid) else trial.times)
    n_bins = int(bins[-1]) + 1
    inputs, valid = {}, {}
    for name, x in trial.inputs.items():
        mean, has = _bin_mean(x, trial.valid[name], bins, n_bins)
        inputs[name], valid[name] = fill_invalid(mean, has).astype(np.float32), has
    labels = None
    if trial.labels is not None:
        labelled = np.all(trial.labels != -5, axis=1)
        mean, has = _bin_mean(trial.labels, labelled, bins, n_bins)
        labels = np.where(has[:, None], mean, -5.0).astype(np.float32)
    speech = None
    if trial.speech is not None:
        speech = np.bincount(bins, weights=trial.speech.astype(float), minlength=n_bins) > 0
    augmented = None
    if trial.augmented:  # each training copy binned as its plain features are
        augmented = {
            name: np.stack(
                [fill_invalid(_bin_mean(c, trial.valid[name], bins, n_bins)[0], valid[name]) for c in copies]
            ).astype(np.float32)
            for name, copies in trial.augmented.items()
        }
    times, _ = _bin_mean(trial.times[:, None], np.ones(trial.n_rows, bool), bins, n_bins)
    return TrialData(trial.trial, rate, inputs, valid, labels, speech=speech, times=times[:, 0], augmented=augmented)
