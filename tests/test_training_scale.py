"""A fold at full size: float16 in memory, statistics from running sums, batched prediction, windows
gathered where the features live, test trials read one at a time after the fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_system
from test_training import synthetic_trials

from vapipe.training import data as data_module
from vapipe.training import run as run_module
from vapipe.training.benchmark import read_fold_tables, synthetic_fold
from vapipe.training.data import Standardizer, TrialData
from vapipe.training.trainer import NeuralSystem
from vapipe.training.windows import window_starts

pytestmark = pytest.mark.usefixtures("single_thread")


def far_from_zero_trials() -> list[TrialData]:
    """Features around 1000 with a spread of 0.01 (float32 sums of them lose the spread), over
    more rows than one fitting chunk, with invalid rows that must not count."""
    rng = np.random.default_rng(0)
    trials = []
    for i, n in enumerate((5000, 3000, 700)):
        x = (1000 + 0.01 * rng.standard_normal((n, 3)) + np.array([0, 5, -3])).astype(np.float32)
        valid = rng.random(n) > 0.2
        x[~valid] = 1e4  # would move every statistic if it counted
        trials.append(TrialData(f"t{i}", 30.0, {"f": x}, {"f": valid}, None))
    return trials


def test_running_statistics_equal_the_two_pass_statistics():
    trials = far_from_zero_trials()
    rows = np.concatenate([t.inputs["f"][t.valid["f"]] for t in trials]).astype(np.float64)
    zscore = Standardizer("zscore").fit(trials)
    np.testing.assert_allclose(zscore.mean_["f"], rows.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(zscore.scale_["f"], rows.std(axis=0) + 1e-6, rtol=1e-9)
    minmax = Standardizer("minmax").fit(trials)
    low, high = rows.min(axis=0), rows.max(axis=0)
    np.testing.assert_array_equal(minmax.mean_["f"], (low + high) / 2)
    np.testing.assert_array_equal(minmax.scale_["f"], (high - low) / 2 + 1e-6)
    # the same statistics whatever the trials' order and dtype (a fold is float16)
    half = [TrialData(t.trial, t.fps, {"f": t.inputs["f"].astype(np.float16)}, t.valid, None) for t in trials]
    rows16 = np.concatenate([t.inputs["f"][t.valid["f"]] for t in half]).astype(np.float64)
    again = Standardizer("zscore").fit(half[::-1])
    np.testing.assert_allclose(again.mean_["f"], rows16.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(again.scale_["f"], rows16.std(axis=0) + 1e-6, rtol=1e-9)


def small_system(model: str, window: int = 40, stride: int = 25, **train) -> NeuralSystem:
    params = {
        "tcn_fusion": {"hidden": 8, "levels": 2, "kernel_size": 3, "dropout": 0.0},
        "sage": {"hidden": 16, "levels": 2, "heads": 2, "dropout": 0.0},
    }[model]
    settings = {"epochs": 1, "batch_size": 4, "lr": 3e-3, **train}
    return make_system(model, params, window=window, stride=stride, features=("face_a", "voice_b"), **settings)


def face_and_voice(trials: list[TrialData]) -> list[TrialData]:
    """The synthetic trials' 12 columns as a 6-wide face and a 6-wide voice feature."""
    return [
        TrialData(
            t.trial,
            t.fps,
            {"face_a": t.inputs["f"][:, :6], "voice_b": t.inputs["f"][:, 6:]},
            {"face_a": t.valid["f"], "voice_b": t.valid["f"]},
            t.labels,
        )
        for t in trials
    ]


def one_window_at_a_time(system: NeuralSystem, trial: TrialData) -> np.ndarray:
    """The reference: every window alone and unpadded, overlapping outputs averaged."""
    x = system.standardizer_.transform(trial)
    total, count = np.zeros((trial.n_rows, 2)), np.zeros((trial.n_rows, 1))
    with torch.inference_mode():
        for s in window_starts(trial.n_rows, system.window, system.stride):
            chunk = {k: torch.from_numpy(v[s : s + system.window])[None] for k, v in x.items()}
            out = system.model_.eval()(chunk, padding_mask=None)[0].numpy()
            total[s : s + len(out)] += out
            count[s : s + len(out)] += 1
    return total / count


