"""The random-forest fusion at Aff-Wild2's size (issue 15, target 4): thinning of large fitting sets,
threads from the job, settings still chosen inside every video-grouped split."""

import json
import math

import numpy as np
import pytest

from vapipe.fusion import ForestFusion
from vapipe.fusion.base import grouped_splits
from vapipe.fusion.forest import MAX_FIT_FRAMES, thinning_stride
from vapipe.fusion.run import make_fuser


class SmallCapForest(ForestFusion):
    """The method with a cap small enough for a unit test (the real one is MAX_FIT_FRAMES)."""

    max_fit_frames = 150


def smooth_trials(n_trials=6, length=120, seed=0):
    """Smooth labels per trial; two base models = labels x weight + noise; some frames -5."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)[:, None]
    preds, labels = [], []
    for _ in range(n_trials):
        y = np.tanh(np.sin(2 * np.pi * t / rng.uniform(40, 90) + rng.uniform(0, 6, 2)))
        preds.append(np.stack([0.8 * y + rng.normal(0, 0.1, y.shape), 0.3 * y + rng.normal(0, 0.3, y.shape)], 1))
        labels.append(y)
    labels = np.concatenate(labels)
    labels[7::31] = -5.0
    return np.concatenate(preds), labels, np.repeat(np.arange(n_trials), length)


@pytest.mark.parametrize("n, cap", [(1, 1), (10, 10), (11, 10), (370_000, MAX_FIT_FRAMES), (2_000_000, 20_000)])
def test_the_stride_is_the_smallest_that_keeps_at_most_the_cap(n, cap):
    k = thinning_stride(n, cap)
    assert math.ceil(n / k) <= cap
    assert k == 1 or math.ceil(n / (k - 1)) > cap
    with pytest.raises(ValueError, match="at least 1"):
        thinning_stride(n, 0)


def test_a_large_fitting_set_is_fitted_on_every_kth_annotated_frame():
    preds, labels, _ = smooth_trials()
    keep = labels[:, 0] != -5
    n_annotated = int(keep.sum())
    k = thinning_stride(n_annotated, SmallCapForest.max_fit_frames)
    assert k > 1
    grid = {"n_estimators_grid": (5, 10), "criteria": ("squared_error",)}
    thinned = SmallCapForest(seed=0, **grid).fit(preds, labels)
    by_hand = ForestFusion(seed=0, **grid).fit(preds[keep][::k], labels[keep][::k])
    assert thinned.fit_stride_ == k and thinned.n_fit_frames_ == len(preds[keep][::k]) <= 150
    assert by_hand.fit_stride_ == 1  # under the cap: every frame, as before
    np.testing.assert_array_equal(thinned.selection_["oob_ccc"], by_hand.selection_["oob_ccc"])
    np.testing.assert_array_equal(thinned.predict(preds), by_hand.predict(preds))
    # The trees were grown on the thinned frames only: a tree has at most 2 x (its samples) nodes.
    for model in thinned.models_.values():
        assert max(tree.tree_.node_count for tree in model.estimators_) < 2 * 150
    summary = json.loads(json.dumps(thinned.summary()))
    assert summary["fit_stride"] == k and summary["n_fit_frames"] == thinned.n_fit_frames_
    # The fit score counts every annotated frame; the forests predict every frame.
    assert thinned.fit_scores_["n_frames"] == n_annotated


def test_each_split_thins_its_own_training_frames_and_never_sees_the_held_out_videos():
    preds, labels, groups = smooth_trials(n_trials=6, seed=1)
    grid = {"n_estimators_grid": (5,), "criteria": ("squared_error",), "cv_splits": 3}
    forest = SmallCapForest(seed=0, **grid).fit(preds, labels, groups)
    keep = labels[:, 0] != -5
    for train, test in grouped_splits(groups, keep, 3, "RF"):
        alone = SmallCapForest(seed=0, **grid).fit(preds[train], labels[train])
        assert alone.fit_stride_ == thinning_stride(len(train), 150)
        np.testing.assert_allclose(forest.cv_predictions_[test], alone.predict(preds[test]), rtol=1e-12, atol=1e-12)


def test_threads_come_from_the_job_and_change_nothing_but_speed():
    preds, labels, groups = smooth_trials(seed=2)
    spec = {"method": "random_forest", "systems": ["a", "b"], "folds": ["official"], "seed": 0}
    spec["n_estimators_grid"], spec["cv_splits"] = (5, 10), 2
    two = make_fuser(spec, n_jobs=2)
    assert two.n_jobs == 2 and make_fuser(spec).n_jobs is None
    assert make_fuser({**spec, "n_jobs": 1}, n_jobs=2).n_jobs == 1  # the config's own setting wins
    assert "n_jobs" not in make_fuser({"method": "dwf", "systems": ["a", "b"], "folds": ["official"]}, 2).get_params()
    one = make_fuser(spec, n_jobs=1).fit(preds, labels, groups)
    two.fit(preds, labels, groups)
    np.testing.assert_allclose(one.cv_predictions_, two.cv_predictions_, rtol=1e-12, atol=1e-12)  # summation order
    assert one.params_ == two.params_
