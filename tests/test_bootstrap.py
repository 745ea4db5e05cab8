"""Bootstrap intervals over videos: the pooled CCC, coverage under dependent frames, paired differences."""

import numpy as np
import pandas as pd
import pytest
from conftest import write_labels
from scipy.signal import lfilter

from vapipe.evaluation.bootstrap import base_video_groups, paired_bootstrap, video_bootstrap, video_moments
from vapipe.evaluation.metrics import va_scores
from vapipe.evaluation.scoring import compare_predictions, labelled_frames, score_predictions
from vapipe.specs import BootstrapSpec

# Each video: a level of its own (mood, lighting) and slow drift; the prediction adds its own per-video
# bias and slow error. Population CCC of the pooled frames: var(y) = U + E, var(x) = U + E + B + N, same
# means, cov = U + E, so CCC = 2 (U + E) / (2 (U + E) + B + N).
U, E, B, N = 0.3**2, 0.2**2, 0.25**2, 0.2**2
TRUE_CCC = 2 * (U + E) / (2 * (U + E) + B + N)


def _slow_noise(rng, frames, rho=0.98):
    """Stationary AR(1) of unit variance per column: neighbouring frames nearly equal, as in real traces."""
    white = rng.normal(size=(frames, 2)) * np.sqrt(1 - rho**2)
    white[0] = rng.normal(size=2)
    return lfilter([1.0], [1.0, -rho], white, axis=0)


def _videos(rng, videos=40, frames=150):
    predictions, labels, groups = [], [], []
    for v in range(videos):
        truth = rng.normal(0, np.sqrt(U), size=2) + np.sqrt(E) * _slow_noise(rng, frames)
        guess = truth + rng.normal(0, np.sqrt(B), size=2) + np.sqrt(N) * _slow_noise(rng, frames)
        predictions.append(guess)
        labels.append(truth)
        groups += [f"video{v}"] * frames
    return np.concatenate(predictions), np.concatenate(labels), np.array(groups)


def test_the_estimate_is_the_pooled_ccc_of_all_frames():
    rng = np.random.default_rng(0)
    predictions, labels, groups = _videos(rng, videos=6, frames=50)
    labels[::7, 0] = -5.0  # unannotated frames are left out, as the challenge does
    intervals = video_bootstrap(predictions, labels, groups, resamples=50, seed=0)
    expected = va_scores(predictions, labels)
    for name in ("valence", "arousal", "mean"):
        assert intervals[name].estimate == pytest.approx(expected[name], abs=1e-12)
        assert intervals[name].low <= intervals[name].estimate <= intervals[name].high


def test_moments_survive_large_offsets():
    # sums of squares on raw values would cancel; the shift keeps the CCC exact
    rng = np.random.default_rng(1)
    predictions, labels, groups = _videos(rng, videos=5, frames=40)
    offset = 1e4
    shifted = video_bootstrap(predictions + offset, labels + offset, groups, resamples=20, seed=0)
    assert shifted["valence"].estimate == pytest.approx(va_scores(predictions, labels)["valence"], abs=1e-9)


def test_a_resample_recomputes_the_pooled_ccc_of_the_drawn_videos():
    rng = np.random.default_rng(2)
    predictions, labels, groups = _videos(rng, videos=4, frames=30)
    names, moments = video_moments(predictions, labels, groups)
    # draw video0 twice and video2 once, by hand
    chosen = np.concatenate([np.flatnonzero(groups == "video0")] * 2 + [np.flatnonzero(groups == "video2")])
    by_hand = va_scores(predictions[chosen], labels[chosen])["arousal"]
    from vapipe.evaluation.bootstrap import ccc_from_moments

    counts = np.array([2.0, 0.0, 1.0, 0.0])
    assert list(names) == ["video0", "video1", "video2", "video3"]
    assert ccc_from_moments(np.einsum("g,gtk->tk", counts, moments))[1] == pytest.approx(by_hand, abs=1e-12)


@pytest.mark.slow
def test_intervals_over_videos_cover_the_true_ccc_95_percent_and_frame_intervals_do_not():
    rng = np.random.default_rng(1)
    replicates, covered, covered_by_frames = 200, 0, 0
    for r in range(replicates):
        predictions, labels, groups = _videos(rng)
        by_video = video_bootstrap(predictions, labels, groups, resamples=400, seed=r)["valence"]
        by_frame = video_bootstrap(predictions, labels, np.arange(len(groups)), resamples=400, seed=r)["valence"]
        covered += by_video.low <= TRUE_CCC <= by_video.high
        covered_by_frames += by_frame.low <= TRUE_CCC <= by_frame.high
    assert 0.90 <= covered / replicates <= 0.99
    assert covered_by_frames / replicates < 0.5  # the naive frame bootstrap is far too narrow


def test_left_and_right_of_one_video_are_one_resampling_unit():
    groups = base_video_groups(np.array(["10-60-1280x720_left", "10-60-1280x720_right", "11-24-1920x1080"]))
    assert list(groups) == ["10-60-1280x720", "10-60-1280x720", "11-24-1920x1080"]


