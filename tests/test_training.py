import numpy as np
import pytest
import torch
from conftest import make_system

from vapipe.models import create_model
from vapipe.training.data import Standardizer, TrialData, fill_invalid
from vapipe.training.losses import ccc_loss
from vapipe.training.windows import window_starts


def test_windows_cover_the_sequence_and_end_at_its_end():
    assert window_starts(1000, 300, 200) == [0, 200, 400, 600, 700]
    assert window_starts(250, 300, 200) == [0]
    assert window_starts(300, 300, 200) == [0]


def test_tcn_fusion_keeps_length_and_range():
    model = create_model("tcn_fusion", {"face": 9, "voice": 5}, hidden=16, levels=3, kernel_size=5)
    out = model({"face": torch.randn(2, 77, 9), "voice": torch.randn(2, 77, 5)})
    assert out.shape == (2, 77, 2) and out.abs().max() <= 1


def test_unknown_model_is_named():
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        create_model("nope", {"a": 1})


def test_ccc_loss_ignores_masked_frames():
    truth = torch.linspace(-1, 1, 40).reshape(1, 40, 1).repeat(1, 1, 2)
    prediction = truth.clone()
    prediction[0, :5] = 7.0
    mask = torch.ones(1, 40, dtype=torch.bool)
    mask[0, :5] = False
    assert ccc_loss(prediction, truth, mask).item() == pytest.approx(0.0, abs=1e-5)
    assert ccc_loss(prediction, truth, torch.ones_like(mask)).item() > 0.5


def test_fill_invalid_holds_the_last_seen_frame():
    x = np.arange(6, dtype=float)[:, None]
    valid = np.array([False, True, False, False, True, False])
    np.testing.assert_array_equal(fill_invalid(x, valid)[:, 0], [1, 1, 1, 1, 4, 4])
    np.testing.assert_array_equal(fill_invalid(x, np.zeros(6, bool)), np.zeros((6, 1)))


def synthetic_trials(n, seed, length=240):
    """Features that are a noisy linear function of smooth labels, with -5 gaps."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(99).normal(size=(2, 12))
    trials = []
    for i in range(n):
        t = np.arange(length) / 30
        labels = np.stack([0.6 * np.sin(0.7 * t + rng.uniform(0, 6)), 0.5 * np.cos(0.4 * t + rng.uniform(0, 6))], 1)
        feats = labels @ mixing + rng.normal(0, 0.3, (length, 12))
        valid = np.ones(length, bool)
        valid[rng.integers(0, length - 10) :][:10] = False
        labelled = labels.astype(np.float32).copy()
        labelled[:8] = -5
        trials.append(TrialData(f"t{i}", 30.0, {"f": feats.astype(np.float32)}, {"f": valid}, labelled))
    return trials


def make_trainer(seed=0, epochs=15):
    return make_system(
        "tcn_fusion",
        {"hidden": 16, "levels": 2, "kernel_size": 3, "dropout": 0.0},
        epochs=epochs,
        batch_size=4,
        lr=3e-3,
        seed=seed,
    )


def test_trainer_learns_a_learnable_signal():
    trainer = make_trainer()
    trainer.fit(synthetic_trials(8, 0))
    scores = trainer.score(synthetic_trials(3, 1))
    assert scores["valence"] > 0.7 and scores["arousal"] > 0.7


def test_same_seed_gives_identical_predictions_and_another_seed_does_not():
    train, test = synthetic_trials(4, 0), synthetic_trials(1, 1)
    runs = []
    for seed in (0, 0, 1):
        trainer = make_trainer(seed, epochs=3)
        trainer.fit(train)
        runs.append(trainer.predict(test[0])[1])
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_standardizer_uses_training_statistics_and_appends_the_mask():
    trials = synthetic_trials(2, 0)
    scaler = Standardizer().fit(trials)
    out = scaler.transform(trials[0])["f"]
    assert out.shape == (240, 13)
    np.testing.assert_array_equal(out[:, -1], trials[0].valid["f"])