@pytest.mark.parametrize("model", ["tcn_fusion", "sage"])
def test_batched_prediction_equals_one_window_at_a_time_on_every_frame(model):
    """Windows of several trials per batch, split mid-trial, a trial shorter than the window padded
    beside full ones, and a last window that ends at the trial's end."""
    system = small_system(model, batch_size=3)  # batches of 3 windows, split mid-trial
    system.fit(face_and_voice(synthetic_trials(2, 0, length=130)))
    trials = face_and_voice(synthetic_trials(3, 1, length=137))  # starts 0, 25, ..., 75 and a last one at 97
    short = face_and_voice(synthetic_trials(1, 2, length=23))[0]  # one window, padded in its batch
    trials = [trials[0], short, trials[1], trials[2]]
    batched = system.predict_source(system._source(trials))
    for trial, got in zip(trials, batched, strict=True):
        want = one_window_at_a_time(system, trial)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_gathered_windows_are_the_normalised_rows_with_the_valid_flag_and_zero_padding():
    """The one gather function (the CUDA path gathers on the GPU with it): float16 rows normalised
    in float32 per batch equal the whole trial normalised at once, padding is zero."""
    from vapipe.training.windows import gather_windows, stack_rows

    trials = synthetic_trials(2, 0, length=50)
    half = [TrialData(t.trial, t.fps, {"f": t.inputs["f"].astype(np.float16)}, t.valid, t.labels) for t in trials]
    scaler = Standardizer().fit(half)
    table, first = stack_rows([t.inputs["f"] for t in half], torch.device("cpu"))
    assert table.dtype == torch.float16 and list(first) == [0, 50]
    valid = torch.from_numpy(np.concatenate([t.valid["f"] for t in half]))
    centre, scale = (torch.from_numpy(np.stack([s] * 2)) for s in scaler.statistics(half[0])["f"])
    rows = torch.tensor([[50 + 10 + i for i in range(8)], [30 + min(i, 4) for i in range(8)]])
    real = torch.tensor([[True] * 8, [True] * 5 + [False] * 3])
    out = torch.full((2, 8, 13), 7.0)
    staging = torch.empty(2 * 8 * 12, dtype=torch.float16)
    gather_windows(table, rows, valid, rows, real, centre, scale, out, staging)
    want = scaler.transform(half[1])["f"][10:18]
    np.testing.assert_array_equal(out[0].numpy(), want)
    np.testing.assert_array_equal(out[1, :5].numpy(), scaler.transform(half[0])["f"][30:35])
    assert (out[1, 5:] == 0).all()
    fresh = gather_windows(table, rows, valid, rows, real, centre, scale, torch.empty(2, 8, 13))
    torch.testing.assert_close(fresh, out, rtol=0, atol=0)  # with or without the staging buffer


@pytest.fixture
def tiny_fold(tmp_path):
    """A synthetic fold: 4+ training, 1+ held-out and 3 test trials of 150-260 frames, two features."""
    widths = {"face_x": 6, "voice_y": 4}
    synthetic_fold(tmp_path, 0.0005, widths, test_frames=600, trial_frames=(150, 260))
    return tmp_path


def spec(model="tcn_fusion", **train):
    from vapipe.specs import SystemSpec, TrainSpec

    params = {"hidden": 8, "levels": 2, "kernel_size": 3} if model == "tcn_fusion" else {"hidden": 16, "levels": 2}
    settings = {"epochs": 1, "batch_size": 4, "device": "cpu", **train}
    return SystemSpec(model, ("face_x", "voice_y"), window=60, stride=40, params=params, train=TrainSpec(**settings))