def test_a_system_compared_with_itself_differs_by_exactly_zero_in_every_resample():
    rng = np.random.default_rng(3)
    predictions, labels, groups = _videos(rng, videos=10, frames=40)
    same = paired_bootstrap(predictions, predictions.copy(), labels, groups, resamples=200, seed=0)
    for name in ("valence", "arousal", "mean"):
        assert (same[name].low, same[name].high, same[name].share_positive) == (0.0, 0.0, 0.0)


def test_a_better_system_wins_in_the_paired_resamples():
    rng = np.random.default_rng(4)
    predictions, labels, groups = _videos(rng, videos=20, frames=60)
    better = labels + 0.5 * (predictions - labels)  # half the error on every frame
    result = paired_bootstrap(better, predictions, labels, groups, resamples=300, seed=0)
    assert result["mean"].estimate > 0
    assert result["mean"].share_positive == 1.0
    assert result["mean"].low > 0
    worse = paired_bootstrap(predictions, better, labels, groups, resamples=300, seed=0)
    assert worse["mean"].estimate == pytest.approx(-result["mean"].estimate)
    assert worse["mean"].share_positive == 0.0


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(ValueError, match="at least two videos"):
        video_bootstrap(np.zeros((4, 2)), np.ones((4, 2)), np.array(["a"] * 4))
    with pytest.raises(ValueError, match="level"):
        video_bootstrap(np.zeros((4, 2)), np.ones((4, 2)), np.array(["a", "a", "b", "b"]), level=95)


def _scored_trials(tmp_path, rng):
    """Annotation files of four trials (two of them one video's _left and _right) and predictions."""
    rows, tables = [], []
    for trial in ("v1_left", "v1_right", "v2", "v3"):
        truth = rng.uniform(-0.8, 0.8, size=(30, 2)).round(3)
        path = tmp_path / f"{trial}.txt"
        write_labels(path, [f"{v},{a}" for v, a in truth])
        rows.append({"trial": trial, "annotation_path": str(path)})
        guess = truth + rng.normal(0, 0.3, size=truth.shape)
        tables.append(
            pd.DataFrame({"trial": trial, "frame": np.arange(1, 31), "valence": guess[:, 0], "arousal": guess[:, 1]})
        )
    return pd.DataFrame(rows), pd.concat(tables, ignore_index=True)


def test_scores_carry_intervals_over_base_videos(tmp_path):
    manifest, predictions = _scored_trials(tmp_path, np.random.default_rng(5))
    spec = BootstrapSpec(resamples=300, seed=2)
    scores = score_predictions(predictions.sample(frac=1.0, random_state=0), manifest, spec)  # row order is free
    predictions_array, labels, trials = labelled_frames(predictions, manifest)
    by_video = video_bootstrap(predictions_array, labels, base_video_groups(trials), resamples=300, seed=2)
    by_trial = video_bootstrap(predictions_array, labels, trials, resamples=300, seed=2)
    assert scores["mean"] == pytest.approx(by_video["mean"].estimate)
    assert (scores["mean_low"], scores["mean_high"]) == (by_video["mean"].low, by_video["mean"].high)
    assert (scores["mean_low"], scores["mean_high"]) != (by_trial["mean"].low, by_trial["mean"].high)
    assert "mean_low" not in score_predictions(predictions, manifest, BootstrapSpec(resamples=0))


def test_a_paired_comparison_needs_the_same_trials(tmp_path):
    manifest, predictions = _scored_trials(tmp_path, np.random.default_rng(6))
    spec = BootstrapSpec(resamples=100, seed=0)
    assert compare_predictions(predictions, predictions, manifest, spec)["mean"].estimate == 0.0
    with pytest.raises(ValueError, match="different trials .*v3"):
        compare_predictions(predictions, predictions[predictions["trial"] != "v3"], manifest, spec)


def test_two_constant_series_score_zero_whatever_the_rounding():
    from vapipe.evaluation.metrics import ccc

    # the mean of six 0.4s is not exactly 0.4: the variances are ~1e-33, not 0
    assert ccc(np.full(6, 0.4), np.full(6, 0.4)) == 0.0
    labels = np.full((6, 2), 0.4)
    assert video_bootstrap(labels, labels, np.array(list("aabbcc")), resamples=5)["mean"].estimate == 0.0


def test_a_fusions_cross_fitted_rows_carry_intervals_and_its_fitting_row_none(tmp_path):
    from test_fusion import synthetic_system_tables

    from vapipe.fusion.run import fuse_systems

    manifest, upsampled = synthetic_system_tables(tmp_path)
    spec = {"method": "dwf", "systems": ["good", "noise"], "seed": 0, "cv_splits": 3, "pool_size": 1000}
    official = {s: {"official": folds["official"]} for s, folds in upsampled.items()}
    bootstrap = BootstrapSpec(resamples=200, seed=1)
    frames, _, metrics, _ = fuse_systems(spec, official, manifest, smoothing_seconds=0.5, bootstrap=bootstrap)
    table = metrics.set_index("fold")
    assert table.loc["fit", ["mean_low", "mean_high"]].isna().all()
    expected = score_predictions(frames[frames["set"] == "heldout"], manifest, bootstrap)
    row = table.loc["grouped_cv_smoothed"]
    assert (row["mean_low"], row["mean_high"]) == pytest.approx((expected["mean_low"], expected["mean_high"]))
    assert table.loc["grouped_cv", "mean_low"] <= table.loc["grouped_cv", "mean_high"]
