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
from vapipe.features.mask_store import runs
from vapipe.models import MODELS, create_model
from vapipe.runtime import autocast_on, resolve_device, seed_everything
from vapipe.specs import SystemSpec
from vapipe.training.augmented import CopySampler
from vapipe.training.data import Standardizer, TrialData
from vapipe.training.losses import ccc_loss
from vapipe.training.system import System, constructor_arguments, register_system
from vapipe.training.uniform_sampling import at_rate
from vapipe.training.windows import gather_windows, stack_rows, trial_windows

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


class WindowSource:
    """Trials' rows on the model's device and the windows over them that a batch gathers.

    Features stay as loaded (a fold float16, taken without a copy on the CPU by `stack_rows`, and
    uploaded once onto a GPU, where its windows are then gathered); each batch is normalised as it is
    gathered (`gather_windows`) into buffers allocated once. `labels` [n_rows, 2] per trial are what
    the loss sees (None: unlabelled, -5). Windows are numbered trial by trial, as `trial_windows`.
    `buffers_of`: a source whose batch buffers this one reuses (never both gathering at once).
    """

    def __init__(
        self,
        trials: list[TrialData],
        standardizer: Standardizer,
        labels: list[np.ndarray | None],
        window: int,
        stride: int,
        device: torch.device,
        batch_windows: int,
        buffers_of: WindowSource | None = None,
    ):
        self.device = device
        self.lengths = np.array([t.n_rows for t in trials], np.int64)
        self.first_row = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.n_rows = int(self.lengths.sum())
        self.trial, self.start, self.length = trial_windows(self.lengths.tolist(), window, stride)
        on_device = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
        self.features, self.feature_first_row, self.valid, self.centre, self.scale = {}, {}, {}, {}, {}
        per_trial = standardizer.kind == "trial_minmax"
        statistics = [standardizer.statistics(t) for t in (trials if per_trial else trials[:1])]
        self.statistic_of_trial = on_device(np.arange(len(trials)) if per_trial else np.zeros(len(trials), np.int64))
        for name in trials[0].inputs:
            self.features[name], first = stack_rows([t.inputs[name] for t in trials], device)
            self.feature_first_row[name] = on_device(first)
            self.valid[name] = on_device(np.concatenate([t.valid[name] for t in trials]))
            self.centre[name] = on_device(np.stack([s[name][0] for s in statistics]))
            self.scale[name] = on_device(np.stack([s[name][1] for s in statistics]))
        rows = [
            np.full((n, 2), -5, np.float32) if y is None else np.asarray(y, np.float32)
            for n, y in zip(self.lengths, labels)
        ]
        label_rows = np.concatenate(rows)
        labelled = np.concatenate([[0], np.cumsum(np.all(label_rows != -5, axis=1))])
        first = self.first_row[self.trial] + self.start
        self.labelled = labelled[first + self.length] > labelled[first]  # windows with a labelled step
        self.labels = on_device(label_rows)
        self.window_trial, self.window_start, self.window_length = map(on_device, (self.trial, self.start, self.length))
        self.trial_first_row = on_device(self.first_row)
        self.batch_windows = batch_windows
        self.steps = torch.arange(window, device=device)
        size = batch_windows * window
        fits = lambda n, x: (  # noqa: E731
            buffers_of is not None
            and buffers_of.buffers[n].numel() >= size * (x.shape[1] + 1)
            and buffers_of.staging[n].dtype == x.dtype
            and buffers_of.staging[n].numel() >= size * x.shape[1]
        )
        self.buffers, self.staging = {}, {}
        for n, x in self.features.items():
            if fits(n, x):  # one source at a time gathers: they can share
                self.buffers[n], self.staging[n] = buffers_of.buffers[n], buffers_of.staging[n]
            else:
                self.buffers[n] = torch.empty(size * (x.shape[1] + 1), dtype=torch.float32, device=device)
                self.staging[n] = torch.empty(size * x.shape[1], dtype=x.dtype, device=device)

    def batch(self, ids: np.ndarray, ids_on_device: torch.Tensor) -> tuple:
        """(inputs {name: [B, T, D + 1]}, labels [B, T, 2], loss mask, padding mask, rows [B, T]) of
        windows `ids` (the same on the host and on the device), zero-padded to the longest; the
        padding mask is True at real steps, the loss mask also False at unlabelled (-5) steps. The
        inputs are views of the source's buffers: valid until the next batch."""
        length = int(self.length[ids].max())
        trial = self.window_trial[ids_on_device]
        real = self.steps[:length].unsqueeze(0) < self.window_length[ids_on_device].unsqueeze(1)
        # padded steps read the window's first row (any real row will do: they are zeroed)
        step = torch.where(real, self.steps[:length].unsqueeze(0), 0) + self.window_start[ids_on_device].unsqueeze(1)
        rows = self.trial_first_row[trial].unsqueeze(1) + step
        statistic = self.statistic_of_trial[trial]
        inputs = {}
        for name, table in self.features.items():
            dim = table.shape[1]
            out = self.buffers[name][: len(ids) * length * (dim + 1)].view(len(ids), length, dim + 1)
            feature_rows = self.feature_first_row[name][trial].unsqueeze(1) + step
            inputs[name] = gather_windows(
                table,
                feature_rows,
                self.valid[name],
                rows,
                real,
                self.centre[name][statistic],
                self.scale[name][statistic],
                out,
                self.staging[name],
            )
        labels = self.labels[rows].masked_fill_(~real.unsqueeze(-1), 0.0)
        return inputs, labels, real & torch.all(labels != -5, dim=-1), real, rows


