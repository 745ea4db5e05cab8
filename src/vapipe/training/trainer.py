"""The shared trainer: CCC loss on windows of cached features, seeded, one fold at a time."""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from vapipe.evaluation.metrics import va_scores
from vapipe.features.backbones import autocast_on
from vapipe.models import create_model
from vapipe.training.data import Standardizer, TrialData
from vapipe.training.resample import resample_trial
from vapipe.training.losses import ccc_loss
from vapipe.training.windows import window_starts

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Optimisation settings of a system (config: systems.<name>.train)."""

    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 2
    schedule: str = "cosine"  # after warm-up: cosine to zero, cyclic (cosine restarts), constant
    cycle_epochs: int = 10  # length of a cycle of the cyclic schedule
    early_stopping_patience: int = 0  # epochs without a better validation CCC before stopping; 0: off
    validation_fraction: float = 0.2  # of the training videos, held out to early-stop / select on
    rate: float | None = None  # windows at this many rows per second (e.g. 5); None: the video's
    normalization: str = "zscore"  # zscore, minmax or trial_minmax (vapipe.training.data)
    train_on: str = "all"  # all labelled frames, or "speech" frames only (voice activity or mouth open)
    mixed_precision: bool = True  # autocast (bf16, else fp16 with loss scaling) on CUDA
    seed: int = 0
    device: str = "auto"
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule '{self.schedule}'; known: {', '.join(SCHEDULES)}")
        if self.train_on not in ("all", "speech"):
            raise ValueError(f"train_on must be 'all' or 'speech', got '{self.train_on}'")


SCHEDULES = ("cosine", "cyclic", "constant")


def learning_rate_factor(step: int, warmup: int, total: int, schedule: str, cycle: int) -> float:
    """Multiplier of the base learning rate at optimizer step `step` (linear warm-up first)."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    if schedule == "constant":
        return 1.0
    if schedule == "cyclic":
        return 0.5 * (1 + math.cos(math.pi * ((step - warmup) % max(1, cycle)) / max(1, cycle)))
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns a generator for the data order."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _batch(items: list[tuple[dict[str, np.ndarray], np.ndarray]], device) -> tuple:
    """Pad windows of unequal length; the mask excludes padding and -5 frames."""
    length = max(len(labels) for _, labels in items)
    names = items[0][0].keys()
    inputs = {n: np.zeros((len(items), length, items[0][0][n].shape[1]), np.float32) for n in names}
    labels = np.zeros((len(items), length, 2), np.float32)
    mask = np.zeros((len(items), length), bool)
    for b, (x, y) in enumerate(items):
        for n in names:
            inputs[n][b, : len(y)] = x[n]
        labels[b, : len(y)] = y
        mask[b, : len(y)] = np.all(y != -5, axis=1)
    to = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return {n: to(a) for n, a in inputs.items()}, to(labels), to(mask)


def speech_only(trial: TrialData) -> np.ndarray:
    """The trial's labels with every frame that is not speech set to -5 (left out of the loss)."""
    if trial.speech is None:
        raise ValueError(f"trial {trial.trial}: train_on 'speech' needs its speech masks (load_trials mask_root)")
    return np.where(trial.speech[:, None], trial.labels, -5.0).astype(np.float32)


