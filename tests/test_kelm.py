"""Functionals over 2-s windows and the kernel ELM (paper 001, sec. 3.2.2, Eq. 1)."""

import numpy as np
import pytest

from vapipe.evaluation.metrics import ccc
from vapipe.models.kelm import KELMRegressor, window_bounds, window_functionals, window_targets


def test_functionals_are_mean_min_max_of_non_overlapping_windows():
    x = np.array([[0.0, 10], [2, 14], [4, 12], [6, 16], [9, 30]])
    f, centres = window_functionals(x, fps=1.0, window_seconds=2.0)
    assert f.shape == (3, 6)  # [0, 2), [2, 4), [4, 5): the tail window is kept
    np.testing.assert_allclose(f[0], [1, 12, 0, 10, 2, 14])
    np.testing.assert_allclose(f[1], [5, 14, 4, 12, 6, 16])
    np.testing.assert_allclose(f[2], [9, 30, 9, 30, 9, 30])
    np.testing.assert_array_equal(centres, [0, 2, 4])


def test_windows_follow_fps_and_step():
    assert window_bounds(100, fps=25.0) == [(0, 50), (50, 100)]
    assert window_bounds(101, fps=25.0)[-1] == (100, 101)
    assert window_bounds(100, fps=25.0, step_seconds=1.0) == [(0, 50), (25, 75), (50, 100)]
    f, centres = window_functionals(np.random.default_rng(0).normal(size=(100, 4)), 25.0, step_seconds=1.0)
    assert f.shape == (3, 12)
    np.testing.assert_array_equal(centres, [24, 49, 74])


def test_window_targets_average_annotated_frames_only():
    labels = np.array([[0.2, 0.4], [-5, -5], [0.0, 1.0], [-5, -5]])
    np.testing.assert_allclose(window_targets(labels, fps=1.0), [[0.2, 0.4], [0.0, 1.0]])
    np.testing.assert_allclose(window_targets(labels[[1, 3]], fps=1.0), [[-5, -5]])


def closed_form(train_x, train_y, test_x, C, kernel, gamma):
    """beta = (I / C + K)^-1 T; y_hat = K(test, train) beta."""
    if kernel == "linear":
        k, k_test = train_x @ train_x.T, test_x @ train_x.T
    else:
        sq = lambda a, b: ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)  # noqa: E731
        k, k_test = np.exp(-gamma * sq(train_x, train_x)), np.exp(-gamma * sq(test_x, train_x))
    beta = np.linalg.solve(np.eye(len(train_x)) / C + k, train_y)
    return k_test @ beta


def data(n=40, d=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = np.stack([np.sin(x[:, 0]) + 0.3 * x[:, 1], np.tanh(x[:, 2] * x[:, 3])], 1) + 0.2 * rng.normal(size=(n, 2))
    return x, y


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("C", [0.1, 10.0])
def test_predictions_equal_the_kelm_closed_form(kernel, C):
    x, y = data()
    test_x, _ = data(seed=1, n=9)
    model = KELMRegressor(C=C, kernel=kernel, gamma=0.3, standardize=False).fit(x, y)
    np.testing.assert_allclose(model.predict(test_x), closed_form(x, y, test_x, C, kernel, 0.3), rtol=1e-6, atol=1e-8)


def test_standardising_uses_training_statistics():
    x, y = data()
    x = x * [1, 10, 100, 0.1, 1] + 5
    test_x = data(seed=1, n=9)[0] * [1, 10, 100, 0.1, 1] + 5
    model = KELMRegressor(C=1.0, kernel="rbf").fit(x, y)  # gamma: 1 / n_features
    mean, std = x.mean(0), x.std(0)
    expected = closed_form((x - mean) / std, y, (test_x - mean) / std, 1.0, "rbf", 1 / 5)
    np.testing.assert_allclose(model.predict(test_x), expected, rtol=1e-6, atol=1e-8)


def test_selection_picks_the_grid_point_with_the_best_validation_ccc():
    x, y = data(n=60)
    vx, vy = data(n=30, seed=2)
    grid_c, grid_k = (0.01, 0.1, 1.0, 10.0, 1000.0), ("linear", "rbf")
    model = KELMRegressor(C_grid=grid_c, kernel_grid=grid_k, standardize=False, gamma=0.2).fit(x, y, vx, vy)
    scores = {}
    for kernel in grid_k:
        for C in grid_c:
            p = closed_form(x, y, vx, C, kernel, 0.2)
            scores[(kernel, C)] = np.mean([ccc(p[:, j], vy[:, j]) for j in range(2)])
    best = max(scores, key=scores.get)
    assert len({round(s, 6) for s in scores.values()}) > 1  # the choice matters
    assert (model.kernel_, model.C_) == best
    assert [(r["kernel"], r["C"]) for r in model.selection_] == list(scores)
    np.testing.assert_allclose([r["val_ccc"] for r in model.selection_], list(scores.values()), rtol=1e-6)
    # the chosen model is fitted on the training set
    np.testing.assert_allclose(model.predict(vx), closed_form(x, y, vx, best[1], best[0], 0.2), rtol=1e-6, atol=1e-8)
    again = KELMRegressor(C_grid=grid_c, kernel_grid=grid_k, standardize=False, gamma=0.2).fit(x, y, vx, vy)
    np.testing.assert_array_equal(again.predict(vx), model.predict(vx))  # deterministic


def test_unannotated_rows_are_left_out():
    x, y = data()
    noisy_x = np.vstack([x, np.full((3, 5), 50.0)])
    noisy_y = np.vstack([y, np.full((3, 2), -5.0)])
    a = KELMRegressor(C=1.0).fit(noisy_x, noisy_y)
    b = KELMRegressor(C=1.0).fit(x, y)
    np.testing.assert_allclose(a.predict(x[:5]), b.predict(x[:5]))


def test_functional_subsets_follow_the_order_given_and_unknown_ones_are_refused():
    x = np.random.default_rng(1).normal(size=(50, 3))
    full, _ = window_functionals(x, fps=5.0, window_seconds=2.0)
    mean_max, centres = window_functionals(x, fps=5.0, window_seconds=2.0, functionals=("mean", "max"))
    np.testing.assert_array_equal(mean_max, np.concatenate([full[:, :3], full[:, 6:]], axis=1))
    assert len(centres) == len(full)
    with pytest.raises(ValueError, match="functionals must be"):
        window_functionals(x, fps=5.0, functionals=("median",))
