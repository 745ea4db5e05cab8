import numpy as np
import pandas as pd
import pytest
import torch

from vapipe.data.affwild2 import DatasetError
from vapipe.evaluation.metrics import ccc, va_scores, valid_label_mask
from vapipe.evaluation.scoring import score_folds, score_predictions
from vapipe.training.losses import ccc_loss, ccc_torch


def test_ccc_matches_hand_computed_case():
    # x = [1, 2, 3], y = [2, 2, 4]: means 2 and 8/3; population var(x) = 2/3, var(y) = 8/9,
    # cov = ((-1)(-2/3) + 0 + (1)(4/3)) / 3 = 2/3; CCC = (4/3) / (2/3 + 8/9 + 4/9) = 2/3.
    assert ccc(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 4.0])) == pytest.approx(2 / 3)


def test_ccc_is_one_for_identity_and_penalises_bias_and_scale():
    y = np.sin(np.linspace(0, 2 * np.pi, 200, endpoint=False))  # zero mean
    assert ccc(y, y) == pytest.approx(1.0)
    assert ccc(y + 0.5, y) < 0.85  # Pearson would still be 1
    assert ccc(0.5 * y, y) < 1.0
    assert ccc(-y, y) == pytest.approx(-1.0)


def test_va_scores_masks_minus_five_and_keeps_channels_apart():
    rng = np.random.default_rng(0)
    labels = rng.uniform(-1, 1, size=(100, 2))
    predictions = labels.copy()
    predictions[:, 1] = rng.uniform(-1, 1, 100)  # arousal wrong, valence right
    labels[:10] = -5
    predictions[:10] = 0.9  # would ruin valence if -5 rows were scored
    scores = va_scores(predictions, labels)
    assert scores["valence"] == pytest.approx(1.0)
    assert abs(scores["arousal"]) < 0.3
    assert scores["n_frames"] == 90
    assert scores["mean"] == pytest.approx((scores["valence"] + scores["arousal"]) / 2)


