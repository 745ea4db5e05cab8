"""The shared trainer: CCC loss on windows of cached features, seeded, one fold at a time."""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from vapipe.evaluation.metrics import va_scores
from vapipe.models import create_model
from vapipe.training.data import Standardizer, TrialData
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
    seed: int = 0
    device: str = "auto"
    extra: dict = field(default_factory=dict)


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


class SystemTrainer:
    """Trains one model on one fold and predicts trials with overlapping windows."""

    def __init__(self, model_name: str, model_params: dict, window: int, stride: int, train: TrainConfig):
        self.model_name = model_name
        self.model_params = model_params
        self.window = window
        self.stride = stride
        self.config = train
        self.device = resolve_device(train.device)
        self.standardizer = Standardizer()
        self.model: torch.nn.Module | None = None
        self.input_dims: dict[str, int] = {}

    def fit(self, trials: list[TrialData], monitor: list[TrialData] | None = None) -> list[dict]:
        """Train on `trials`; logs the CCC on `monitor` trials after every epoch (not used to select)."""
        generator = seed_everything(self.config.seed)
        self.standardizer.fit(trials)
        prepared = [(self.standardizer.transform(t), t.labels) for t in trials]
        self.input_dims = {n: x.shape[1] for n, x in prepared[0][0].items()}
        self.model = create_model(self.model_name, self.input_dims, **self.model_params).to(self.device)
        windows = [
            (i, s) for i, (_, y) in enumerate(prepared) for s in window_starts(len(y), self.window, self.stride)
        ]
        steps_per_epoch = math.ceil(len(windows) / self.config.batch_size)
        total = steps_per_epoch * self.config.epochs
        warmup = steps_per_epoch * self.config.warmup_epochs
        optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: (step + 1) / max(1, warmup) if step < warmup
            else 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))),
        )
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
                inputs, labels, mask = _batch(items, self.device)
                if not mask.any():
                    continue
                loss = ccc_loss(self.model(inputs), labels, mask)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                losses.append(loss.item())
            record = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan"),
                      "seconds": round(time.perf_counter() - started, 2)}
            if monitor:
                record.update({f"monitor_{k}": v for k, v in self.score(monitor).items()})
            history.append(record)
            log.info("epoch %d/%d %s", epoch + 1, self.config.epochs,
                     " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
        return history

    @torch.inference_mode()
    def predict_trial(self, trial: TrialData) -> np.ndarray:
        """[T, 2] predictions, averaging overlapping windows."""
        self.model.eval()
        x = self.standardizer.transform(trial)
        n = trial.n_rows
        total = np.zeros((n, 2))
        count = np.zeros((n, 1))
        for s in window_starts(n, self.window, self.stride):
            chunk = {k: torch.from_numpy(v[s : s + self.window])[None].to(self.device) for k, v in x.items()}
            out = self.model(chunk)[0].float().cpu().numpy()
            total[s : s + len(out)] += out
            count[s : s + len(out)] += 1
        return total / count

    def score(self, trials: list[TrialData]) -> dict[str, float]:
        """Pooled CCC over the trials' valid frames."""
        predictions = np.concatenate([self.predict_trial(t) for t in trials])
        labels = np.concatenate([t.labels for t in trials])
        return va_scores(predictions, labels)

    def predictions_table(self, trials: list[TrialData], subset: str) -> pd.DataFrame:
        """Raw predictions at the model's rate: trial, time (s), valence, arousal, set."""
        frames = []
        for t in trials:
            p = self.predict_trial(t)
            frames.append(pd.DataFrame({
                "trial": t.trial, "time": np.arange(len(p)) / t.fps,
                "valence": p[:, 0], "arousal": p[:, 1], "set": subset,
            }))
        return pd.concat(frames, ignore_index=True)

    @classmethod
    def from_checkpoint(cls, state: dict, device: str = "cpu") -> "SystemTrainer":
        """Rebuild a trained system from `state_dict()` output, ready to predict."""
        trainer = cls(state["model_name"], state["model_params"], state["window"], state["stride"],
                      TrainConfig(device=device))
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
            "window": self.window, "stride": self.stride,
            "model": self.model.state_dict(), "standardizer": self.standardizer.state_dict(),
            "input_dims": self.input_dims,
        }
