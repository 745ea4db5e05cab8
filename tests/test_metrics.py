import numpy as np
import pytest

from vapipe.evaluation.metrics import ccc, va_scores


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