def test_a_fold_is_loaded_once_as_float16_and_trained_on_without_a_copy(tiny_fold, monkeypatch):
    from vapipe.training.windows import stack_rows

    seen = {}
    fit = NeuralSystem.fit

    def spying_fit(self, trials, monitor=None, validation=None):
        seen["groups"] = {"train": trials, "monitor": monitor, "validation": validation}
        stacked = stack_rows([t.inputs["face_x"] for t in trials + monitor + validation], torch.device("cpu"))
        seen["table"] = stacked[0]
        return fit(self, trials, monitor, validation)

    monkeypatch.setattr(NeuralSystem, "fit", spying_fit)
    manifest, folds = read_fold_tables(tiny_fold)
    out = tiny_fold / "run"
    run_module.train_fold(
        "s",
        spec(early_stopping_patience=1, validation_fraction=0.3),
        "official",
        manifest,
        folds,
        tiny_fold / "features",
        out / "model",
        out / "p.tsv",
        out / "h.json",
    )
    groups = seen["groups"]
    assert all(len(trials) for trials in groups.values())
    trials = [t for group in groups.values() for t in group]
    for name in ("face_x", "voice_y"):
        assert {t.inputs[name].dtype for t in trials} == {np.dtype(np.float16)}
        owner = trials[0].inputs[name].base
        assert all(t.inputs[name].base is owner for t in trials)  # one array per feature
        assert len(owner) == sum(t.n_rows for t in trials)
    # what the trainer gathers from is that array itself, not a copy of it
    assert seen["table"].data_ptr() == trials[0].inputs["face_x"].base.ctypes.data


def test_test_trials_are_read_after_the_fit_one_at_a_time(tiny_fold, monkeypatch):
    events = []
    read_store = data_module.read_store
    fit, predictions_table = NeuralSystem.fit, NeuralSystem.predictions_table

    def recording_read(path, *args, **kwargs):
        events.append(("read", path.stem))
        return read_store(path, *args, **kwargs)

    def recording_fit(self, *args, **kwargs):
        events.append(("fit", None))
        return fit(self, *args, **kwargs)

    def recording_table(self, trials, subset):
        events.append(("predict", [t.trial for t in trials]))
        return predictions_table(self, trials, subset)

    monkeypatch.setattr(data_module, "read_store", recording_read)
    monkeypatch.setattr(NeuralSystem, "fit", recording_fit)
    monkeypatch.setattr(NeuralSystem, "predictions_table", recording_table)
    manifest, folds = read_fold_tables(tiny_fold)
    test = folds.loc[folds["split"] == "Test_Set", "trial"].tolist()
    assert len(test) >= 2
    out = tiny_fold / "run"
    run_module.train_fold(
        "s", spec(), "official", manifest, folds, tiny_fold / "features", out / "m", out / "p.tsv", out / "h.json"
    )
    fitted = events.index(("fit", None))
    before = {trial for kind, trial in events[:fitted] if kind == "read"}
    assert before and not before & set(test)
    after = [
        e for e in events[fitted + 1 :] if e[0] == "read" and e[1] in test or e[0] == "predict" and e[1][0] in test
    ]
    # each test trial: its two stores read, then its predictions; the next one only after
    want = []
    for trial in test:
        want += [("read", trial), ("read", trial), ("predict", [trial])]
    assert after == want


def test_an_epoch_reads_the_loss_once_not_every_step(monkeypatch):
    """No host sync per step: the step losses are summed on the device, their mean read once per epoch."""
    from vapipe.training import trainer as trainer_module

    losses, read = [], []
    ccc_loss, item = trainer_module.ccc_loss, torch.Tensor.item

    def recording_loss(*args):
        losses.append(ccc_loss(*args))
        return losses[-1]

    def recording_item(self):
        read.extend(1 for loss in losses if self is loss)
        return item(self)

    monkeypatch.setattr(trainer_module, "ccc_loss", recording_loss)
    monkeypatch.setattr(torch.Tensor, "item", recording_item)
    system = small_system("tcn_fusion", window=30, stride=30, epochs=2)
    system.fit(face_and_voice(synthetic_trials(4, 0)))
    monkeypatch.undo()
    assert len(losses) == 2 * 8 and not read  # 32 windows, 4 a batch, two epochs
    for epoch, record in enumerate(system.history_):
        step_losses = [loss.item() for loss in losses[8 * epoch : 8 * (epoch + 1)]]
        assert record["loss"] == pytest.approx(np.mean(step_losses), rel=1e-12)
