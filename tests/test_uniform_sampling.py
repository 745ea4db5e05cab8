"""DASP's 10-s windows of frames sampled at equal intervals (paper 004, sec. 4.1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import make_system
from test_training import synthetic_trials

from vapipe.post.predictions import postprocess_trial
from vapipe.specs import TrainSpec
from vapipe.training.data import TrialData
from vapipe.training.resample import resample_trial
from vapipe.training.uniform_sampling import at_rate, sample_trial, sampled_rows

pytestmark = pytest.mark.usefixtures("single_thread")
CONFIG = Path(__file__).resolve().parents[1] / "config"


def test_rows_are_the_frames_nearest_each_bin_middle():
    times = np.arange(600) / 30.0  # 20 s at 30 fps
    rows = sampled_rows(times, 1.6)
    # bin k of 1 / 1.6 = 0.625 s has its middle at (k + 0.5) * 0.625 s = frame 18.75 k + 9.375
    expected = np.rint((np.arange(32) + 0.5) * 30 / 1.6 - 1e-9).astype(int)
    np.testing.assert_array_equal(rows, expected)
    window = times[rows[:16]]  # one 10-s window of 16 rows: equal intervals within a frame's rounding
    np.testing.assert_allclose(np.diff(window), 0.625, atol=1 / 30)
    assert window[-1] - window[0] < 10.0 <= window[-1] - window[0] + 0.625 + 1 / 30
    assert sampled_rows(np.array([0.0]), 1.6).tolist() == [0]


def test_a_variable_rate_video_samples_by_timestamps_and_keeps_a_row_once():
    times = np.concatenate([np.arange(10) / 10.0, 3.0 + np.arange(10) / 10.0])  # a 2.1-s gap
    rows = sampled_rows(times, 2.0)  # middles 0.25, 0.75, ..., 3.75 s
    np.testing.assert_array_equal(rows, [2, 7, 9, 10, 12, 17])  # the gap's middles all pick row 9 or 10


def test_picked_rows_keep_their_own_frame_not_a_bin_mean():
    n = 60
    x = np.arange(n, dtype=np.float32)[:, None]
    valid = np.ones(n, bool)
    valid[28] = False
    labels = np.stack([np.arange(n) / 100, -np.arange(n) / 100], 1).astype(np.float32)
    labels[46] = -5
    speech = np.zeros(n, bool)
    speech[10] = True
    trial = TrialData("t", 30.0, {"f": x}, {"f": valid}, labels, speech=speech)
    picked = sample_trial(trial, 2.0)  # middles every 0.5 s from 0.25 s: rows 7.5 -> 7, 22.5 -> 22, ...
    rows = [7, 22, 37, 52]
    assert picked.fps == 2.0 and picked.n_rows == 4
    np.testing.assert_array_equal(picked.inputs["f"][:, 0], rows)
    np.testing.assert_array_equal(picked.labels, labels[rows])
    np.testing.assert_allclose(picked.times, np.array(rows) / 30)
    means = resample_trial(trial, 2.0)  # the other option averages each bin's 15 frames (valid, labelled)
    assert means.inputs["f"][1, 0] == pytest.approx(np.mean([r for r in range(15, 30) if r != 28]))
    assert means.labels[3, 0] == pytest.approx(np.mean([r for r in range(45, 60) if r != 46]) / 100)
    trial.valid["f"][22] = False
    trial.labels[37] = -5
    trial.speech[22] = True
    picked = sample_trial(trial, 2.0)
    np.testing.assert_array_equal(picked.valid["f"], [True, False, True, True])
    assert (picked.labels[2] == -5).all()
    np.testing.assert_array_equal(picked.speech, [False, True, False, False])
    with pytest.raises(ValueError, match="exceed"):
        sample_trial(trial, 60.0)


def test_at_rate_dispatches_and_the_spec_checks_the_name():
    trial = synthetic_trials(1, 0)[0]
    assert at_rate(trial, None, "pick") is trial
    np.testing.assert_array_equal(at_rate(trial, 5.0, "mean").inputs["f"], resample_trial(trial, 5.0).inputs["f"])
    np.testing.assert_array_equal(at_rate(trial, 5.0, "pick").inputs["f"], sample_trial(trial, 5.0).inputs["f"])
    with pytest.raises(ValueError, match="sampling"):
        at_rate(trial, 5.0, "nearest")
    with pytest.raises(ValueError, match="sampling"):
        TrainSpec(sampling="nearest")


@pytest.mark.slow  # a training run
def test_a_picking_system_trains_on_sampled_frames_and_fills_every_frame_by_interpolation():
    train = synthetic_trials(2, 0, length=600)  # 20 s at 30 fps
    system = make_system(
        "tcn_fusion",
        {"hidden": 8, "levels": 2, "kernel_size": 3, "dropout": 0.0},
        window=16,
        stride=8,
        epochs=1,
        batch_size=4,
        rate=1.6,
        sampling="pick",
    )
    system.fit(train)
    times, values = system.predict(train[0])
    np.testing.assert_allclose(times, sampled_rows(train[0].times, 1.6) / 30)
    dense = postprocess_trial(times, values, train[0].n_rows, 30.0, 0.0)
    assert dense.shape == (600, 2)
    row = 18  # between the picked rows 9 and 28: linear interpolation of their two predictions
    w = (row - 9) / (28 - 9)
    np.testing.assert_allclose(dense[row], (1 - w) * values[0] + w * values[1], rtol=1e-5)


@pytest.mark.parametrize("config", ["config.yaml", "affwild2.yaml"])
def test_dasp_trains_on_10_second_windows_of_sampled_frames(config):
    dasp = yaml.safe_load((CONFIG / config).read_text())["systems"]["dasp"]
    train = dasp["train"]
    assert train["sampling"] == "pick"
    assert dasp["window"] / train["rate"] == pytest.approx(10.0)  # sec. 3.2 / 4.1: 10-s windows