class SystemTrainer:
    """Trains one model on one fold and predicts trials with overlapping windows."""

    def __init__(self, model_name: str, model_params: dict, window: int, stride: int, train: TrainConfig):
        self.model_name = model_name
        self.model_params = model_params
        self.window = window
        self.stride = stride
        self.config = train
        self.device = resolve_device(train.device)
        self.standardizer = Standardizer(train.normalization)
        self.model: torch.nn.Module | None = None
        self.input_dims: dict[str, int] = {}

    def at_model_rate(self, trial: TrialData) -> TrialData:
        """The trial as the model sees it: resampled when the config sets a rate."""
        return resample_trial(trial, self.config.rate) if self.config.rate else trial

    def _autocast(self):
        """bf16/fp16 autocast on CUDA when mixed precision is on; a no-op on CPU."""
        if self.device.type == "cuda" and self.config.mixed_precision:
            return autocast_on(self.device)
        return contextlib.nullcontext()

    def _forward(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict | None]:
        """(valence-arousal [B, T, 2], auxiliary outputs or None): models with an extra objective
        (e.g. DASP's soft prompts) return a tuple and define `auxiliary_loss`."""
        out = self.model(inputs)
        return out if isinstance(out, tuple) else (out, None)

    def fit(
        self, trials: list[TrialData], monitor: list[TrialData] | None = None,
        validation: list[TrialData] | None = None,
    ) -> list[dict]:
        """Train on `trials`; logs the CCC on `monitor` trials after every epoch (never used to
        select); with `validation` trials and a patience, stops early and keeps the best epoch."""
        generator = seed_everything(self.config.seed)
        trials = [self.at_model_rate(t) for t in trials]
        monitor = [self.at_model_rate(t) for t in monitor or []]
        validation = [self.at_model_rate(t) for t in validation or []]
        self.standardizer.fit(trials)
        labels = [speech_only(t) if self.config.train_on == "speech" else t.labels for t in trials]
        prepared = [(self.standardizer.transform(t), y) for t, y in zip(trials, labels)]
        self.input_dims = {n: x.shape[1] for n, x in prepared[0][0].items()}
        self.model = create_model(self.model_name, self.input_dims, **self.model_params).to(self.device)
        windows = [
            (i, s) for i, (_, y) in enumerate(prepared) for s in window_starts(len(y), self.window, self.stride)
        ]
        steps_per_epoch = math.ceil(len(windows) / self.config.batch_size)
        total = steps_per_epoch * self.config.epochs
        warmup = steps_per_epoch * self.config.warmup_epochs
        cycle = steps_per_epoch * self.config.cycle_epochs
        optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: learning_rate_factor(step, warmup, total, self.config.schedule, cycle)
        )
        fp16 = self.device.type == "cuda" and self.config.mixed_precision and not torch.cuda.is_bf16_supported()
        scaler = torch.amp.GradScaler("cuda", enabled=fp16)
        patience = self.config.early_stopping_patience if validation else 0
        best = {"score": -math.inf, "epoch": 0, "state": None}
        history = []
        for epoch in range(self.config.epochs):
            started = time.perf_counter()
            self.model.train()
            order = torch.randperm(len(windows), generator=generator).tolist()
            losses = []
            for b in range(0, len(order), self.config.batch_size):
                items = []
                for k in order[b : b + self.config.batch_size]:
                    i, s = windows[k]
                    x, y = prepared[i]
                    items.append(({n: a[s : s + self.window] for n, a in x.items()}, y[s : s + self.window]))
                inputs, targets, mask = _batch(items, self.device)
                if not mask.any():
                    continue
                with self._autocast():
                    predictions, aux = self._forward(inputs)
                    loss = ccc_loss(predictions.float(), targets, mask)
                    if aux is not None:
                        loss = loss + self.model.auxiliary_loss(aux, targets, mask)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                scaler.step(optimizer)
                scaler.update()
                schedule.step()
                losses.append(loss.item())
            record = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan"),
                      "seconds": round(time.perf_counter() - started, 2)}
            if monitor:
                record.update({f"monitor_{k}": v for k, v in self._score(monitor).items()})
            if patience:
                record.update({f"validation_{k}": v for k, v in self._score(validation).items()})
                if record["validation_mean"] > best["score"]:
                    state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                    best = {"score": record["validation_mean"], "epoch": epoch + 1, "state": state}
            history.append(record)
            log.info("epoch %d/%d %s", epoch + 1, self.config.epochs,
                     " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
            if patience and epoch + 1 - best["epoch"] >= patience:
                log.info("early stop: no better validation CCC for %d epochs", patience)
                break
        if best["state"] is not None:
            self.model.load_state_dict(best["state"])
            log.info("kept epoch %d (validation CCC mean %.4f)", best["epoch"], best["score"])
        return history

    @torch.inference_mode()
    def predict_at_model_rate(self, trial: TrialData, drop: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """[N, 2] predictions of a trial already at the model's rate, averaging overlapping windows.

        `drop` {feature name: bool [N]} zeroes those rows of the model input, valid flag included
        (the missing-modality evaluation)."""
        self.model.eval()
        x = self.standardizer.transform(trial)
        for name, rows in (drop or {}).items():
            x[name][rows] = 0.0
        n = trial.n_rows
        total = np.zeros((n, 2))
        count = np.zeros((n, 1))
        for s in window_starts(n, self.window, self.stride):
            chunk = {k: torch.from_numpy(v[s : s + self.window])[None].to(self.device) for k, v in x.items()}
            with self._autocast():
                out = self._forward(chunk)[0][0].float().cpu().numpy()
            total[s : s + len(out)] += out
            count[s : s + len(out)] += 1
        return total / count

    def predict_trial(self, trial: TrialData) -> np.ndarray:
        """[N, 2] predictions at the model's rate (the trial's rows unless a rate is set)."""
        return self.predict_at_model_rate(self.at_model_rate(trial))

    def _score(self, trials: list[TrialData]) -> dict[str, float]:
        """Pooled CCC over the valid frames of trials already at the model's rate."""
        predictions = np.concatenate([self.predict_at_model_rate(t) for t in trials])
        labels = np.concatenate([t.labels for t in trials])
        return va_scores(predictions, labels)

    def score(self, trials: list[TrialData]) -> dict[str, float]:
        """Pooled CCC over the trials' valid frames, at the model's rate."""
        return self._score([self.at_model_rate(t) for t in trials])

    def predictions_table(self, trials: list[TrialData], subset: str) -> pd.DataFrame:
        """Raw predictions at the model's rate: trial, time (s), valence, arousal, set."""
        frames = []
        for t in trials:
            t = self.at_model_rate(t)
            p = self.predict_at_model_rate(t)
            frames.append(pd.DataFrame({
                "trial": t.trial, "time": t.times, "valence": p[:, 0], "arousal": p[:, 1], "set": subset,
            }))
        return pd.concat(frames, ignore_index=True)

    @classmethod
    def from_checkpoint(cls, state: dict, device: str = "cpu") -> "SystemTrainer":
        """Rebuild a trained system from `state_dict()` output, ready to predict."""
        train = TrainConfig(device=device, rate=state.get("rate"), normalization=state.get("normalization", "zscore"))
        trainer = cls(state["model_name"], state["model_params"], state["window"], state["stride"], train)
        trainer.standardizer.load_state_dict(state["standardizer"])
        trainer.input_dims = dict(state["input_dims"])
        trainer.model = create_model(trainer.model_name, trainer.input_dims, **trainer.model_params)
        trainer.model.load_state_dict(state["model"])
        trainer.model.to(trainer.device).eval()
        return trainer

    def state_dict(self) -> dict:
        """Everything needed to predict again: weights, normaliser, settings."""
        return {
            "model_name": self.model_name, "model_params": self.model_params,
            "window": self.window, "stride": self.stride, "rate": self.config.rate,
            "normalization": self.config.normalization,
            "model": self.model.state_dict(), "standardizer": self.standardizer.state_dict(),
            "input_dims": self.input_dims,
        }
