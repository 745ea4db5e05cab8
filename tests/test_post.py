import numpy as np
import pandas as pd
import pytest

from vapipe.post.predictions import postprocess_predictions, smooth_frames
from vapipe.post.signal import hamming_window_length, smooth_hamming, upsample_to_frames


def test_upsampling_interpolates_linearly_and_holds_edges():
    times = np.array([0.2, 0.4, 0.6])
    values = np.array([[0.0, 1.0], [1.0, 1.0], [0.0, -1.0]])
    frames = np.array([0.0, 0.1, 0.3, 0.5, 0.9])
    out = upsample_to_frames(times, values, frames)
    np.testing.assert_allclose(out[:, 0], [0.0, 0.0, 0.5, 0.5, 0.0])
    np.testing.assert_allclose(out[:, 1], [1.0, 1.0, 1.0, 0.0, -1.0])


def test_smoothing_keeps_constant_signal_and_edges_not_dragged_to_zero():
    constant = np.full(50, 0.8)
    np.testing.assert_allclose(smooth_hamming(constant, 15), constant)
    ramp = np.linspace(0.5, 0.9, 60)
    smoothed = smooth_hamming(ramp, 15)
    assert smoothed[0] > 0.45 and smoothed[-1] > 0.85  # np.convolve 'same' would give ~0.27 here


def test_smoothing_reduces_noise_and_preserves_length():
    rng = np.random.default_rng(1)
    signal = np.sin(np.linspace(0, 4, 300))[:, None] + rng.normal(0, 0.3, (300, 1))
    smoothed = smooth_hamming(signal, 15)
    assert smoothed.shape == signal.shape
    assert np.std(np.diff(smoothed[:, 0])) < 0.3 * np.std(np.diff(signal[:, 0]))


def test_window_length_is_odd_and_about_half_a_second():
    assert hamming_window_length(30.0) == 15
    assert hamming_window_length(25.0) == 13
    assert hamming_window_length(10.0) == 5
    assert hamming_window_length(30000 / 1001) == 15


def test_postprocess_fills_every_row_from_low_rate_outputs():
    manifest = pd.DataFrame({"trial": ["a"], "n_rows": [31], "fps": [30.0]})
    times = np.arange(0, 1.01, 0.2)  # 5 FPS outputs
    raw = pd.DataFrame({"trial": "a", "time": times, "valence": times, "arousal": -times, "set": "test"})
    frames = postprocess_predictions(raw, manifest, smoothing_seconds=0.0)
    assert frames["frame"].tolist() == list(range(1, 32))
    np.testing.assert_allclose(frames["valence"], np.arange(31) / 30, atol=1e-9)


def test_smoothing_the_upsampled_table_equals_postprocessing_in_one_step():
    manifest = pd.DataFrame({"trial": ["a", "b"], "n_rows": [61, 45], "fps": [30.0, 25.0]})
    rng = np.random.default_rng(0)
    raw = pd.concat(
        [
            pd.DataFrame({"trial": t, "time": np.arange(0, n / fps, 0.2), "set": "heldout"})
            for t, n, fps in [("a", 61, 30.0), ("b", 45, 25.0)]
        ],
        ignore_index=True,
    )
    raw["valence"], raw["arousal"] = rng.uniform(-1, 1, (2, len(raw)))
    upsampled = postprocess_predictions(raw, manifest, smoothing_seconds=0.0)
    direct = postprocess_predictions(raw, manifest, smoothing_seconds=0.5)
    pd.testing.assert_frame_equal(smooth_frames(upsampled.sample(frac=1, random_state=0), manifest, 0.5), direct)
    with pytest.raises(ValueError, match="trial 'a': frames are not 1 .. 60"):
        smooth_frames(upsampled.drop(index=3), manifest, 0.5)


def hamming_by_hand(x, window):
    """Reference smoothing: out[i] = sum_k w[k] x[i - half + k] / sum(w), w = 0.54 - 0.46 cos(2 pi k / (L - 1)),
    with x held at its first / last value beyond either end."""
    x = np.asarray(x, dtype=np.float64)
    k = np.arange(window)
    w = 0.54 - 0.46 * np.cos(2 * np.pi * k / (window - 1))
    half = window // 2
    out = np.empty_like(x)
    for i in range(len(x)):
        taps = np.clip(i - half + k, 0, len(x) - 1)
        out[i] = np.sum(w * x[taps]) / w.sum()
    return out


