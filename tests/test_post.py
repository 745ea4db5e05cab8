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
