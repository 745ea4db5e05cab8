"""Late fusion (issue 5): DWF and RF stacking (paper 001, sec. 3.3), fold handling (paper 000),
and the one interface every fusion method shares (`vapipe.fusion.base`)."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from vapipe import TARGETS
from vapipe.errors import InputError
from vapipe.evaluation.metrics import ccc, va_scores
from vapipe.fusion import (
    FUSION_METHODS,
    DirichletWeightedFusion,
    ForestFusion,
    LateFusion,
    align_predictions,
    average_folds,
    create_fusion,
    dirichlet_pool,
    frame_labels,
    fused_table,
    fusion_options,
    list_fusions,
    out_of_fold_predictions,
    pool_ccc,
    register_fusion,
    targetwise_fold_selection,
)
from vapipe.fusion import base as fusion_base
from vapipe.fusion.base import grouped_splits
from vapipe.fusion.dirichlet import moments
from vapipe.fusion.run import fitting_frames, fuse_systems

# The metrics row of each built-in method's score on its own fitting frames.
FIT_ROW = {"dwf": "fit", "random_forest": "out_of_bag"}


def truth_and_noise(n=3000, seed=0):
    """Base model 0 = labels + small noise, model 1 = pure noise; every 10th frame unannotated (-5)."""
    rng = np.random.default_rng(seed)
    labels = rng.uniform(-1, 1, (n, 2))
    good = labels + rng.normal(0, 0.1, (n, 2))
    noise = rng.normal(0, 0.5, (n, 2))
    labels[::10] = -5.0
    return np.stack([good, noise], axis=1), labels


def table(trial_frames, values, subset="test"):
    """Per-frame table from [(trial, frame)] and [N, 2] values."""
    trials, frames = zip(*trial_frames)
    values = np.asarray(values, dtype=float)
    return pd.DataFrame(
        {"trial": trials, "frame": frames, "valence": values[:, 0], "arousal": values[:, 1], "set": subset}
    )


# --- Dirichlet weighted fusion ---------------------------------------------------------------


def test_dirichlet_pool_lies_on_the_simplex_and_follows_the_seed():
    pool = dirichlet_pool(3, 2000, seed=4)
    assert pool.shape == (2000, 3)
    assert (pool >= 0).all()
    np.testing.assert_allclose(pool.sum(axis=1), 1.0)
    np.testing.assert_array_equal(pool, dirichlet_pool(3, 2000, seed=4))
    assert not np.array_equal(pool, dirichlet_pool(3, 2000, seed=5))
    # Dirichlet(1, 1, 1) is uniform on the simplex: each weight is Beta(1, 2), mean 1/3, variance
    # 1/18, P(w > 1/2) = 1/4 (Dirichlet(2, 2, 2) would give variance 1/31.5, Dirichlet(1/2, ...) 1/11.25).
    np.testing.assert_allclose(pool.mean(axis=0), 1 / 3, atol=0.02)
    np.testing.assert_allclose(pool.var(axis=0), 1 / 18, atol=0.006)
    np.testing.assert_allclose((pool > 0.5).mean(axis=0), 0.25, atol=0.03)
    with pytest.raises(ValueError, match="need n_models >= 1 and size >= 1, got 0, 5"):
        dirichlet_pool(0, 5, seed=0)
    with pytest.raises(ValueError, match="need n_models >= 1 and size >= 1, got 2, 0"):
        dirichlet_pool(2, 0, seed=0)
    np.testing.assert_array_equal(dirichlet_pool(1, 4, seed=0), np.ones((4, 1)))  # one model: weight 1
    assert dirichlet_pool(2, 1, seed=0).shape == (1, 2)


def test_pool_ccc_from_moments_equals_the_ccc_of_each_fused_prediction():
    rng = np.random.default_rng(1)
    x, y = rng.normal(0.2, 1, (500, 3)) * [1, 2, 0.5], rng.normal(0, 1, 500)
    pool = dirichlet_pool(3, 20, seed=0)
    expected = [ccc(x @ w, y) for w in pool]
    np.testing.assert_allclose(pool_ccc(pool, moments(x, y)), expected, rtol=1e-10, atol=1e-12)
    # Constant predictions equal to constant labels: zero denominator, CCC 0 as in `ccc`.
    flat = np.full((6, 3), 0.5)
    np.testing.assert_array_equal(pool_ccc(pool, moments(flat, np.full(6, 0.5))), np.zeros(20))
    assert ccc(flat[:, 0], np.full(6, 0.5)) == 0.0


def test_dwf_favours_the_model_that_tracks_the_labels_for_both_targets():
    preds, labels = truth_and_noise()
    dwf = DirichletWeightedFusion(pool_size=1000, seed=0).fit(preds, labels)
    for target in ("valence", "arousal"):
        weights = dwf.weights_[target]
        assert weights.sum() == pytest.approx(1.0)
        assert weights[0] > 0.85, (target, weights)
    # The reported score is the CCC of the fused prediction on the annotated frames only.
    scores = va_scores(dwf.predict(preds), labels)
    assert dwf.fit_scores_["valence"] == pytest.approx(scores["valence"])
    assert dwf.fit_scores_["arousal"] == pytest.approx(scores["arousal"])
    assert dwf.fit_scores_["n_frames"] == 2700
    assert scores["mean"] > va_scores(preds[:, 0], labels)["mean"] - 1e-9  # w = (1, 0) is no better


def test_dwf_same_seed_same_weights_and_valence_arousal_drawn_separately():
    preds, labels = truth_and_noise(seed=2)
    first = DirichletWeightedFusion(pool_size=1000, seed=7).fit(preds, labels)
    again = DirichletWeightedFusion(pool_size=1000, seed=7).fit(preds, labels)
    other = DirichletWeightedFusion(pool_size=1000, seed=8).fit(preds, labels)
    for target in ("valence", "arousal"):
        np.testing.assert_array_equal(first.weights_[target], again.weights_[target])
        assert not np.array_equal(first.weights_[target], other.weights_[target])
    assert not np.array_equal(first.weights_["valence"], first.weights_["arousal"])


def test_dwf_grouped_cv_scores_frames_with_weights_chosen_elsewhere():
    """Each split's held-out frames are fused with the weights that split's training frames alone
    choose from the same pool; the weights chosen on all frames never score them."""
    preds, labels, groups = trials_with_a_trial_specific_model(n_trials=6)
    dwf = DirichletWeightedFusion(pool_size=2000, seed=0, cv_splits=3).fit(preds, labels, groups=groups)
    keep = labels[:, 0] != -5
    assert dwf.cv_scores_["n_frames"] == keep.sum()
    assert dwf.cv_scores_ == pytest.approx(va_scores(dwf.cv_predictions_, labels))
    differs = []
    for train, test in grouped_splits(groups, keep, 3, "DWF"):
        alone = DirichletWeightedFusion(pool_size=2000, seed=0).fit(preds[train], labels[train])
        for target in TARGETS:
            np.testing.assert_array_equal(alone.pools_[target], dwf.pools_[target])  # one pool for every split
        expected = np.stack([preds[test, :, i] @ alone.weights_[t] for i, t in enumerate(TARGETS)], axis=1)
        np.testing.assert_allclose(dwf.cv_predictions_[test], expected, rtol=1e-12, atol=1e-12)
        differs.append(any(not np.array_equal(alone.weights_[t], dwf.weights_[t]) for t in TARGETS))
    # The data make the split matter (model 1 tracks the labels in trial t0 only), so full-data
    # weights in place of each split's own would change the cross-fitted predictions.
    assert any(differs)
    assert not np.allclose(dwf.cv_predictions_, dwf.predict(preds))
    summary = dwf.summary(models=["face", "audio", "text"])
    assert summary["weights"]["valence"] == pytest.approx(dict(zip(["face", "audio", "text"], dwf.weights_["valence"])))
    assert list(dwf.summary()["weights"]["arousal"]) == ["model0", "model1", "model2"]


def test_dwf_keeps_per_target_the_pool_draw_with_the_best_ccc_on_the_annotated_frames():
    preds, labels, _ = trials_with_a_trial_specific_model()
    dwf = DirichletWeightedFusion(pool_size=2000, seed=3).fit(preds, labels)
    # The pools: one Generator(seed) draws valence's 2000 Dirichlet(1, 1, 1) vectors, then arousal's.
    rng = np.random.default_rng(3)
    for target in TARGETS:
        np.testing.assert_array_equal(dwf.pools_[target], rng.dirichlet(np.ones(3), size=2000))
    keep = labels[:, 0] != -5
    for i, target in enumerate(TARGETS):
        by_hand = np.array([ccc(preds[keep, :, i] @ w, labels[keep, i]) for w in dwf.pools_[target]])
        best = int(np.argmax(by_hand))
        np.testing.assert_array_equal(dwf.weights_[target], dwf.pools_[target][best])
        assert dwf.fit_scores_[target] == pytest.approx(by_hand[best], rel=1e-10)
        np.testing.assert_allclose(
            dwf.pool_scores(preds, labels)[target], by_hand, rtol=1e-9, atol=1e-12
        )  # -5 frames left out
    assert dwf.fit_scores_["mean"] == pytest.approx((dwf.fit_scores_["valence"] + dwf.fit_scores_["arousal"]) / 2)
    fused = dwf.predict(preds)
    np.testing.assert_allclose(fused[:, 1], preds[:, :, 1] @ dwf.weights_["arousal"], rtol=1e-12)


def test_dwf_refuses_a_pool_below_the_minimum_and_mismatched_shapes():
    preds, labels = truth_and_noise(n=100)
    with pytest.raises(ValueError, match="below the minimum 1000 for 2 models"):
        DirichletWeightedFusion(pool_size=999).fit(preds, labels)
    three = np.concatenate([preds, preds[:, :1]], axis=1)
    with pytest.raises(ValueError, match="minimum 2000 for 3 models"):
        DirichletWeightedFusion(pool_size=1000).fit(three, labels)
    dwf = DirichletWeightedFusion(pool_size=1000).fit(preds, labels)
    with pytest.raises(ValueError, match="fitted on 2 models, got 3"):
        dwf.predict(three)
    # Two annotated frames are enough to choose weights by CCC; one is not.
    few = np.full_like(labels, -5.0)
    few[[1, 2]] = labels[[1, 2]]
    assert DirichletWeightedFusion(pool_size=1000).fit(preds, few).fit_scores_["n_frames"] == 2
    few[2] = -5.0
    with pytest.raises(ValueError, match="DWF needs at least two annotated frames, got 1"):
        DirichletWeightedFusion(pool_size=1000).fit(preds, few)


# --- random-forest stacking ------------------------------------------------------------------


def smooth(rng, n, width=25):
    kernel = np.hanning(width) / np.hanning(width).sum()
    return 4 * np.convolve(rng.normal(size=n + width), kernel, mode="same")[width // 2 : width // 2 + n]


def smooth_trials(n_trials=8, length=250, seed=0):
    """Per trial, smooth labels and two base models = 0.3 x labels + smooth trial-specific drift."""
    rng = np.random.default_rng(seed)
    preds, labels = [], []
    for _ in range(n_trials):
        y = np.tanh(np.stack([smooth(rng, length), smooth(rng, length)], axis=1))
        drift = [np.stack([smooth(rng, length), smooth(rng, length)], axis=1) for _ in range(2)]
        preds.append(np.stack([0.3 * y + d for d in drift], axis=1))
        labels.append(y)
    return np.concatenate(preds), np.concatenate(labels), np.repeat(np.arange(n_trials), length)


def test_forest_out_of_bag_ccc_is_optimistic_on_smooth_trials_and_grouped_cv_is_not():
    preds, labels, groups = smooth_trials()
    labels[:5] = -5.0
    forest = ForestFusion(seed=0, n_estimators_grid=(10, 20)).fit(preds, labels, groups)
    assert len(forest.selection_) == 2 * 2 * 2  # targets x criteria x sizes
    for i, target in enumerate(("valence", "arousal")):
        params = forest.params_[target]
        assert params["n_estimators"] in (10, 20)
        chosen = forest.selection_.query("target == @target")
        assert forest.fit_scores_[target] == pytest.approx(chosen["oob_ccc"].max())
        # oob_score_ is the callable's CCC of the forest's own out-of-bag predictions.
        model = forest.models_[target]
        assert model.oob_score_ == pytest.approx(ccc(model.oob_prediction_, labels[5:, i]))
        # Neighbouring frames leak into the bag: out-of-bag looks good, unseen trials do not.
        assert forest.fit_scores_[target] > forest.cv_scores_[target] + 0.25, (forest.fit_scores_, forest.cv_scores_)
    assert forest.predict(preds).shape == (len(preds), 2)


def test_forest_warm_start_grid_equals_fresh_forests_and_follows_the_seed():
    preds, labels, groups = smooth_trials(n_trials=4, length=150, seed=3)

    def fit(grid):
        forest = ForestFusion(seed=1, n_estimators_grid=grid, criteria=("squared_error",))
        return forest.fit(preds, labels, groups)

    grown, fresh = fit((5, 10)), fit((5,))
    small = grown.selection_.query("n_estimators == 5")["oob_ccc"].to_numpy()
    np.testing.assert_allclose(small, fresh.selection_["oob_ccc"].to_numpy())
    again = fit((5, 10))
    np.testing.assert_array_equal(grown.predict(preds), again.predict(preds))
    assert grown.cv_scores_ == again.cv_scores_


def test_forest_chooses_its_settings_inside_each_split_without_the_held_out_trials():
    """Per split, the whole selection (out-of-bag CCC over n_estimators x criterion, then the chosen
    forest) runs on the split's training frames alone; the full-data fit is reported as before."""
    preds, labels, groups = trials_with_a_trial_specific_model()
    forest = ForestFusion(seed=0, cv_splits=2).fit(preds, labels, groups)
    everything = ForestFusion(seed=0).fit(preds, labels)  # no groups: the full-data fit alone
    assert forest.params_ == everything.params_ and forest.fit_scores_ == everything.fit_scores_
    pd.testing.assert_frame_equal(forest.selection_, everything.selection_)
    np.testing.assert_array_equal(forest.predict(preds), everything.predict(preds))

    keep = labels[:, 0] != -5
    chosen = []
    for k, (train, test) in enumerate(grouped_splits(groups, keep, 2, "RF")):
        assert not set(groups[train]) & set(groups[test])
        alone = ForestFusion(seed=0).fit(preds[train], labels[train])  # never sees the held-out trials
        np.testing.assert_allclose(
            forest.cv_predictions_[test], alone.predict(preds[test]), rtol=1e-10, atol=1e-12, err_msg=f"split {k}"
        )
        chosen.append(alone.params_)
    # The data make the held-out trials matter: some split chooses other settings than all frames do.
    assert any(params != forest.params_ for params in chosen), (forest.params_, chosen)
    assert forest.cv_params_ == chosen
    summary = json.loads(json.dumps(forest.summary()))
    assert summary["cv_params"] == chosen and summary["params"] == forest.params_
    assert summary["selection"] == json.loads(json.dumps(forest.selection_.to_dict("records")))
    assert everything.cv_params_ is None and everything.summary()["cv_params"] is None


