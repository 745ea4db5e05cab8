"""A KELM system (Dresvyanskiy et al.): functionals of 2-s windows -> kernel ridge, as a trainer.

It implements the `vapipe.training.system.System` contract, so a KELM system is one more entry
under ``systems:`` with ``model: kelm``. The features of the system's backbones are concatenated per
frame, summarised per window (`vapipe.models.kelm.window_functionals`), and C and the kernel are
chosen on the validation trials (the inner split of the training videos, see `train_fold`).
Outputs sit at the window centres; the post-processing upsamples them to every frame.
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.kernel_ridge import KernelRidge
from sklearn.preprocessing import StandardScaler

from vapipe.evaluation.metrics import va_scores
from vapipe.models.kelm import KELMRegressor, window_functionals, window_targets
from vapipe.specs import SystemSpec
from vapipe.training.data import TrialData
from vapipe.training.system import System, constructor_arguments, register_system

log = logging.getLogger(__name__)


@register_system("kelm")
class KELMSystem(System):
    """Window functionals of the concatenated features, KELM regression per window.

    ``params``: ``window_seconds``, ``step_seconds`` (None: non-overlapping windows),
    ``functionals`` and any `KELMRegressor` argument (C, kernel, gamma, grids, standardize).
    Fitted: ``regressor_``, ``history_``.
    """

    needs_validation = True  # C and the kernel are chosen on validation trials
    feature_dtype = np.float16  # the fold as stored (8 GB at Aff-Wild2 size, not 16); widened per trial

    @classmethod
    def accepted_params(cls, model: str) -> set[str] | None:
        return constructor_arguments(cls, skip=("self", "spec", "device")) | constructor_arguments(KELMRegressor)

    def __init__(
        self,
        spec: SystemSpec,
        device: str | None = None,
        window_seconds: float = 2.0,
        step_seconds: float | None = None,
        functionals: tuple[str, ...] = ("mean", "min", "max"),
    ):
        super().__init__(spec, device)
        params = dict(spec.params)
        self.window_seconds = float(params.pop("window_seconds", window_seconds))
        self.step_seconds = params.pop("step_seconds", step_seconds)
        self.functionals = tuple(params.pop("functionals", functionals))
        self.regressor_ = KELMRegressor(**params)

    def _functionals(self, trial: TrialData) -> tuple[np.ndarray, np.ndarray]:
        """([N, F * D] functionals, [N] centre rows) of a trial's features (valid flags appended),
        computed in float32 whatever the fold is held as (float16 stores widen exactly)."""
        frames = np.concatenate(
            [
                np.concatenate([trial.inputs[n].astype(np.float32), trial.valid[n][:, None]], axis=1)
                for n in sorted(trial.inputs)
            ],
            axis=1,
        )
        return window_functionals(frames, trial.fps, self.window_seconds, self.step_seconds, self.functionals)

    def _dataset(self, trials: list[TrialData]) -> tuple[np.ndarray, np.ndarray]:
        features = [self._functionals(t)[0] for t in trials]
        targets = [window_targets(t.labels, t.fps, self.window_seconds, self.step_seconds) for t in trials]
        return np.concatenate(features), np.concatenate(targets)

    def fit(
        self, trials: list[TrialData], monitor: list[TrialData] | None = None, validation: list[TrialData] | None = None
    ) -> KELMSystem:
        X, y = self._dataset(trials)
        if validation:
            val_X, val_y = self._dataset(validation)
            if np.all(val_y != -5, axis=1).sum() < 2:
                raise ValueError(
                    f"KELM: the validation trials give {len(val_X)} window(s) of {self.window_seconds} s; choosing "
                    "C and the kernel needs at least 2 labelled ones (shorter windows or a larger validation_fraction)"
                )
            self.regressor_.fit(X, y, val_X, val_y)
            for choice in self.regressor_.selection_:
                log.info("kernel %s C %g: validation CCC %.4f", choice["kernel"], choice["C"], choice["val_ccc"])
        else:
            self.regressor_.fit(X, y)
        log.info("KELM: kernel %s, C %g, %d training windows", self.regressor_.kernel_, self.regressor_.C_, len(X))
        record = {"epoch": 1, "kernel": self.regressor_.kernel_, "C": self.regressor_.C_}
        if monitor:
            record.update({f"monitor_{k}": v for k, v in self.score(monitor).items()})
        self.history_ = [record]
        return self

    def predict_windows(self, trial: TrialData) -> tuple[np.ndarray, np.ndarray]:
        """([N, 2] predictions clipped to [-1, 1], [N] window centre times in seconds)."""
        features, centres = self._functionals(trial)
        return np.clip(self.regressor_.predict(features), -1, 1), trial.times[centres]

    def score(self, trials: list[TrialData]) -> dict[str, float]:
        """Pooled CCC over the windows' mean labels."""
        predictions = np.concatenate([self.predict_windows(t)[0] for t in trials])
        labels = np.concatenate(
            [window_targets(t.labels, t.fps, self.window_seconds, self.step_seconds) for t in trials]
        )
        return va_scores(predictions, labels)

    def _predict(self, trial: TrialData) -> tuple[np.ndarray, np.ndarray]:
        predictions, times = self.predict_windows(trial)
        return times, predictions

    def _state(self) -> tuple[dict, dict[str, np.ndarray]]:
        regressor = self.regressor_
        ridge, scaler = regressor.model_, regressor.scaler_
        state = {
            "kernel": regressor.kernel_,
            "C": regressor.C_,
            "gamma": regressor.gamma,
            "selection": regressor.selection_,
            "standardize": scaler is not None,
        }
        arrays = {"kelm.X_fit": ridge.X_fit_, "kelm.dual_coef": ridge.dual_coef_}
        if scaler is not None:
            arrays |= {"kelm.scaler_mean": scaler.mean_, "kelm.scaler_scale": scaler.scale_}
        return state, arrays

    @classmethod
    def _from_state(cls, spec, state, arrays, device):
        system = cls(spec, device)
        regressor = system.regressor_
        regressor.kernel_, regressor.C_, regressor.selection_ = state["kernel"], float(state["C"]), state["selection"]
        ridge = KernelRidge(alpha=1.0 / regressor.C_, kernel=regressor.kernel_, gamma=state["gamma"])
        ridge.X_fit_, ridge.dual_coef_ = arrays["kelm.X_fit"], arrays["kelm.dual_coef"]
        ridge.n_features_in_ = ridge.X_fit_.shape[1]
        regressor.model_ = ridge
        regressor.scaler_ = None
        if state["standardize"]:
            scaler = StandardScaler()
            scaler.mean_, scaler.scale_ = arrays["kelm.scaler_mean"], arrays["kelm.scaler_scale"]
            scaler.var_, scaler.n_features_in_ = scaler.scale_**2, len(scaler.mean_)
            regressor.scaler_ = scaler
        return system
