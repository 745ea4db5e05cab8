"""The shared trainer's options: resampling, normalisations, schedules, early stopping,
speech-only training, auxiliary losses, KELM systems, the missing-audio sweep."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_system
from test_training import synthetic_trials

from vapipe.evaluation.sweep import silenced_audio_sweep
from vapipe.features.cache import store_path, write_store
from vapipe.specs import TrainSpec
from vapipe.training import trainer as trainer_module
from vapipe.training.data import Standardizer, TrialData
from vapipe.training.kelm_system import KELMSystem
from vapipe.training.resample import resample_trial
from vapipe.training.run import inner_validation_split
from vapipe.training.system import load_system
from vapipe.training.trainer import WindowSource, learning_rate_factor, speech_only, voiced_pieces

pytestmark = pytest.mark.usefixtures("single_thread")


def test_resampling_averages_each_bin_and_keeps_its_time():
    x = np.arange(12, dtype=np.float32)[:, None]
    valid = np.ones(12, bool)
    valid[3] = False  # left out of its bin's mean
    labels = np.stack([np.arange(12), -np.arange(12) / 10], 1).astype(np.float32)
    labels[6:9] = -5  # a whole bin unlabelled
    speech = np.zeros(12, bool)
    speech[4] = True
    trial = TrialData("t", 30.0, {"f": x}, {"f": valid}, labels, speech=speech)
    low = resample_trial(trial, 10.0)  # 3 rows per bin
    assert low.n_rows == 4 and low.fps == 10.0
    np.testing.assert_allclose(low.inputs["f"][:, 0], [1, 4.5, 7, 10])
    np.testing.assert_allclose(low.labels[:, 0], [1, 4, -5, 10])
    np.testing.assert_allclose(low.labels[:, 1], [-0.1, -0.4, -5, -1], rtol=1e-6)
    np.testing.assert_array_equal(low.speech, [False, True, False, False])
    np.testing.assert_allclose(low.times, np.array([1, 4, 7, 10]) / 30)
    uneven = resample_trial(TrialData("t", 29.97, {"f": x[:10]}, {"f": valid[:10]}, None), 5.0)
    assert uneven.n_rows == 2 and uneven.valid["f"].all()  # ceil(10 * 5 / 29.97)
    with pytest.raises(ValueError, match="rate 60"):
        resample_trial(trial, 60.0)


def test_normalizations_use_training_statistics_or_each_trial_own():
    trials = synthetic_trials(2, 0)
    for kind in ("zscore", "minmax"):
        scaler = Standardizer(kind).fit(trials)
        stacked = np.concatenate([scaler.transform(t)["f"][t.valid["f"], :-1] for t in trials])
        if kind == "zscore":
            np.testing.assert_allclose(stacked.mean(0), 0, atol=1e-4)
        else:
            np.testing.assert_allclose(stacked.min(0), -1, atol=1e-4)
            np.testing.assert_allclose(stacked.max(0), 1, atol=1e-4)
    per_trial = Standardizer("trial_minmax").fit(trials)
    for t in trials:
        out = per_trial.transform(t)["f"][t.valid["f"], :-1]
        np.testing.assert_allclose(out.min(0), -1, atol=1e-4)
        np.testing.assert_allclose(out.max(0), 1, atol=1e-4)
    restored = Standardizer().load_state_dict(per_trial.state_dict())
    assert restored.kind == "trial_minmax"
    with pytest.raises(ValueError, match="unknown normalization 'rank'"):
        Standardizer("rank")


def test_schedules_warm_up_then_decay_or_restart():
    cosine = [learning_rate_factor(s, 10, 110, "cosine", 25) for s in range(110)]
    cyclic = [learning_rate_factor(s, 10, 110, "cyclic", 25) for s in range(110)]
    assert cosine[0] == pytest.approx(0.1) and cosine[9] == pytest.approx(1.0)
    assert cosine[10] == pytest.approx(1.0) and cosine[-1] < 0.01
    assert cyclic[10] == cyclic[35] == cyclic[60] == pytest.approx(1.0)  # restarts every 25 steps
    assert cyclic[34] < 0.01
    assert learning_rate_factor(50, 10, 110, "constant", 25) == 1.0
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        TrainSpec(schedule="step")


def small_trainer(window=100, stride=60, **train):
    settings = {"epochs": 6, "batch_size": 4, "lr": 3e-3, "seed": 0, **train}
    return make_system(
        "tcn_fusion",
        {"hidden": 8, "levels": 2, "kernel_size": 3, "dropout": 0.0},
        window=window,
        stride=stride,
        **settings,
    )


def test_early_stopping_keeps_the_best_validation_epoch():
    train, validation = synthetic_trials(4, 0), synthetic_trials(2, 5)
    trainer = small_trainer(epochs=40, early_stopping_patience=2, lr=0.05)
    history = trainer.fit(train, validation=validation).history_
    scores = [h["validation_mean"] for h in history]
    best = int(np.argmax(scores))
    assert len(history) == best + 3 < 40  # stopped two epochs after the best one
    assert trainer._score(validation)["mean"] == pytest.approx(scores[best], abs=1e-6)


def test_speech_training_cuts_the_trial_into_its_voiced_segments():
    trial = synthetic_trials(1, 0)[0]
    trial.speech = np.zeros(trial.n_rows, bool)
    trial.speech[10:50] = trial.speech[80:81] = trial.speech[200:] = True
    pieces = voiced_pieces(trial)
    assert [(p.times[0] * 30, p.n_rows) for p in pieces] == [(10, 40), (80, 1), (200, trial.n_rows - 200)]
    for piece, rows in zip(pieces, (slice(10, 50), slice(80, 81), slice(200, None))):
        np.testing.assert_array_equal(piece.labels, trial.labels[rows])
        for name in trial.inputs:
            assert np.shares_memory(piece.inputs[name], trial.inputs[name])  # views, not copies
            np.testing.assert_array_equal(piece.inputs[name], trial.inputs[name][rows])
    trial.speech = None
    with pytest.raises(ValueError, match="train_on 'speech' needs its speech masks"):
        voiced_pieces(trial)


def test_a_speech_trained_model_never_sees_a_row_outside_the_voiced_segments(monkeypatch):
    """Its training windows are formed inside the voiced segments (not whole trials with the other
    rows' labels masked): the window source holds the voiced rows and nothing else."""
    from vapipe.training.trainer import NeuralSystem

    trials = synthetic_trials(3, 0)
    for t in trials:
        t.speech = np.zeros(t.n_rows, bool)
        t.speech[20:110] = t.speech[150:200] = True
    sources = []
    original = NeuralSystem._source

    def spy(self, trials, labels=None, buffers_of=None):
        sources.append([t.n_rows for t in trials])
        return original(self, trials, labels, buffers_of)

    monkeypatch.setattr(NeuralSystem, "_source", spy)
    trainer = small_trainer(epochs=1, train_on="speech")
    trainer.fit(trials)
    assert sources[0] == [90, 50] * 3
    small_trainer(epochs=1).fit(synthetic_trials(3, 0))
    assert sources[-1] == [240] * 3
    small_trainer(epochs=1, train_on="speech", speech_windows="trial").fit(trials)  # the other option
    assert sources[-1] == [240] * 3


def test_speech_windows_over_whole_trials_mask_every_other_rows_label():
    trial = synthetic_trials(1, 0)[0]
    trial.speech = np.arange(trial.n_rows) % 3 == 0
    labels = speech_only(trial)
    assert (labels[~trial.speech] == -5).all()
    np.testing.assert_array_equal(labels[trial.speech], trial.labels[trial.speech])
    trial.speech = None
    with pytest.raises(ValueError, match="train_on 'speech' needs its speech masks"):
        speech_only(trial)


def test_a_low_rate_system_predicts_at_bin_times(tmp_path):
    train = synthetic_trials(3, 0)
    trainer = small_trainer(window=20, stride=10, rate=5.0, epochs=2)
    trainer.fit(train)
    table = trainer.predictions_table(train[:1], "heldout")
    assert len(table) == 40  # 240 rows at 30 fps = 8 s = 40 bins at 5 fps
    np.testing.assert_allclose(table["time"].to_numpy()[:2], [2.5 / 30, 8.5 / 30])
    again = load_system(trainer.save(tmp_path / "checkpoint"))
    for got, want in zip(again.predict(train[0]), trainer.predict(train[0])):
        np.testing.assert_array_equal(got, want)


def two_modality_trials(n, seed):
    out = []
    for t in synthetic_trials(n, seed):
        out.append(
            TrialData(
                t.trial,
                t.fps,
                {"face_a": t.inputs["f"][:, :6], "voice_b": t.inputs["f"][:, 6:]},
                {"face_a": t.valid["f"], "voice_b": t.valid["f"]},
                t.labels,
            )
        )
    return out


def test_an_auxiliary_loss_model_trains_and_predicts_through_the_trainer(tmp_path):
    prototypes = np.random.default_rng(0).normal(size=(9, 16)).astype(np.float32)
    np.save(tmp_path / "p.npy", prototypes)
    trainer = make_system(
        "dasp",
        {"hidden": 16, "prototypes": str(tmp_path / "p.npy")},
        window=60,
        stride=40,
        features=("face_a", "voice_b"),
        epochs=2,
        batch_size=4,
    )
    trials = two_modality_trials(2, 0)
    history = trainer.fit(trials).history_
    assert np.isfinite(history[-1]["loss"])
    times, prediction = trainer.predict(trials[0])
    assert prediction.shape == (240, 2) and len(times) == 240


def test_kelm_system_fits_selects_and_round_trips(tmp_path):
    system = make_system("kelm", {"window_seconds": 1.0, "step_seconds": 0.5})
    train, validation, test = synthetic_trials(4, 0), synthetic_trials(2, 3), synthetic_trials(2, 7)
    history = system.fit(train, validation=validation).history_
    assert history[0]["kernel"] in ("linear", "rbf") and len(system.regressor_.selection_) == 12
    assert system.score(test)["mean"] > 0.5
    table = system.predictions_table(test[:1], "heldout")
    assert len(table) == 15 and table["time"].is_monotonic_increasing  # 8 s, 1 s windows every 0.5 s
    with pytest.raises(ValueError, match="KELM: the validation trials give 1 window"):
        make_system("kelm", {"window_seconds": 8.0}).fit(train, validation=validation[:1])
    again = load_system(system.save(tmp_path / "kelm"))
    assert isinstance(again, KELMSystem)
    for got, want in zip(again.predict(test[0]), system.predict(test[0])):
        np.testing.assert_array_equal(got, want)


def test_kelm_holds_its_fold_as_float16_and_computes_the_same_functionals():
    """A KELM fold at Aff-Wild2 size is 8 GB as stored and 16 GB widened: it is held as stored and
    each trial is widened on its own, which changes no functional (float16 widens exactly)."""
    assert KELMSystem.feature_dtype == np.float16
    trial = synthetic_trials(1, 0)[0]
    stored = trial.inputs["f"].astype(np.float16)
    system = make_system("kelm", {"window_seconds": 0.5})
    wide = TrialData("t", 30.0, {"f": stored.astype(np.float32)}, trial.valid, trial.labels)
    narrow = TrialData("t", 30.0, {"f": stored}, trial.valid, trial.labels)
    got, want = system._functionals(narrow), system._functionals(wide)
    assert got[0].dtype == np.float32
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_inner_validation_split_holds_out_whole_videos_reproducibly():
    manifest = pd.DataFrame(
        {"trial": ["a_left", "a_right", "b", "c", "d", "e"], "video": ["a", "a", "b", "c", "d", "e"]}
    )
    train, validation = inner_validation_split(list(manifest.trial), manifest, 0.4, seed=0)
    assert sorted(train + validation) == sorted(manifest.trial)
    assert len({manifest.set_index("trial").video[t] for t in validation}) == 2
    assert ("a_left" in validation) == ("a_right" in validation)
    assert inner_validation_split(list(manifest.trial), manifest, 0.4, seed=0) == (train, validation)


def test_a_trained_system_degrades_from_its_intact_score_as_its_audio_is_silenced(tmp_path):
    """Through the real trainer: share 0 is the system's own score, and a system whose only signal
    is the voice loses more of it the more of the voice is silenced (held at one silent row). The
    sweep's own protocol is tested in test_missing_audio.py."""
    rng = np.random.default_rng(5)
    trials = []
    for t in two_modality_trials(5, 0):  # the face made pure noise: the voice carries the labels
        t.inputs["face_a"] = rng.normal(size=t.inputs["face_a"].shape).astype(np.float32)
        trials.append(t)
    trainer = make_system(
        "tcn_fusion",
        {"hidden": 8, "levels": 2, "kernel_size": 3},
        features=("face_a", "voice_b"),
        epochs=15,
        batch_size=4,
        lr=3e-3,
    )
    trainer.fit(trials[:3])
    held_out = trials[3:]
    silent_row = held_out[0].inputs["voice_b"].mean(axis=0)
    roots = {}
    for share in (0.4, 0.8):
        roots[(share, 0)] = tmp_path / f"silenced_{share}"
        for t in held_out:
            voice = t.inputs["voice_b"].copy()
            silenced = slice(0, round(share * t.n_rows))  # one segment from the start
            voice[silenced] = silent_row
            write_store(store_path(roots[(share, 0)], "voice_b", t.trial), voice, t.valid["voice_b"], {})
    table = silenced_audio_sweep(trainer, held_out, ["voice_b"], roots)
    assert list(table.share) == [0.0, 0.4, 0.8]
    assert table.loc[0, "mean"] == pytest.approx(trainer.score(held_out)["mean"], abs=1e-6)
    valence = table["valence"].tolist()  # the voice columns carry valence (arousal: little)
    assert valence[0] > 0.8
    assert valence[0] - 0.1 > valence[1] > valence[2] + 0.1


def identity_standardizer(dim: int) -> Standardizer:
    scaler = Standardizer()
    scaler.mean_, scaler.scale_ = {"f": np.zeros(dim)}, {"f": np.ones(dim)}
    return scaler


def test_a_batch_keeps_padding_apart_from_unlabelled_frames():
    """The padding mask is each window's length; the loss mask is also False at -5 frames."""
    y_long = np.zeros((6, 2), np.float32)
    y_long[2] = -5  # unlabelled, but a real step
    y_short = np.full((4, 2), 0.5, np.float32)
    y_short[0, 1] = -5  # one dimension unlabelled: left out of the loss
    trials = [
        TrialData("long", 30.0, {"f": np.ones((6, 3), np.float32)}, {"f": np.ones(6, bool)}, y_long),
        TrialData("short", 30.0, {"f": np.full((4, 3), 2, np.float32)}, {"f": np.ones(4, bool)}, y_short),
    ]
    source = WindowSource(trials, identity_standardizer(3), [y_long, y_short], 6, 6, torch.device("cpu"), 2)
    inputs, labels, loss_mask, padding, _ = source.batch(np.array([0, 1]), torch.tensor([0, 1]))
    assert padding.dtype == torch.bool and loss_mask.dtype == torch.bool
    np.testing.assert_array_equal(padding.numpy(), [[True] * 6, [True] * 4 + [False] * 2])
    labelled = np.array([[1, 1, 0, 1, 1, 1], [0, 1, 1, 1, 0, 0]], bool)
    np.testing.assert_array_equal(loss_mask.numpy(), padding.numpy() & labelled)
    assert padding[0, 2] and not loss_mask[0, 2]  # an unlabelled real step is no padding
    assert inputs["f"].shape == (2, 6, 4) and (inputs["f"][1, 4:] == 0).all()  # valid flag appended
    np.testing.assert_array_equal(inputs["f"][1, :4].numpy(), np.tile([2, 2, 2, 1], (4, 1)))
    np.testing.assert_array_equal(labels[1, :4].numpy(), y_short)


def test_training_gives_the_model_its_padding_mask_and_prediction_none(monkeypatch):
    """Windows at a short trial's end are padded in the batch: the model is told which steps are real."""
    seen = []

    def spying_create_model(name, input_dims, **params):
        model = create_model(name, input_dims, **params)
        forward = model.forward

        def spy(inputs, padding_mask=None):
            seen.append((model.training, None if padding_mask is None else padding_mask.clone()))
            return forward(inputs, padding_mask=padding_mask)

        model.forward = spy
        return model

    create_model = trainer_module.create_model
    monkeypatch.setattr(trainer_module, "create_model", spying_create_model)
    trials = synthetic_trials(2, 0)
    short = TrialData(
        "short",
        trials[0].fps,
        {"f": trials[0].inputs["f"][:13]},
        {"f": trials[0].valid["f"][:13]},
        trials[0].labels[:13],
    )
    trainer = small_trainer(window=20, stride=10, epochs=1, batch_size=64)
    trainer.fit([trials[1], short])
    training = [mask for is_training, mask in seen if is_training]
    assert len(training) == 1  # one batch: every window of both trials
    lengths = sorted(training[0].sum(dim=1).tolist())
    assert lengths[0] == 13 and set(lengths[1:]) == {20}  # the short trial's window is padded to 20
    seen.clear()
    trainer.predict(short)
    assert seen and all(not is_training and mask is None for is_training, mask in seen)


class FrameByFrame(torch.nn.Module):
    """A model whose forward takes no padding mask."""

    def __init__(self, input_dims):
        super().__init__()
        self.head = torch.nn.Linear(sum(input_dims.values()), 2)

    def forward(self, inputs):
        return torch.tanh(self.head(torch.cat(list(inputs.values()), dim=-1)))


def test_a_model_whose_forward_takes_no_padding_mask_is_refused_at_registration():
    from vapipe.models import register_model

    with pytest.raises(TypeError, match="model 'frame_by_frame': forward must take padding_mask"):
        register_model("frame_by_frame")(FrameByFrame)
    assert "frame_by_frame" not in trainer_module.MODELS
