"""Missing-modality robustness (IACA, Fig. 3): a share of the audio frames missing at test time.

For each share p, round(p * N) frames of every held-out trial (drawn with a fixed seed, the same
frames for every audio feature of the system) are marked missing the way extraction marks a frame
it could not embed (`vapipe.training.system.with_dropped`); the system then predicts through the
one prediction path (`frame_predictions`: raw outputs, upsampled to every frame, smoothed as the
workflow does) and the pooled CCC over the valid frames is recorded. Training is untouched: this
measures how a trained system degrades, not how it would adapt. Any system kind works.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vapipe.evaluation.metrics import va_scores
from vapipe.training.data import TrialData
from vapipe.training.system import System, frame_predictions

SHARES = (0.0, 0.1, 0.2, 0.4, 0.6, 0.8)


def dropped_rows(n_rows: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """bool [n_rows] with exactly round(share * n_rows) rows set, at random positions."""
    rows = np.zeros(n_rows, dtype=bool)
    rows[rng.permutation(n_rows)[: round(share * n_rows)]] = True
    return rows


def missing_audio_sweep(
    system: System,
    trials: list[TrialData],
    audio_features: list[str],
    smoothing_seconds: float = 0.0,
    shares: tuple[float, ...] = SHARES,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per share: share, valence, arousal, mean, n_frames (pooled over `trials`)."""
    if not audio_features:
        raise ValueError("the system has no audio features to drop")
    rows = []
    for share in shares:
        rng = np.random.default_rng(seed)
        predictions, labels = [], []
        for trial in trials:
            drop = dropped_rows(trial.n_rows, share, rng)
            dropped = {name: drop for name in audio_features}
            predictions.append(frame_predictions(system, trial, smoothing_seconds, dropped))
            labels.append(trial.labels)
        rows.append({"share": share, **va_scores(np.concatenate(predictions), np.concatenate(labels))})
    return pd.DataFrame(rows)


def plot_sweep(table: pd.DataFrame, path, title: str) -> None:
    """CCC against the share of audio frames zeroed, one line per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.5))
    for column, style in (("valence", "o-"), ("arousal", "s-"), ("mean", "k--")):
        axis.plot(100 * table["share"], table[column], style, label=column)
    axis.set(xlabel="audio frames zeroed at test time (%)", ylabel="CCC", title=title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