# --- tables and folds ------------------------------------------------------------------------


def test_align_matches_rows_by_trial_and_frame_not_by_position():
    a = table([("t1", 1), ("t1", 2), ("t2", 1)], [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    b = a.iloc[::-1].assign(valence=lambda t: -t["valence"], arousal=lambda t: -t["arousal"])
    keys, preds = align_predictions({"a": a, "b": b})
    assert keys[["trial", "frame"]].values.tolist() == [["t1", 1], ["t1", 2], ["t2", 1]]
    assert keys["set"].tolist() == ["test"] * 3
    np.testing.assert_allclose(preds[:, 0], a[["valence", "arousal"]].to_numpy())
    np.testing.assert_allclose(preds[:, 1], -preds[:, 0])
    back = fused_table(keys, preds[:, 0])
    pd.testing.assert_frame_equal(back, a.reset_index(drop=True), check_dtype=False)


def test_align_names_the_model_and_trial_that_miss_frames():
    a = table([("t1", 1), ("t1", 2), ("t2", 1)], np.zeros((3, 2)))
    b = a.iloc[[0, 2]]
    with pytest.raises(InputError, match=r"model 'b' lacks 1 frame\(s\) of trial 't1' that model 'a' predicts"):
        align_predictions({"a": a, "b": b})
    # A frame that only a later table has is an error too, not dropped.
    with pytest.raises(InputError, match=r"model 'a' lacks 1 frame\(s\) of trial 't1' that model 'b' predicts"):
        align_predictions({"a": b, "b": a})
    with pytest.raises(InputError, match="frame 1 of trial 't1' appears more than once"):
        align_predictions({"a": a, "b": pd.concat([a, a.iloc[:1]])})
    with pytest.raises(InputError, match="model 'b': frame 1 of trial 't1' is in set 'heldout'"):
        align_predictions({"a": a, "b": a.assign(set="heldout")})


def test_frame_labels_index_annotation_rows_by_frame(tmp_path):
    path = tmp_path / "t1.txt"
    path.write_text("valence,arousal\n0.1,0.2\n-5,-5\n0.5,-0.5\n")
    manifest = pd.DataFrame({"trial": ["t1"], "annotation_path": [str(path)]})
    keys = pd.DataFrame({"trial": ["t1", "t1"], "frame": [3, 2]})
    np.testing.assert_allclose(frame_labels(keys, manifest), [[0.5, -0.5], [-5, -5]])


def test_out_of_fold_predictions_take_each_folds_heldout_frames_once():
    k0 = pd.concat([table([("a", 1)], [[0.1, 0.1]], "heldout"), table([("x", 1)], [[9, 9]], "test")])
    k1 = pd.concat([table([("b", 1)], [[0.2, 0.2]], "heldout"), table([("x", 1)], [[8, 8]], "test")])
    official = table([("a", 1)], [[7, 7]], "heldout")
    oof = out_of_fold_predictions({"official": official, "k0": k0, "k1": k1})
    assert oof["trial"].tolist() == ["a", "b"]
    np.testing.assert_allclose(oof["valence"], [0.1, 0.2])
    with pytest.raises(InputError, match="trial 'a' is held out in more than one fold \\(k0, k1\\)"):
        out_of_fold_predictions({"k0": k0, "k1": pd.concat([k1, table([("a", 1)], [[0, 0]], "heldout")])})


def test_average_folds_and_targetwise_selection():
    keys = [("x", 1), ("x", 2)]
    heldout = table([("h", 1)], [[0, 0]], "heldout")  # differs per fold: must be ignored
    folds = {
        "k0": pd.concat([heldout, table(keys, [[0.0, 1.0], [0.2, 1.0]])]),
        "k1": pd.concat([heldout.assign(trial="g"), table(keys, [[0.4, -1.0], [0.6, -1.0]])]),
        "k2": table(keys, [[0.8, 0.0], [1.0, 0.0]]),
    }
    mean = average_folds(folds)
    np.testing.assert_allclose(mean["valence"], [0.4, 0.6])
    np.testing.assert_allclose(mean["arousal"], [0.0, 0.0])
    scores = {
        "k0": {"valence": 0.3, "arousal": 0.6},
        "k1": {"valence": 0.5, "arousal": 0.2},
        "k2": {"valence": 0.5, "arousal": 0.1},
        "kfold_pooled": {"valence": 0.9, "arousal": 0.9},
    }
    selected, chosen = targetwise_fold_selection(scores, folds)
    assert chosen == {"valence": "k1", "arousal": "k0"}  # k1 ties k2 on valence and comes first
    np.testing.assert_allclose(selected[["valence", "arousal"]], [[0.4, 1.0], [0.6, 1.0]])
    with pytest.raises(InputError, match="fold 'k2' has no held-out arousal CCC"):
        targetwise_fold_selection({**scores, "k2": {"valence": 0.1}}, folds)


def test_cross_fitted_predictions_cover_unannotated_frames_from_weights_fitted_elsewhere():
    rng = np.random.default_rng(5)
    n, trials = 600, np.repeat(np.arange(6), 100)
    labels = rng.uniform(-1, 1, (n, 2))
    preds = np.stack([labels + 0.1 * rng.standard_normal((n, 2)), rng.standard_normal((n, 2))], axis=1)
    labels[trials == 2] = -5  # an unannotated trial still gets fused predictions
    dwf = DirichletWeightedFusion(pool_size=1000, seed=0).fit(preds, labels, groups=trials)
    forest = ForestFusion(seed=0, n_estimators_grid=(10,), criteria=("squared_error",)).fit(preds, labels, trials)
    for fused in (dwf.cv_predictions_, forest.cv_predictions_):
        assert fused.shape == (n, 2) and np.isfinite(fused).all()
        assert np.corrcoef(fused[trials == 2, 0], preds[trials == 2, 0, 0])[0, 1] > 0.9
    annotated = labels[:, 0] != -5
    assert dwf.cv_scores_["n_frames"] == annotated.sum()
    assert dwf.cv_scores_["valence"] == pytest.approx(ccc(dwf.cv_predictions_[annotated, 0], labels[annotated, 0]))


def synthetic_system_tables(tmp_path, n_trials=8, n_frames=120, seed=0, trials=None):
    """Annotation files, a manifest and two systems' upsampled tables over official + two K folds:
    'good' is the labels plus small noise, 'noise' is unrelated; the last trial is a test trial.
    ``trials`` names them (default v0, v1, ...); folds take them by position: official the first
    four, k0 the 1st, 3rd, 5th, 7th, k1 the 2nd, 4th, 6th."""
    names = list(trials) if trials is not None else [f"v{i}" for i in range(n_trials)]
    rng = np.random.default_rng(seed)
    rows, labels = [], {}
    for i, trial in enumerate(names):
        t = np.arange(n_frames) / 30
        labels[trial] = np.stack([0.8 * np.sin(t * (1 + i / 3)), 0.6 * np.cos(t * (2 + i / 4))], axis=1)
        path = tmp_path / f"{trial}.txt"
        np.savetxt(path, labels[trial], delimiter=",", header="valence,arousal", comments="", fmt="%.5f")
        rows.append({"trial": trial, "annotation_path": str(path), "fps": 30.0, "n_rows": n_frames})
    manifest = pd.DataFrame(rows)
    heldout = {"official": names[:4], "k0": names[0:7:2], "k1": names[1:7:2]}

    def table(system, fold):
        parts = []
        for trial in names:
            subset = "test" if trial == names[-1] else "heldout" if trial in heldout[fold] else None
            if subset is None:
                continue
            y = labels[trial]
            values = y + 0.1 * rng.standard_normal(y.shape) if system == "good" else rng.uniform(-1, 1, y.shape)
            parts.append(
                pd.DataFrame(
                    {
                        "trial": trial,
                        "frame": np.arange(1, n_frames + 1),
                        "valence": values[:, 0],
                        "arousal": values[:, 1],
                        "set": subset,
                    }
                )
            )
        return pd.concat(parts, ignore_index=True)

    upsampled = {s: {f: table(s, f) for f in heldout} for s in ("good", "noise")}
    return manifest, upsampled


@pytest.mark.parametrize("method", ["dwf", "random_forest"])
def test_fuse_systems_reports_cross_fitted_scores_and_fuses_the_test_rows(tmp_path, method):
    manifest, upsampled = synthetic_system_tables(tmp_path)
    spec = {"method": method, "systems": ["good", "noise"], "seed": 0, "cv_splits": 3}
    if method == "dwf":
        spec["pool_size"] = 1000
    kfolds = {s: {f: t for f, t in folds.items() if f != "official"} for s, folds in upsampled.items()}
    frames, summary, metrics, _ = fuse_systems(spec, kfolds, manifest, smoothing_seconds=0.5)
    heldout, test = frames[frames["set"] == "heldout"], frames[frames["set"] == "test"]
    assert sorted(heldout["trial"].unique()) == [f"v{i}" for i in range(7)]  # out-of-fold: k0 + k1
    assert test["trial"].unique().tolist() == ["v7"] and len(test) == 120
    table = metrics.set_index("fold")
    assert list(table.index) == [FIT_ROW[method], "grouped_cv", "grouped_cv_smoothed"]
    assert (table["mean"] > 0.8).all(), table
    assert summary["systems"] == ["good", "noise"] and summary["folds"] == ["k0", "k1"]
    if method == "dwf":
        assert all(summary["weights"][t]["good"] > 0.8 for t in ("valence", "arousal"))
    official = {s: {"official": folds["official"]} for s, folds in upsampled.items()}
    frames, summary, metrics, _ = fuse_systems(spec, official, manifest, smoothing_seconds=0.0)
    assert sorted(frames.loc[frames["set"] == "heldout", "trial"].unique()) == ["v0", "v1", "v2", "v3"]
    with pytest.raises(ValueError, match="not on both"):
        fuse_systems(spec, upsampled, manifest, smoothing_seconds=0.0)


@pytest.mark.parametrize("method", ["dwf", "random_forest"])
def test_fuse_systems_holds_out_both_people_of_a_video_together(tmp_path, monkeypatch, method):
    """v1_left and v1_right are two people in one video: cross-fitting groups by video, so no split
    fits on one of them while the other is held out."""
    trials = ["v0", "v1_left", "v1_right", "v2", "v3", "v4", "v5", "v6"]  # v6: the test trial
    manifest, upsampled = synthetic_system_tables(tmp_path, trials=trials)
    kfolds = {s: {f: t for f, t in folds.items() if f != "official"} for s, folds in upsampled.items()}
    spec = {"method": method, "systems": ["good", "noise"], "seed": 0, "cv_splits": 3}
    spec |= {"pool_size": 1000} if method == "dwf" else {"n_estimators_grid": (10,), "criteria": ("squared_error",)}

    used = []  # (groups, splits) of every cross-fitting
    grouped_splits_of_base = fusion_base.grouped_splits

    def recording_splits(groups, keep, n_splits, what):
        splits = list(grouped_splits_of_base(groups, keep, n_splits, what))
        used.append((np.asarray(groups), splits))
        return iter(splits)

    monkeypatch.setattr(fusion_base, "grouped_splits", recording_splits)
    _, _, metrics, (fuser, preds, _) = fuse_systems(spec, kfolds, manifest, smoothing_seconds=0.5)
    keys, _ = align_predictions({s: fitting_frames(kfolds[s]) for s in spec["systems"]}, what="system")
    trial = keys["trial"].to_numpy()
    assert len(used) == 1 and len(trial) == len(preds)
    groups, splits = used[0]
    assert len(splits) == 3
    for train, test in splits:
        fitted, held_out = set(trial[train]), set(trial[test])
        assert not fitted & held_out
        for person, other in (("v1_left", "v1_right"), ("v1_right", "v1_left")):
            assert not (person in fitted and other in held_out), (sorted(fitted), sorted(held_out))
    assert any({"v1_left", "v1_right"} <= set(trial[test]) for _, test in splits)
    assert sorted(set(groups)) == ["v0", "v1", "v2", "v3", "v4", "v5"]  # the groups are the base videos
    assert (metrics.set_index("fold")["mean"] > 0.8).all(), metrics

    # Both people of one video are one group: with nothing else annotated there is nothing to cross-fit.
    manifest, upsampled = synthetic_system_tables(tmp_path, trials=["v1_left", "v1_right", "v9"])
    official = {s: {"official": folds["official"]} for s, folds in upsampled.items()}
    with pytest.raises(ValueError, match=r"needs annotated frames of at least two groups \(videos\), got 1: v1$"):
        fuse_systems(spec, official, manifest, smoothing_seconds=0.0)


def test_grouped_splits_need_two_annotated_groups_and_annotated_frames_in_every_split():
    preds, labels = truth_and_noise(n=100)
    with pytest.raises(ValueError, match=r"^DWF: the grouped cross-validation needs annotated frames of at least two "):
        DirichletWeightedFusion(pool_size=1000).fit(preds, labels, groups=np.repeat("v1", 100))
    groups = np.array(["a"] * 10 + ["b"] * 10 + ["u"] * 80)
    labels[groups == "u"] = -5.0  # GroupKFold puts the large unannotated group alone: a and b share a split
    with pytest.raises(ValueError, match=r"holds out every group with annotated frames \(a, b\), leaving none"):
        DirichletWeightedFusion(pool_size=1000, cv_splits=2).fit(preds, labels, groups=groups)
    with pytest.raises(ValueError, match="cv_splits must be at least 2, got 1"):
        DirichletWeightedFusion(pool_size=1000, cv_splits=1).fit(preds, labels, groups=np.arange(100) % 4)


# --- one interface: the registry and the LateFusion contract ----------------------------------

# Options of a method's contract test, where one needs them to stay small. None do: the random
# forest runs with its full (n_estimators, criterion) grid, chosen again inside every split.
CONTRACT_OPTIONS: dict[str, dict] = {}


def trials_with_a_trial_specific_model(n_trials=4, length=80, seed=0):
    """Three base models over a few trials: model 0 = labels + noise; model 1 = the labels in
    trial 0 only, noise elsewhere (so which weights win depends on the trials fitted on); model 2 =
    noise. A few frames of every trial are unannotated (-5)."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"t{i}" for i in range(n_trials)], length)
    labels = np.tanh(rng.normal(0, 0.8, (len(groups), 2)))
    good = labels + rng.normal(0, 0.3, labels.shape)
    specific = np.where(
        (groups == "t0")[:, None], labels + rng.normal(0, 0.05, labels.shape), rng.normal(0, 0.5, labels.shape)
    )
    preds = np.stack([good, specific, rng.normal(0, 0.5, labels.shape)], axis=1)
    labels[::17] = -5.0
    return preds, labels, groups


def test_the_built_in_methods_are_registered_by_name():
    assert {"dwf", "random_forest"} <= set(list_fusions())
    assert list_fusions() == sorted(list_fusions())
    assert FUSION_METHODS["dwf"] is DirichletWeightedFusion and DirichletWeightedFusion.method == "dwf"
    assert FUSION_METHODS["random_forest"] is ForestFusion and ForestFusion.method == "random_forest"
    assert {m: FUSION_METHODS[m].fit_score_name for m in FIT_ROW} == FIT_ROW
    # Defaults live in the constructors only; fusion_options reads them from there.
    assert fusion_options("dwf") == {"pool_size": 2000, "seed": 0, "cv_splits": 5}
    assert fusion_options("random_forest")["min_samples_leaf"] == 1
    # The paper's n_estimators grid, searched for both criteria, from seed 0.
    rf_defaults = fusion_options("random_forest")
    assert rf_defaults["n_estimators_grid"] == (10, 20, 50, 100) and rf_defaults["seed"] == 0
    assert rf_defaults["criteria"] == ("squared_error", "absolute_error")
    assert set(fusion_options("random_forest")) == {
        "seed",
        "n_estimators_grid",
        "criteria",
        "cv_splits",
        "max_samples",
        "min_samples_leaf",
        "n_jobs",
    }


@pytest.mark.parametrize("method", list_fusions())
def test_every_registered_method_keeps_the_late_fusion_contract(method, tmp_path):
    preds, labels, groups = trials_with_a_trial_specific_model()
    options = CONTRACT_OPTIONS.get(method, {})
    fuser = create_fusion(method, **options)
    assert isinstance(fuser, LateFusion) and fuser.method == method
    assert fuser.get_params() == {**fusion_options(method), **options}
    assert fuser.fit(preds, labels, groups) is fuser

    annotated = int((labels[:, 0] != -5).sum())
    assert isinstance(fuser.fit_score_name, str) and fuser.fit_score_name
    for scores in (fuser.fit_scores_, fuser.cv_scores_):
        assert set(scores) == {"valence", "arousal", "mean", "n_frames"}
        assert scores["n_frames"] == annotated
        assert scores["mean"] == pytest.approx((scores["valence"] + scores["arousal"]) / 2)
    assert fuser.cv_predictions_.shape == (len(preds), 2) and np.isfinite(fuser.cv_predictions_).all()
    assert fuser.cv_scores_ == pytest.approx(va_scores(fuser.cv_predictions_, labels))

    # Cross-fitting: each trial's frames are fused by a fit that never saw that trial. Four trials
    # and cv_splits >= 4 give one trial per split: refit without each trial and compare.
    assert fuser.cv_splits >= 4
    for trial in np.unique(groups):
        held_out = groups == trial
        without = create_fusion(method, **options).fit(preds[~held_out], labels[~held_out])
        np.testing.assert_allclose(
            fuser.cv_predictions_[held_out],
            without.predict(preds[held_out]),
            rtol=1e-10,
            atol=1e-12,
            err_msg=f"{method}, trial {trial}",
        )
    # ... and the data tell the two apart: the fit on all frames fuses differently.
    assert not np.allclose(fuser.cv_predictions_, fuser.predict(preds))

    assert fuser.predict(preds).shape == (len(preds), 2)
    assert fuser.predict(preds[:7]).shape == (7, 2)
    summary = json.loads(json.dumps(fuser.summary(["face", "audio", "text"])))
    assert summary["method"] == method and summary["fit_score_name"] == fuser.fit_score_name
    assert summary["fit_scores"] == pytest.approx(fuser.fit_scores_)
    assert summary["cv_scores"] == pytest.approx(fuser.cv_scores_)
    again = create_fusion(method, **options).fit(preds, labels, groups)
    np.testing.assert_array_equal(again.predict(preds), fuser.predict(preds))
    np.testing.assert_array_equal(again.cv_predictions_, fuser.cv_predictions_)
    fuser.figure(preds, labels, ["face", "audio", "text"], tmp_path / "fusion.png")
    assert (tmp_path / "fusion.png").stat().st_size > 0
    # Without groups there is nothing to cross-fit over.
    alone = create_fusion(method, **options).fit(preds, labels)
    assert alone.cv_scores_ is None and alone.cv_predictions_ is None
    np.testing.assert_array_equal(alone.predict(preds), fuser.predict(preds))


def test_create_fusion_names_an_unknown_method_or_option_and_the_known_ones():
    with pytest.raises(ValueError, match="unknown fusion method 'nope'; known: ") as error:
        create_fusion("nope")
    assert all(name in str(error.value) for name in list_fusions())
    assert "dwf, random_forest" in str(error.value)
    with pytest.raises(ValueError, match="unknown fusion method 'nope'"):
        fusion_options("nope")
    with pytest.raises(ValueError, match="'dwf' takes no option 'pool_sise'; it takes cv_splits, pool_size, seed"):
        create_fusion("dwf", pool_sise=1000)
    with pytest.raises(ValueError, match="'dwf' is already registered"):
        register_fusion("dwf")(type("OtherDWF", (DirichletWeightedFusion,), {}))
    with pytest.raises(TypeError, match="not a LateFusion subclass"):
        register_fusion("not_a_fusion")(dict)
    assert "not_a_fusion" not in FUSION_METHODS


@pytest.fixture
def registry():
    """Restores the fusion registry after a test registers methods of its own."""
    saved = dict(FUSION_METHODS)
    yield FUSION_METHODS
    FUSION_METHODS.clear()
    FUSION_METHODS.update(saved)


def test_a_newly_registered_method_runs_through_fuse_systems(tmp_path, registry):
    @register_fusion("test_equal_weights")
    class EqualWeights(LateFusion):
        """Equal weights: the mean of the base models, nothing to choose."""

        def _fit_frames(self, preds, labels):
            fused = self._predict_frames(preds)
            return {t: ccc(fused[:, i], labels[:, i]) for i, t in enumerate(TARGETS)}

        def _predict_frames(self, preds):
            return preds.mean(axis=1)

    assert "test_equal_weights" in list_fusions() and fusion_options("test_equal_weights") == {"cv_splits": 5}
    manifest, upsampled = synthetic_system_tables(tmp_path)
    kfolds = {s: {f: t for f, t in folds.items() if f != "official"} for s, folds in upsampled.items()}
    spec = {"method": "test_equal_weights", "systems": ["good", "noise"], "folds": ["k0", "k1"], "cv_splits": 3}
    frames, summary, metrics, (fuser, preds, labels) = fuse_systems(spec, kfolds, manifest, smoothing_seconds=0.5)
    assert isinstance(fuser, EqualWeights)
    assert list(metrics.columns) == ["fold", "valence", "arousal", "mean", "n_frames"]
    assert metrics["fold"].tolist() == ["fit", "grouped_cv", "grouped_cv_smoothed"]
    table = metrics.set_index("fold")
    expected = va_scores(preds.mean(axis=1), labels)
    for row in ("fit", "grouped_cv"):  # nothing is chosen: both are the plain mean's score
        assert table.loc[row, list(expected)].to_dict() == pytest.approx(expected)
    assert table.loc["grouped_cv_smoothed", "n_frames"] == expected["n_frames"]
    assert sorted(frames["set"].unique()) == ["heldout", "test"]
    assert summary["method"] == "test_equal_weights" and summary["systems"] == ["good", "noise"]
    json.dumps(summary)
    fuser.figure(preds, labels, spec["systems"], tmp_path / "fusion.png")  # the base class's figure
    assert (tmp_path / "fusion.png").stat().st_size > 0


EXAMPLE_MARKER = "<!-- example: fusion -->"


def readme_fusion_example(text: str) -> str | None:
    """The fenced python block directly after the line holding EXAMPLE_MARKER (None without one)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if EXAMPLE_MARKER in line), None)
    if start is None:
        return None
    rest = lines[start + 1 :]
    while rest and not rest[0].strip():
        rest = rest[1:]
    if not rest or rest[0].strip() != "```python":
        raise AssertionError(f"README: no ```python block directly after {EXAMPLE_MARKER}")
    end = next(i for i, line in enumerate(rest) if i > 0 and line.strip() == "```")
    return "\n".join(rest[1:end]) + "\n"


