"""The neural system: any registered model trained with a CCC loss on windows of cached features,
seeded, one fold at a time (the `vapipe.training.system.System` contract)."""

from __future__ import annotations

import contextlib
import logging
import math
import time

import numpy as np
import torch

from vapipe.evaluation.metrics import va_scores
from vapipe.models import MODELS, create_model
from vapipe.runtime import autocast_on, resolve_device, seed_everything
from vapipe.specs import SystemSpec
from vapipe.training.data import Standardizer, TrialData
from vapipe.training.losses import ccc_loss
from vapipe.training.resample import resample_trial
from vapipe.training.system import System, constructor_arguments, register_system
from vapipe.training.windows import window_starts

log = logging.getLogger(__name__)


def learning_rate_factor(step: int, warmup: int, total: int, schedule: str, cycle: int) -> float:
    """Multiplier of the base learning rate at optimizer step `step` (linear warm-up first)."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    if schedule == "constant":
        return 1.0
    if schedule == "cyclic":
        return 0.5 * (1 + math.cos(math.pi * ((step - warmup) % max(1, cycle)) / max(1, cycle)))
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _batch(items: list[tuple[dict[str, np.ndarray], np.ndarray]], device) -> tuple:
    """(inputs, labels, loss mask, padding mask) of windows of unequal length, zero-padded at their end.

    The padding mask [B, T] is True at each window's real steps (the models leave the others out);
    the loss mask is also False at -5 (unlabelled) frames.
    """
    length = max(len(labels) for _, labels in items)
    names = items[0][0].keys()
    inputs = {n: np.zeros((len(items), length, items[0][0][n].shape[1]), np.float32) for n in names}
    labels = np.zeros((len(items), length, 2), np.float32)
    mask = np.zeros((len(items), length), bool)
    padding = np.zeros((len(items), length), bool)
    for b, (x, y) in enumerate(items):
        for n in names:
            inputs[n][b, : len(y)] = x[n]
        labels[b, : len(y)] = y
        mask[b, : len(y)] = np.all(y != -5, axis=1)
        padding[b, : len(y)] = True
    to = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return {n: to(a) for n, a in inputs.items()}, to(labels), to(mask), to(padding)


def speech_only(trial: TrialData) -> np.ndarray:
    """The trial's labels with every frame that is not speech set to -5 (left out of the loss)."""
    if trial.speech is None:
        raise ValueError(f"trial {trial.trial}: train_on 'speech' needs its speech masks (load_trials mask_root)")
    return np.where(trial.speech[:, None], trial.labels, -5.0).astype(np.float32)