def speech_only(trial: TrialData) -> np.ndarray:
    """The trial's labels with every row outside its voiced segments set to -5 (left out of the loss)."""
    if trial.speech is None:
        raise ValueError(f"trial {trial.trial}: train_on 'speech' needs its speech masks (load_trials mask_root)")
    return np.where(trial.speech[:, None], trial.labels, -5.0).astype(np.float32)


def voiced_pieces(trial: TrialData) -> list[TrialData]:
    """The trial's voiced segments (runs of `speech` rows), each a trial of its own whose rows are
    views of the trial's: Dresvyanskiy et al. form their audio windows inside the filtered voice
    segments, so no training window holds a row outside one."""
    if trial.speech is None:
        raise ValueError(f"trial {trial.trial}: train_on 'speech' needs its speech masks (load_trials mask_root)")
    starts, lengths, values = runs(trial.speech)
    pieces = []
    for start, length in zip(starts[values], lengths[values]):
        rows = slice(int(start), int(start + length))
        pieces.append(
            TrialData(
                trial.trial,
                trial.fps,
                {n: x[rows] for n, x in trial.inputs.items()},
                {n: v[rows] for n, v in trial.valid.items()},
                None if trial.labels is None else trial.labels[rows],
                speech=trial.speech[rows],
                times=trial.times[rows],
                augmented=None if trial.augmented is None else {n: c[:, rows] for n, c in trial.augmented.items()},
            )
        )
    return pieces