def reference_ccc(x, y):
    """CCC from Lin's other form, 2 rho sx sy / (sx^2 + sy^2 + (mx - my)^2), population moments:
    an independent route (np.corrcoef, np.std) to the equation `ccc` implements."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    rho = np.corrcoef(x, y)[0, 1]
    sx, sy = x.std(), y.std()
    return 2 * rho * sx * sy / (sx**2 + sy**2 + (x.mean() - y.mean()) ** 2)


def test_ccc_uses_population_moments_and_the_squared_mean_difference():
    rng = np.random.default_rng(3)
    x, y = rng.normal(0.3, 0.7, 40), rng.normal(-0.2, 1.3, 40)
    y += 0.6 * x
    assert ccc(x, y) == pytest.approx(reference_ccc(x, y), rel=1e-12)
    # Two frames are enough; one is not. Symmetric in its arguments.
    assert ccc(np.array([0.0, 1.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)
    assert ccc(np.array([0.0, 1.0]), np.array([1.0, 0.0])) == pytest.approx(-1.0)
    assert ccc(y, x) == pytest.approx(ccc(x, y))
    with pytest.raises(ValueError, match="need at least two frames"):
        ccc(np.array([0.5]), np.array([0.5]))
    with pytest.raises(ValueError, match=r"prediction shape \(3,\) differs from truth shape \(2,\)"):
        ccc(np.zeros(3), np.zeros(2))


def test_ccc_of_two_equal_constants_is_zero_not_nan():
    # var_x = var_y = 0 and equal means: the denominator is 0, the score is defined as 0.
    assert ccc(np.full(5, 0.5), np.full(5, 0.5)) == 0.0
    # A constant prediction with a different mean: denominator > 0, covariance 0.
    assert ccc(np.full(4, 0.3), np.array([0.0, 1.0, 0.0, 1.0])) == 0.0


def test_valid_label_mask_drops_a_frame_when_either_target_is_minus_five_or_nan():
    labels = np.array([[0.1, 0.2], [-5.0, 0.3], [0.4, -5.0], [-5.0, -5.0], [np.nan, 0.1], [-0.9, 0.9]])
    np.testing.assert_array_equal(valid_label_mask(labels), [True, False, False, False, False, True])


def test_va_scores_equal_the_hand_ccc_of_each_column_over_the_kept_frames():
    rng = np.random.default_rng(7)
    labels = rng.uniform(-1, 1, (60, 2))
    predictions = 0.5 * labels + rng.normal(0.1, 0.3, (60, 2))
    labels[[3, 17]] = -5.0
    labels[40, 1] = -5.0  # arousal missing: the frame leaves valence's score too
    keep = np.ones(60, bool)
    keep[[3, 17, 40]] = False
    scores = va_scores(predictions, labels)
    expected = [reference_ccc(predictions[keep, i], labels[keep, i]) for i in range(2)]
    assert scores["valence"] == pytest.approx(expected[0], rel=1e-12)
    assert scores["arousal"] == pytest.approx(expected[1], rel=1e-12)
    assert scores["mean"] == pytest.approx(sum(expected) / 2, rel=1e-12)
    assert scores["n_frames"] == 57
    with pytest.raises(ValueError, match=r"expected two \[N, 2\] arrays, got \(60, 3\) and \(60, 3\)"):
        va_scores(np.zeros((60, 3)), np.zeros((60, 3)))
    with pytest.raises(ValueError, match=r"expected two \[N, 2\] arrays, got \(60, 2\) and \(59, 2\)"):
        va_scores(predictions, labels[:59])


def test_ccc_of_float32_inputs_is_computed_in_float64():
    # Annotation files are read as float32 and models predict float32: the moments must still be
    # accumulated in float64 (float32 sums over many frames lose the digits CCC differences live in).
    rng = np.random.default_rng(9)
    y = rng.uniform(-1, 1, 100_000).astype(np.float32)
    x = (0.7 * y + rng.normal(0.05, 0.2, y.shape)).astype(np.float32)
    assert ccc(x, y) == pytest.approx(reference_ccc(x.astype(np.float64), y.astype(np.float64)), rel=1e-12, abs=0)


def annotated_trials(tmp_path, values_by_trial):
    """Annotation files and a manifest for {trial: [N, 2] labels}."""
    rows = []
    for trial, values in values_by_trial.items():
        path = tmp_path / f"{trial}.txt"
        np.savetxt(path, values, delimiter=",", header="valence,arousal", comments="", fmt="%.6f")
        rows.append({"trial": trial, "annotation_path": str(path)})
    return pd.DataFrame(rows)


def frames_table(trial, values, subset="heldout"):
    return pd.DataFrame(
        {
            "trial": trial,
            "frame": np.arange(1, len(values) + 1),
            "valence": values[:, 0],
            "arousal": values[:, 1],
            "set": subset,
        }
    )


def test_scores_pool_the_frames_of_all_trials_not_the_mean_of_per_trial_scores(tmp_path):
    # Each trial is predicted perfectly up to a trial-specific offset: per-trial CCCs are high, but
    # pooled over trials the offsets add error (and the two trials' levels differ).
    rng = np.random.default_rng(11)
    truth = {"a": rng.uniform(-1, 0, (30, 2)), "b": rng.uniform(0, 1, (50, 2))}
    truth["b"][[0, 9]] = -5.0
    manifest = annotated_trials(tmp_path, truth)
    truth = {t: np.round(v, 6).astype(np.float32).astype(np.float64) for t, v in truth.items()}  # as read back
    offset = {"a": 0.4, "b": -0.3}
    predictions = pd.concat(
        [frames_table(t, np.where(v == -5.0, 0.0, v + offset[t])) for t, v in truth.items()], ignore_index=True
    )
    scores = score_predictions(predictions.sample(frac=1, random_state=0), manifest)  # any row order
    pred_all = np.concatenate([truth[t] + offset[t] for t in ("a", "b")])
    true_all = np.concatenate([truth["a"], truth["b"]])
    keep = np.all(true_all != -5.0, axis=1)
    pooled = [reference_ccc(pred_all[keep, i], true_all[keep, i]) for i in range(2)]
    assert scores["valence"] == pytest.approx(pooled[0], rel=1e-9)
    assert scores["arousal"] == pytest.approx(pooled[1], rel=1e-9)
    assert scores["n_frames"] == 78
    annotated = {t: v[v[:, 0] != -5.0, 0] for t, v in truth.items()}
    per_trial_mean = np.mean([reference_ccc(annotated[t] + offset[t], annotated[t]) for t in ("a", "b")])
    assert abs(scores["valence"] - per_trial_mean) > 0.05  # the mean of trials would be another number

    folds = {
        "official": predictions[predictions["trial"] == "a"],
        "k0": predictions[predictions["trial"] == "a"],
        "k1": predictions[predictions["trial"] == "b"],
    }
    table = score_folds(folds, manifest).set_index("fold")
    assert list(table.index) == ["official", "k0", "k1", "kfold_pooled"]
    # kfold_pooled: the K folds' held-out frames pooled (official left out), not the mean of folds.
    assert table.loc["kfold_pooled", "valence"] == pytest.approx(pooled[0], rel=1e-9)
    assert table.loc["kfold_pooled", "n_frames"] == 78
    assert table.loc["k0", "n_frames"] == 30 and table.loc["k1", "n_frames"] == 48


def test_scoring_names_the_file_whose_rows_the_predictions_do_not_cover(tmp_path):
    manifest = annotated_trials(tmp_path, {"a": np.zeros((5, 2))})
    with pytest.raises(DatasetError, match=r"a\.txt: predictions cover 4 frames, file has 5 rows"):
        score_predictions(frames_table("a", np.zeros((4, 2))), manifest)
    skipped = frames_table("a", np.zeros((5, 2))).assign(frame=[1, 2, 3, 4, 6])  # five rows, frame 5 missing
    with pytest.raises(DatasetError, match=r"a\.txt: predictions cover 5 frames, file has 5 rows"):
        score_predictions(skipped, manifest)


def test_the_training_loss_is_one_minus_ccc_per_target_over_the_masked_in_frames():
    rng = np.random.default_rng(5)
    prediction = rng.normal(0, 0.5, (3, 20, 2))
    truth = 0.4 * prediction + rng.normal(0.2, 0.4, (3, 20, 2))
    mask = rng.uniform(size=(3, 20)) > 0.3
    expected = sum(1 - reference_ccc(prediction[..., i][mask], truth[..., i][mask]) for i in range(2))
    loss = ccc_loss(torch.tensor(prediction), torch.tensor(truth), torch.tensor(mask))
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(ccc_torch(torch.tensor(prediction[0, :, 0]), torch.tensor(truth[0, :, 0]))) == pytest.approx(
        ccc(prediction[0, :, 0], truth[0, :, 0]), rel=1e-6
    )
    # Frames outside the mask do not count: changing them leaves the loss as it is.
    changed = truth.copy()
    changed[~mask] = 100.0
    assert float(ccc_loss(torch.tensor(prediction), torch.tensor(changed), torch.tensor(mask))) == pytest.approx(
        float(loss), rel=1e-12
    )
