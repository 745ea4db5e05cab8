"""Missing-audio robustness (IACA, paper 002, Fig. 3): a trained system scored on its held-out
trials with a growing share of the audio silenced before its backbone.

Stage 1 (`vapipe.features.silence`) re-extracts each audio feature from the silenced tracks, one
set of stores per (share, seed); here a system's audio inputs are swapped for those stores (the
face inputs stay as they are), the system predicts through the one prediction path
(`frame_predictions`: raw outputs brought to every frame, post-processed as the workflow does),
and the pooled CCC over the annotated frames is recorded. Share 0 is the intact cache. Systems
compared on one figure see the same held-out trials and the same silenced segments. Training is
untouched: this measures how a trained system degrades, not how it would adapt.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from vapipe.evaluation.metrics import va_scores
from vapipe.features.cache import read_store, store_path
from vapipe.training.data import TrialData, fill_invalid
from vapipe.training.system import System, frame_predictions

SCORES = ("valence", "arousal", "mean")


def sweep_runs(entries: list[str]) -> list[tuple[str, str]]:
    """(system, fold) of each "<system>/<fold>" entry of `report.missing_audio`, in its order."""
    return [(system, fold) for system, _, fold in (entry.partition("/") for entry in entries)]


def with_silenced_audio(trial: TrialData, audio_features: list[str], feature_root: str | Path) -> TrialData:
    """The trial with each of `audio_features` read from the silenced stores under `feature_root`."""
    inputs, valid = dict(trial.inputs), dict(trial.valid)
    for name in audio_features:
        path = store_path(feature_root, name, trial.trial)
        store = read_store(path)
        if len(store.features) != trial.n_rows:
            raise ValueError(f"{path}: {len(store.features)} rows, the trial has {trial.n_rows}")
        inputs[name] = fill_invalid(store.features, store.valid)
        valid[name] = store.valid
    return TrialData(trial.trial, trial.fps, inputs, valid, trial.labels, speech=trial.speech, times=trial.times)


def pooled_scores(system: System, trials: list[TrialData], smoothing_seconds: float) -> dict[str, float]:
    """valence, arousal, mean CCC and n_frames of the system's frame predictions, pooled over trials."""
    predictions = [frame_predictions(system, trial, smoothing_seconds) for trial in trials]
    return va_scores(np.concatenate(predictions), np.concatenate([t.labels for t in trials]))


def silenced_audio_sweep(
    system: System,
    trials: list[TrialData],
    audio_features: list[str],
    silenced_roots: Mapping[tuple[float, int], str | Path],
    smoothing_seconds: float = 0.0,
) -> pd.DataFrame:
    """One row per (share, seed): share, seed, valence, arousal, mean, n_frames. `silenced_roots`
    maps (share, seed) to the feature root of that draw's stores; share 0 (intact) is added."""
    if not audio_features:
        raise ValueError("the system has no audio features to silence")
    rows = [{"share": 0.0, "seed": -1, **pooled_scores(system, trials, smoothing_seconds)}]
    for (share, seed), root in sorted(silenced_roots.items()):
        silenced = [with_silenced_audio(trial, audio_features, root) for trial in trials]
        rows.append({"share": share, "seed": seed, **pooled_scores(system, silenced, smoothing_seconds)})
    return pd.DataFrame(rows)


def sweep_summary(per_draw: pd.DataFrame) -> pd.DataFrame:
    """One row per share: the mean of valence, arousal and mean CCC over the seeds, their standard
    deviations (`*_sd`, 0 for one draw), n_seeds and n_frames."""
    grouped = per_draw.groupby("share", sort=True)
    table = grouped[list(SCORES)].mean()
    spread = grouped[list(SCORES)].std(ddof=0).add_suffix("_sd")
    table = table.join(spread)
    table["n_seeds"] = grouped.size()
    table["n_frames"] = grouped["n_frames"].first()
    return table.reset_index()


def plot_sweep(curves: Mapping[str, pd.DataFrame], path, title: str) -> None:
    """CCC against the share of audio silenced, valence and arousal side by side (as Fig. 3), one
    line per system (a `sweep_summary` table each), the seeds' standard deviation as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for axis, target in zip(axes, ("valence", "arousal"), strict=True):
        for name, table in curves.items():
            share = 100 * table["share"]
            line = axis.plot(share, table[target], "o-", label=name)[0]
            axis.fill_between(
                share,
                table[target] - table[f"{target}_sd"],
                table[target] + table[f"{target}_sd"],
                color=line.get_color(),
                alpha=0.15,
            )
        axis.set(xlabel="audio silenced before its backbone (%)", title=target)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("CCC")
    axes[1].legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
