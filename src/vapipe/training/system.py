"""The System contract (fit / predict / save / load), its registry, and self-contained checkpoints.

A system is what one ``systems.<name>`` entry of the config trains on one fold: the neural trainer
over any registered `nn.Module` (`vapipe.training.trainer.NeuralSystem`) or KELM on window
functionals (`vapipe.training.kelm_system.KELMSystem`). Every kind

- ``fit(train, monitor=None, validation=None)`` returns the system, fitted state in attributes
  ending in ``_`` (``history_`` among them), as scikit-learn estimators do;
- ``predict(trial, drop=None)`` returns its raw outputs ``(times [N] in seconds, values [N, 2])``
  at the system's own rate; `frame_predictions` brings them to every video frame with the same
  `vapipe.post.predictions.postprocess_trial` that the workflow's post-processing rule calls;
- ``save(folder)`` writes ``config.json`` (everything needed to rebuild it) and
  ``model.safetensors`` (every array); `load_system(folder)` rebuilds it from those two files
  alone: no pickle, no other file, any working directory (the transformers way).

Kinds register with `register_system`; `system_class(model)` finds the kind that builds a model
name, `list_systems` lists them.
"""

from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from vapipe.errors import InputError
from vapipe.post.predictions import postprocess_trial
from vapipe.specs import SystemSpec
from vapipe.training.data import TrialData, fill_invalid

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_FORMAT = "vapipe-system"
CHECKPOINT_VERSION = 1

SYSTEM_KINDS: dict[str, type[System]] = {}


def register_system(kind: str):
    """Class decorator: a system kind, found by `system_class` for the model names it builds."""

    def add(cls):
        cls.kind = kind
        SYSTEM_KINDS[kind] = cls
        return cls

    return add


def system_class(model: str) -> type[System]:
    """The registered kind that builds `model` (a registered nn.Module or a system kind's name)."""
    for cls in SYSTEM_KINDS.values():
        if cls.builds(model):
            return cls
    raise ValueError(f"unknown model '{model}'; known: {', '.join(known_models())}")


def known_models() -> list[str]:
    """Every model name a system can name under ``model:``."""
    return sorted({name for cls in SYSTEM_KINDS.values() for name in cls.model_names()})


def list_systems() -> dict[str, list[str]]:
    """{system kind: the model names it builds}."""
    return {kind: cls.model_names() for kind, cls in sorted(SYSTEM_KINDS.items())}


def create_system(spec: SystemSpec, device: str | None = None) -> System:
    """An unfitted system of the kind that builds ``spec.model``."""
    return system_class(spec.model)(spec, device=device)