README = (REPO / "README.md").read_text() if (REPO / "README.md").exists() else ""


@pytest.mark.skipif(EXAMPLE_MARKER not in README, reason="README example not yet added")
def test_the_readme_example_adds_a_fusion_method(tmp_path, registry):
    run_fusion_example(readme_fusion_example(README), tmp_path)


def run_fusion_example(code: str, tmp_path):
    """Exec the README's example (it registers "mean"), then fuse two systems with it."""
    FUSION_METHODS.pop("mean", None)  # the `registry` fixture puts back whatever was there
    exec(compile(code, "README.md (example: fusion)", "exec"), {"__name__": "readme_example"})
    assert "mean" in list_fusions()
    manifest, upsampled = synthetic_system_tables(tmp_path)
    kfolds = {s: {f: t for f, t in folds.items() if f != "official"} for s, folds in upsampled.items()}
    spec = {"method": "mean", "systems": ["good", "noise"], "folds": ["k0", "k1"]}
    frames, summary, metrics, (fuser, preds, labels) = fuse_systems(spec, kfolds, manifest, smoothing_seconds=0.5)
    assert metrics["fold"].tolist() == [fuser.fit_score_name, "grouped_cv", "grouped_cv_smoothed"]
    np.testing.assert_allclose(fuser.predict(preds), preds.mean(axis=1))
    assert summary["method"] == "mean"