@register_system("neural")
class NeuralSystem(System):
    """Trains one registered model (``spec.model``) on one fold; predicts trials with overlapping
    windows. Fitted: ``model_``, ``standardizer_``, ``input_dims_``, ``history_``."""

    def __init__(self, spec: SystemSpec, device: str | None = None):
        super().__init__(spec, device)
        self.config = spec.train
        self.window = spec.window
        self.stride = spec.stride
        self.device = resolve_device(self.device_name)
        self.standardizer_ = Standardizer(spec.train.normalization)
        self.model_: torch.nn.Module | None = None
        self.input_dims_: dict[str, int] = {}

    @classmethod
    def model_names(cls) -> list[str]:
        return sorted(MODELS)

    @classmethod
    def accepted_params(cls, model: str) -> set[str] | None:
        """The model class's keyword arguments besides ``input_dims``."""
        return constructor_arguments(MODELS[model], skip=("self", "input_dims"))

    def at_model_rate(self, trial: TrialData) -> TrialData:
        """The trial as the model sees it: resampled when the config sets a rate."""
        return resample_trial(trial, self.config.rate) if self.config.rate else trial

    def _autocast(self):
        """bf16/fp16 autocast on CUDA when mixed precision is on; a no-op on CPU."""
        if self.device.type == "cuda" and self.config.mixed_precision:
            return autocast_on(self.device)
        return contextlib.nullcontext()

    def _forward(
        self, inputs: dict[str, torch.Tensor], padding_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict | None]:
        """(valence-arousal [B, T, 2], auxiliary outputs or None): models with an extra objective
        (e.g. DASP's soft prompts) return a tuple and define `auxiliary_loss`. `padding_mask` [B, T]
        is True at real steps (None: all real, as in prediction's unpadded windows)."""
        out = self.model_(inputs, padding_mask=padding_mask)
        return out if isinstance(out, tuple) else (out, None)

    def fit(
        self,
        trials: list[TrialData],
        monitor: list[TrialData] | None = None,
        validation: list[TrialData] | None = None,
    ) -> NeuralSystem:
        """Train on `trials`; logs the CCC on `monitor` trials after every epoch (never used to
        select); with `validation` trials and a patience, stops early and keeps the best epoch."""
        generator = seed_everything(self.config.seed)
        trials = [self.at_model_rate(t) for t in trials]
        monitor = [self.at_model_rate(t) for t in monitor or []]
        validation = [self.at_model_rate(t) for t in validation or []]
        self.standardizer_.fit(trials)
        labels = [speech_only(t) if self.config.train_on == "speech" else t.labels for t in trials]
        prepared = [(self.standardizer_.transform(t), y) for t, y in zip(trials, labels)]
        self.input_dims_ = {n: x.shape[1] for n, x in prepared[0][0].items()}
        self.model_ = create_model(self.spec.model, self.input_dims_, **self.spec.params).to(self.device)
        windows = [(i, s) for i, (_, y) in enumerate(prepared) for s in window_starts(len(y), self.window, self.stride)]
        steps_per_epoch = math.ceil(len(windows) / self.config.batch_size)
        total = steps_per_epoch * self.config.epochs
        warmup = steps_per_epoch * self.config.warmup_epochs
        cycle = steps_per_epoch * self.config.cycle_epochs
        optimizer = torch.optim.AdamW(
            self.model_.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
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
            self.model_.train()
            order = torch.randperm(len(windows), generator=generator).tolist()
            losses = []
            for b in range(0, len(order), self.config.batch_size):
                items = []
                for k in order[b : b + self.config.batch_size]:
                    i, s = windows[k]
                    x, y = prepared[i]
                    items.append(({n: a[s : s + self.window] for n, a in x.items()}, y[s : s + self.window]))
                inputs, targets, mask, padding = _batch(items, self.device)
                if not mask.any():
                    continue
                with self._autocast():
                    predictions, aux = self._forward(inputs, padding)
                    loss = ccc_loss(predictions.float(), targets, mask)
                    if aux is not None:
                        loss = loss + self.model_.auxiliary_loss(aux, targets, mask)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(self.model_.parameters(), 1.0)
                scaler.step(optimizer)
                scaler.update()
                schedule.step()
                losses.append(loss.item())
            record = {
                "epoch": epoch + 1,
                "loss": float(np.mean(losses)) if losses else float("nan"),
                "seconds": round(time.perf_counter() - started, 2),
            }
            if monitor:
                record.update({f"monitor_{k}": v for k, v in self._score(monitor).items()})
            if patience:
                record.update({f"validation_{k}": v for k, v in self._score(validation).items()})
                if record["validation_mean"] > best["score"]:
                    state = {k: v.detach().clone() for k, v in self.model_.state_dict().items()}
                    best = {"score": record["validation_mean"], "epoch": epoch + 1, "state": state}
            history.append(record)
            log.info(
                "epoch %d/%d %s",
                epoch + 1,
                self.config.epochs,
                " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()),
            )
            if patience and epoch + 1 - best["epoch"] >= patience:
                log.info("early stop: no better validation CCC for %d epochs", patience)
                break
        if best["state"] is not None:
            self.model_.load_state_dict(best["state"])
            log.info("kept epoch %d (validation CCC mean %.4f)", best["epoch"], best["score"])
        self.history_ = history
        return self

    @torch.inference_mode()
    def predict_at_model_rate(self, trial: TrialData) -> np.ndarray:
        """[N, 2] predictions of a trial already at the model's rate, averaging overlapping windows."""
        self.model_.eval()
        x = self.standardizer_.transform(trial)
        n = trial.n_rows
        total = np.zeros((n, 2))
        count = np.zeros((n, 1))
        for s in window_starts(n, self.window, self.stride):
            chunk = {k: torch.from_numpy(v[s : s + self.window])[None].to(self.device) for k, v in x.items()}
            with self._autocast():
                out = self._forward(chunk, padding_mask=None)[0][0].float().cpu().numpy()  # one window, unpadded
            total[s : s + len(out)] += out
            count[s : s + len(out)] += 1
        return total / count

    def _predict(self, trial: TrialData) -> tuple[np.ndarray, np.ndarray]:
        trial = self.at_model_rate(trial)
        return trial.times, self.predict_at_model_rate(trial)

    def _score(self, trials: list[TrialData]) -> dict[str, float]:
        """Pooled CCC over the valid frames of trials already at the model's rate."""
        predictions = np.concatenate([self.predict_at_model_rate(t) for t in trials])
        labels = np.concatenate([t.labels for t in trials])
        return va_scores(predictions, labels)

    def score(self, trials: list[TrialData]) -> dict[str, float]:
        """Pooled CCC over the trials' valid frames, at the model's rate."""
        return self._score([self.at_model_rate(t) for t in trials])

    def _state(self) -> tuple[dict, dict[str, np.ndarray]]:
        params = (
            self.model_.checkpoint_params(self.spec.params)
            if hasattr(self.model_, "checkpoint_params")
            else dict(self.spec.params)
        )
        arrays = {f"model.{k}": v.detach().cpu().numpy() for k, v in self.model_.state_dict().items()}
        for kind, values in (("mean", self.standardizer_.mean_), ("scale", self.standardizer_.scale_)):
            arrays |= {f"normalizer.{kind}.{name}": np.asarray(v) for name, v in values.items()}
        return {"input_dims": self.input_dims_, "model_params": params}, arrays

    @classmethod
    def _from_state(cls, spec, state, arrays, device):
        system = cls(spec, device)
        system.input_dims_ = {k: int(v) for k, v in state["input_dims"].items()}
        part = lambda prefix: {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}  # noqa: E731
        system.standardizer_.mean_, system.standardizer_.scale_ = part("normalizer.mean."), part("normalizer.scale.")
        system.model_ = create_model(spec.model, system.input_dims_, **state["model_params"])
        system.model_.load_state_dict({k: torch.from_numpy(v) for k, v in part("model.").items()})
        system.model_.to(system.device).eval()
        return system