def constructor_arguments(cls, skip: tuple[str, ...] = ("self",)) -> set[str] | None:
    """Keyword arguments of ``cls.__init__`` (None when it takes ``**kwargs``: anything goes)."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.name not in skip}


def with_dropped(trial: TrialData, drop: dict[str, np.ndarray] | None) -> TrialData:
    """The trial with the rows `drop` {feature: bool [n_rows]} marked missing, as extraction marks a
    frame it could not embed: invalid, features carried from the nearest valid row."""
    if not drop:
        return trial
    inputs, valid = dict(trial.inputs), dict(trial.valid)
    for name, rows in drop.items():
        rows = np.asarray(rows, dtype=bool)
        if rows.shape != (trial.n_rows,):
            raise ValueError(f"drop[{name!r}]: expected {trial.n_rows} rows, got {rows.shape}")
        if rows.any():
            valid[name] = valid[name] & ~rows
            inputs[name] = fill_invalid(inputs[name], valid[name])
    return TrialData(trial.trial, trial.fps, inputs, valid, trial.labels, speech=trial.speech, times=trial.times)


class System(ABC):
    """A trainable system of one config entry; see the module docstring for the contract."""

    kind: ClassVar[str]
    # KELM chooses its hyper-parameters on validation trials even without early stopping.
    needs_validation: ClassVar[bool] = False
    # The dtype `vapipe.training.run.train_fold` loads the features as (the stores hold float16).
    feature_dtype: ClassVar[type] = np.float32

    def __init__(self, spec: SystemSpec, device: str | None = None):
        self.spec = spec
        self.device_name = device or spec.train.device

    @classmethod
    def builds(cls, model: str) -> bool:
        return model in cls.model_names()

    @classmethod
    def model_names(cls) -> list[str]:
        return [cls.kind]

    @classmethod
    def accepted_params(cls, model: str) -> set[str] | None:
        """Keys ``params`` may hold for `model` (None: not checked)."""
        return None

    @abstractmethod
    def fit(
        self, train: list[TrialData], monitor: list[TrialData] | None = None, validation: list[TrialData] | None = None
    ) -> System:
        """Fit on `train`; `monitor` trials are only logged, `validation` trials may select."""

    @abstractmethod
    def _predict(self, trial: TrialData) -> tuple[np.ndarray, np.ndarray]:
        """(times [N], values [N, 2]) of one trial."""

    @abstractmethod
    def score(self, trials: list[TrialData]) -> dict[str, float]:
        """Pooled CCC of the raw outputs against the labels at the system's own rate."""

    @abstractmethod
    def _state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-ready settings, named arrays) that `_from_state` rebuilds the fitted system from."""

    @classmethod
    @abstractmethod
    def _from_state(cls, spec: SystemSpec, state: dict, arrays: dict[str, np.ndarray], device: str | None) -> System:
        """The fitted system again."""

    def predict(self, trial: TrialData, drop: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(times [N] s, values [N, 2]): raw outputs; `drop` marks rows of features as missing."""
        return self._predict(with_dropped(trial, drop))

    def predictions_table(self, trials: list[TrialData], subset: str) -> pd.DataFrame:
        """Raw outputs of trials: trial, time (s), valence, arousal, set."""
        frames = []
        for trial in trials:
            times, values = self.predict(trial)
            frames.append(
                pd.DataFrame(
                    {
                        "trial": trial.trial,
                        "time": times,
                        "valence": values[:, 0],
                        "arousal": values[:, 1],
                        "set": subset,
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)

    def save(self, folder: str | Path, metadata: dict | None = None) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into `folder`; `metadata` (system name,
        fold, backbone specs, post-processing) is stored in the config beside the spec."""
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state, arrays = self._state()
        config = {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "kind": self.kind,
            "spec": self.spec.to_dict(),
            "state": state,
            **(metadata or {}),
        }
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(folder / WEIGHTS_FILE))
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=1))
        return folder


def read_checkpoint_config(folder: str | Path) -> dict:
    """A checkpoint folder's ``config.json``, checked; errors name the file."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise InputError(f"{path}: no checkpoint config (a folder written by System.save holds one)")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON ({error})") from None
    if config.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not a vapipe system checkpoint (format {config.get('format')!r})")
    if config.get("kind") not in SYSTEM_KINDS:
        raise InputError(f"{path}: unknown system kind {config.get('kind')!r}; known: {', '.join(SYSTEM_KINDS)}")
    return config


def load_system(folder: str | Path, device: str | None = "cpu") -> System:
    """A fitted system from a checkpoint folder (``config.json`` + ``model.safetensors``)."""
    from safetensors.numpy import load_file

    config = read_checkpoint_config(folder)
    weights = Path(folder) / WEIGHTS_FILE
    if not weights.is_file():
        raise InputError(f"{weights}: the checkpoint's weights are missing")
    cls = SYSTEM_KINDS[config["kind"]]
    spec = SystemSpec.from_dict(config["spec"], f"{Path(folder) / CONFIG_FILE}: spec")
    return cls._from_state(spec, config["state"], load_file(str(weights)), device)


class SeedAverage:
    """Trained seeds of one system predicting as their seed-average, the mean of their raw outputs
    at the same times, as the workflow averages a seed ensemble's predictions
    (`vapipe.evaluation.seeds.average_seed_predictions`); for `frame_predictions` and the sweep."""

    def __init__(self, members: list[System]):
        if not members:
            raise ValueError("a seed average needs at least one trained seed")
        self.members = list(members)

    def predict(self, trial: TrialData, drop: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        outputs = [member.predict(trial, drop) for member in self.members]
        times = outputs[0][0]
        if any(not np.array_equal(t, times) for t, _ in outputs[1:]):
            raise ValueError(f"trial {trial.trial}: the seeds predict at different times; cannot average them")
        return times, np.mean([values for _, values in outputs], axis=0)


def frame_predictions(
    system: System | SeedAverage,
    trial: TrialData,
    smoothing_seconds: float = 0.0,
    drop: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """[n_rows, 2]: a system's outputs on every frame of the trial, upsampled and then smoothed
    exactly as the workflow's post-processing does (`postprocess_trial`)."""
    times, values = system.predict(trial, drop)
    return postprocess_trial(times, values, trial.n_rows, trial.fps, smoothing_seconds, trial.times)


# The kinds register on import.
from vapipe.training import kelm_system, trainer  # noqa: E402,F401
