"""A KELM system (Dresvyanskiy et al.): functionals of 2-s windows -> kernel ridge, as a trainer.

It has the `SystemTrainer` interface that `vapipe.training.run` uses (fit, score,
predictions_table, state_dict, from_checkpoint), so a KELM system is one more entry under
``systems:`` with ``model: kelm``. The features of the system's backbones are concatenated per
frame, summarised per window (`vapipe.models.kelm.window_functionals`), and C and the kernel are
chosen on the validation trials (the inner split of the training videos, see `train_fold`).
Outputs sit at the window centres; the post-processing upsamples them to every frame.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from vapipe.evaluation.metrics import va_scores
from vapipe.models.kelm import KELMRegressor, window_functionals, window_targets
from vapipe.training.data import TrialData

log = logging.getLogger(__name__)


class KELMSystem:
    """Window functionals of the concatenated features, KELM regression per window."""

    model_name = "kelm"

    def __init__(self, model_params: dict):
        params = dict(model_params)
        self.window_seconds = float(params.pop("window_seconds", 2.0))
        self.step_seconds = params.pop("step_seconds", None)
        self.functionals = tuple(params.pop("functionals", ("mean", "min", "max")))
        self.model_params = model_params
        self.regressor = KELMRegressor(**params)

    def _functionals(self, trial: TrialData) -> tuple[np.ndarray, np.ndarray]:
        """([N, F * D] functionals, [N] centre rows) of a trial's features (valid flags appended)."""
        frames = np.concatenate(
            [np.concatenate([trial.inputs[n], trial.valid[n][:, None]], axis=1) for n in sorted(trial.inputs)],
            axis=1,
        )
        return window_functionals(frames, trial.fps, self.window_seconds, self.step_seconds, self.functionals)

    def _dataset(self, trials: list[TrialData]) -> tuple[np.ndarray, np.ndarray]:
        features = [self._functionals(t)[0] for t in trials]
        targets = [window_targets(t.labels, t.fps, self.window_seconds, self.step_seconds) for t in trials]
        return np.concatenate(features), np.concatenate(targets)

    def fit(self, trials: list[TrialData], monitor: list[TrialData] | None = None,
            validation: list[TrialData] | None = None) -> list[dict]:
        X, y = self._dataset(trials)
        if validation:
            val_X, val_y = self._dataset(validation)
            if np.all(val_y != -5, axis=1).sum() < 2:
                raise ValueError(
                    f"KELM: the validation trials give {len(val_X)} window(s) of {self.window_seconds} s; choosing "
                    "C and the kernel needs at least 2 labelled ones (shorter windows or a larger validation_fraction)"
                )
            self.regressor.fit(X, y, val_X, val_y)
            for choice in self.regressor.selection_:
                log.info("kernel %s C %g: validation CCC %.4f", choice["kernel"], choice["C"], choice["val_ccc"])
        else:
            self.regressor.fit(X, y)
        log.info("KELM: kernel %s, C %g, %d training windows", self.regressor.kernel_, self.regressor.C_, len(X))
        record = {"epoch": 1, "kernel": self.regressor.kernel_, "C": self.regressor.C_}
        if monitor:
            record.update({f"monitor_{k}": v for k, v in self.score(monitor).items()})
        return [record]

    def predict_windows(self, trial: TrialData) -> tuple[np.ndarray, np.ndarray]:
        """([N, 2] predictions clipped to [-1, 1], [N] window centre times in seconds)."""
        features, centres = self._functionals(trial)
        return np.clip(self.regressor.predict(features), -1, 1), trial.times[centres]

    def score(self, trials: list[TrialData]) -> dict[str, float]:
        """Pooled CCC over the windows' mean labels."""
        predictions = np.concatenate([self.predict_windows(t)[0] for t in trials])
        labels = np.concatenate([window_targets(t.labels, t.fps, self.window_seconds, self.step_seconds) for t in trials])
        return va_scores(predictions, labels)

    def predictions_table(self, trials: list[TrialData], subset: str) -> pd.DataFrame:
        frames = []
        for t in trials:
            p, times = self.predict_windows(t)
            frames.append(pd.DataFrame({"trial": t.trial, "time": times, "valence": p[:, 0],
                                        "arousal": p[:, 1], "set": subset}))
        return pd.concat(frames, ignore_index=True)

    def predict_trial(self, trial: TrialData) -> np.ndarray:
        """Per-row predictions, linearly interpolated between window centres (for `vapipe predict`)."""
        p, times = self.predict_windows(trial)
        return np.stack([np.interp(trial.times, times, p[:, j]) for j in range(2)], axis=1)

    def state_dict(self) -> dict:
        return {"model_name": self.model_name, "model_params": self.model_params, "regressor": self.regressor}

    @classmethod
    def from_checkpoint(cls, state: dict, device: str = "cpu") -> "KELMSystem":
        system = cls(state["model_params"])
        system.regressor = state["regressor"]
        return system
