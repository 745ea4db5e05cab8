"""Frames sampled at equal intervals (DASP, paper 004, sec. 4.1), the other way to see a trial at a rate.

DASP cuts each video into 10-s windows and feeds its model frames "uniformly sampled at equal
intervals" from each window, not every frame. With ``train: {rate: N / 10, sampling: pick}`` and a
window of N rows, every training window spans exactly 10 s and holds N frames 10 / N s apart:
row k is the frame nearest to the middle of [k / rate, (k + 1) / rate), with that frame's own
features, validity, labels, speech flag and time. Predictions at the sampled frames (overlapping
windows averaged per row) go back to every frame by the post-processing's linear interpolation
between the sampled frames' times (`vapipe.post.predictions.postprocess_trial`), as for any rate.

``sampling: mean`` is `vapipe.training.resample.resample_trial` (Dresvyanskiy et al.'s 5 FPS: each
row the mean of its bin's frames).
"""

from __future__ import annotations

import math

import numpy as np

from vapipe.training.data import TrialData
from vapipe.training.resample import resample_trial

SAMPLINGS = ("mean", "pick")


def sampled_rows(times: np.ndarray, rate: float) -> np.ndarray:
    """Index of the row nearest to each bin middle (k + 0.5) / rate, over the span of `times`
    (sorted, seconds); a row picked twice (a gap in a variable-rate video) is kept once."""
    if rate <= 0:
        raise ValueError(f"sampling rate must be positive, got {rate}")
    times = np.asarray(times, dtype=np.float64)
    if len(times) == 1:
        return np.zeros(1, dtype=np.int64)
    first = math.floor(times[0] * rate + 1e-9)
    last = math.floor(times[-1] * rate + 1e-9)
    middles = (np.arange(first, last + 1) + 0.5) / rate
    right = np.clip(np.searchsorted(times, middles), 1, len(times) - 1)
    left_closer = (middles - times[right - 1]) <= (times[right] - middles)
    return np.unique(np.where(left_closer, right - 1, right)).astype(np.int64)


def sample_trial(trial: TrialData, rate: float) -> TrialData:
    """The trial's frames picked at `rate` per second (`sampled_rows`): rows, not bin means."""
    if rate > trial.fps:
        raise ValueError(f"sampling rate {rate} must not exceed the video's {trial.fps} fps")
    rows = sampled_rows(trial.times, rate)
    return TrialData(
        trial.trial,
        rate,
        {name: x[rows] for name, x in trial.inputs.items()},
        {name: v[rows] for name, v in trial.valid.items()},
        None if trial.labels is None else trial.labels[rows],
        speech=None if trial.speech is None else trial.speech[rows],
        times=trial.times[rows],
    )


def at_rate(trial: TrialData, rate: float | None, sampling: str = "mean") -> TrialData:
    """The trial as a model at `rate` rows per second sees it (None: unchanged): bin means or picked frames."""
    if not rate:
        return trial
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got '{sampling}'")
    return sample_trial(trial, rate) if sampling == "pick" else resample_trial(trial, rate)