def test_smoothing_is_the_normalised_hamming_window_centred_on_each_frame_with_edges_held():
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, 40)
    for window in (2, 3, 7, 15):
        np.testing.assert_allclose(smooth_hamming(x, window), hamming_by_hand(x, window), rtol=0, atol=1e-12)
    both = np.stack([x, -2 * x[::-1]], axis=1)  # channels smoothed apart, along time
    np.testing.assert_allclose(smooth_hamming(both, 5)[:, 1], hamming_by_hand(both[:, 1], 5), atol=1e-12)
    # A step: the window is centred (symmetric response), not shifted forward or back.
    step = np.r_[np.zeros(20), np.ones(20)]
    smoothed = smooth_hamming(step, 7)
    np.testing.assert_allclose(smoothed[19] + smoothed[20], 1.0, atol=1e-12)
    np.testing.assert_allclose(smoothed[:17], 0.0, atol=1e-12)
    np.testing.assert_allclose(smoothed[23:], 1.0, atol=1e-12)
    # Window 1 (and an empty signal) leave the values as they are.
    np.testing.assert_array_equal(smooth_hamming(x, 1), x)
    np.testing.assert_array_equal(smooth_hamming(both, 1), both)
    assert smooth_hamming(np.zeros((0, 2)), 5).shape == (0, 2)


def test_window_length_never_drops_below_one_frame():
    assert hamming_window_length(1.0, 0.1) == 1
    assert hamming_window_length(4.0, 0.5) == 3
    assert hamming_window_length(30.0, 1.0) == 31


def test_each_trial_is_smoothed_at_its_own_video_frame_rate():
    # 0.6 s is 19 frames at 30 fps (18, made odd) and 15 at 25 fps.
    rng = np.random.default_rng(2)
    manifest = pd.DataFrame({"trial": ["a", "b"], "n_rows": [40, 40], "fps": [30.0, 25.0]})
    values = rng.uniform(-1, 1, (80, 2))
    frames = pd.DataFrame(
        {
            "trial": np.repeat(["a", "b"], 40),
            "frame": np.tile(np.arange(1, 41), 2),
            "valence": values[:, 0],
            "arousal": values[:, 1],
            "set": "test",
        }
    )
    shuffled = frames.sample(frac=1, random_state=1).reset_index(drop=True)
    smoothed = smooth_frames(shuffled, manifest, 0.6)
    pd.testing.assert_index_equal(smoothed.index, pd.RangeIndex(80))
    assert smoothed[["trial", "frame"]].to_numpy().tolist() == frames[["trial", "frame"]].to_numpy().tolist()
    smoothed = smoothed.set_index("trial")
    for trial, rows, window in (("a", slice(0, 40), 19), ("b", slice(40, 80), 15)):
        for i, target in enumerate(("valence", "arousal")):
            np.testing.assert_allclose(
                smoothed.loc[trial, target].to_numpy(), hamming_by_hand(values[rows, i], window), atol=1e-12
            )
    # No smoothing asked for: the table comes back unchanged, in its own row order.
    pd.testing.assert_frame_equal(smooth_frames(shuffled, manifest, 0.0), shuffled)


def test_postprocessing_upsamples_then_smooths_at_the_frame_rate():
    manifest = pd.DataFrame({"trial": ["b", "a"], "n_rows": [50, 20], "fps": [25.0, 30.0]})
    times = np.arange(0, 2.0, 0.2)  # 5 outputs per second
    rng = np.random.default_rng(8)
    raw = pd.DataFrame({"trial": ["b"] * len(times) + ["a"] * 4, "time": np.r_[times, times[:4]], "set": "test"})
    raw["valence"], raw["arousal"] = rng.uniform(-1, 1, (2, len(raw)))
    frames = postprocess_predictions(raw, manifest, smoothing_seconds=1.0)  # 25 frames at 25 fps
    assert frames["trial"].tolist() == ["a"] * 20 + ["b"] * 50  # trial by trial, in name order
    b = frames[frames["trial"] == "b"]
    dense = np.interp(np.arange(50) / 25.0, times, raw["valence"].to_numpy()[: len(times)])
    np.testing.assert_allclose(b["valence"], hamming_by_hand(dense, 25), atol=1e-12)
    assert frames["set"].unique().tolist() == ["test"]


def test_upsampling_refuses_times_that_do_not_increase_and_takes_one_channel():
    with pytest.raises(ValueError, match="times must increase strictly"):
        upsample_to_frames(np.array([0.0, 0.2, 0.2]), np.zeros(3), np.arange(3) / 10)
    with pytest.raises(ValueError, match="2 times for 3 values"):
        upsample_to_frames(np.array([0.0, 0.2]), np.zeros(3), np.arange(3) / 10)
    with pytest.raises(ValueError, match="0 times for 0 values"):
        upsample_to_frames(np.array([]), np.zeros(0), np.arange(3) / 10)
    out = upsample_to_frames(np.array([0.0, 1.0]), np.array([2.0, 4.0]), np.array([0.25, 0.5]))
    np.testing.assert_allclose(out, [[2.5], [3.0]])