@register_system("neural")
class NeuralSystem(System):
    """Trains one registered model (``spec.model``) on one fold; predicts trials with overlapping
    windows. Fitted: ``model_``, ``standardizer_``, ``input_dims_``, ``history_``."""

    feature_dtype = np.float16  # a fold stays as stored; each batch is normalised in float32

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
        """The trial as the model sees it: at the config's rate (bin means, or frames picked) when it sets one."""
        return at_rate(trial, self.config.rate, self.config.sampling)

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
        labels = None
        if self.config.train_on == "speech" and self.config.speech_windows == "segments":
            trials = [piece for t in trials for piece in voiced_pieces(t)]  # windows inside the segments
            if not trials:
                raise ValueError("train_on 'speech': no training trial has a voiced segment")
        elif self.config.train_on == "speech":  # windows over whole trials, the loss on voiced rows
            labels = [speech_only(t) for t in trials]
        source = self._source(trials, labels)
        copies = CopySampler(trials, self.standardizer_, self.config.seed, self.device)  # augmented audio, if cached
        monitor_source = self._source(monitor, buffers_of=source) if monitor else None
        validation_source = self._source(validation, buffers_of=source) if validation else None
        self.input_dims_ = {n: x.shape[1] + 1 for n, x in source.features.items()}  # + the valid flag
        self.model_ = create_model(self.spec.model, self.input_dims_, **self.spec.params).to(self.device)
        n_windows = len(source.trial)
        steps_per_epoch = math.ceil(n_windows / self.config.batch_size)
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
            order = torch.randperm(n_windows, generator=generator)
            order_on_device = order.to(self.device)
            order = order.numpy()
            loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)  # read once per epoch
            steps = 0
            for b in range(0, n_windows, self.config.batch_size):
                ids = order[b : b + self.config.batch_size]
                if not source.labelled[ids].any():  # no labelled step: nothing to learn (known on the host)
                    continue
                batch = source.batch(ids, order_on_device[b : b + self.config.batch_size])
                inputs, targets, mask, padding, rows = batch
                inputs = copies.window_inputs(inputs, rows, padding)  # one augmented copy per window
                if len(set(source.length[ids].tolist())) == 1:  # nothing padded: the model needs no mask
                    padding = None
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
                loss_sum += loss.detach()
                steps += 1
            record = {
                "epoch": epoch + 1,
                "loss": loss_sum.item() / steps if steps else float("nan"),
                "seconds": round(time.perf_counter() - started, 2),
            }
            if monitor:
                record.update({f"monitor_{k}": v for k, v in self._score(monitor, monitor_source).items()})
            if patience:
                record.update({f"validation_{k}": v for k, v in self._score(validation, validation_source).items()})
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

    def _source(
        self, trials: list[TrialData], labels: list | None = None, buffers_of: WindowSource | None = None
    ) -> WindowSource:
        """The trials' rows on the model's device, windowed as the system windows them, in batches of
        the training batch size (prediction too: no forward needs more memory than a training step)."""
        labels = [t.labels for t in trials] if labels is None else labels
        batch = max(1, self.config.batch_size)
        return WindowSource(
            trials, self.standardizer_, labels, self.window, self.stride, self.device, batch, buffers_of
        )

    @torch.inference_mode()
    def predict_source(self, source: WindowSource) -> list[np.ndarray]:
        """[n_rows, 2] predictions of each trial of `source`, averaging overlapping windows.

        Windows run a batch (of the training batch size) at a time, in order; a batch whose windows differ in length
        (a trial shorter than the window) is padded and the model told so; one that needs no padding
        gets none, as a window alone would."""
        self.model_.eval()
        total = torch.zeros((source.n_rows, 2), dtype=torch.float64, device=self.device)
        count = torch.zeros(source.n_rows, dtype=torch.float64, device=self.device)
        n_windows = len(source.trial)
        every = torch.arange(n_windows, device=self.device)
        size = source.batch_windows
        for b in range(0, n_windows, size):
            ids = np.arange(b, min(b + size, n_windows))
            inputs, _, _, real, rows = source.batch(ids, every[b : b + size])
            padded = len(set(source.length[ids].tolist())) > 1  # known on the host: no device sync
            with self._autocast():
                out = self._forward(inputs, padding_mask=real if padded else None)[0].float()
            weight = real.to(torch.float64)
            total.index_add_(0, rows.reshape(-1), (out.double() * weight.unsqueeze(-1)).reshape(-1, 2))
            count.index_add_(0, rows.reshape(-1), weight.reshape(-1))
        mean = (total / count.unsqueeze(1)).cpu().numpy()
        return [mean[first : first + n] for first, n in zip(source.first_row, source.lengths)]

    def predict_at_model_rate(self, trial: TrialData) -> np.ndarray:
        """[N, 2] predictions of a trial already at the model's rate, averaging overlapping windows."""
        return self.predict_source(self._source([trial]))[0]

    def _predict(self, trial: TrialData) -> tuple[np.ndarray, np.ndarray]:
        trial = self.at_model_rate(trial)
        return trial.times, self.predict_at_model_rate(trial)

    def _score(self, trials: list[TrialData], source: WindowSource | None = None) -> dict[str, float]:
        """Pooled CCC over the valid frames of trials already at the model's rate (`source`: theirs)."""
        predictions = np.concatenate(self.predict_source(source or self._source(trials)))
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
