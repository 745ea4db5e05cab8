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


PEAK_SCRIPT = """
import resource, sys
import numpy as np
from vapipe.models.kelm import KELMRegressor
n = int(sys.argv[1])
rng = np.random.default_rng(0)
x, y = rng.normal(size=(n, 8)), rng.normal(size=(n, 2))
KELMRegressor(C=1.0, kernel="rbf", gamma=0.1).fit(x[:50], y[:50])  # libraries warmed up
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
KELMRegressor(C=1.0, kernel="rbf", gamma=0.1).fit(x, y)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


@pytest.mark.slow
def test_a_fit_holds_one_kernel_matrix_at_most():
    # scikit-learn's KernelRidge holds K, the solver's copy of it and the RBF distance matrix (2.8 K
    # measured); building K in blocks and factorising it in place holds K alone
    import subprocess
    import sys

    n = 3000
    result = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(n)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    growth = int(result.stdout.split()[-1])
    assert growth < 1.4 * n * n * 8, growth / (n * n * 8)


def test_blocked_predictions_equal_the_closed_form():
    x, y = data(n=300, d=8)
    test_x = data(seed=1, n=7, d=8)[0]
    for kernel in ("linear", "rbf"):
        model = KELMRegressor(C=1.0, kernel=kernel, gamma=0.1).fit(x, y)
        mean, std = x.mean(0), x.std(0)
        expected = closed_form((x - mean) / std, y, (test_x - mean) / std, 1.0, kernel, 0.1)
        np.testing.assert_allclose(model.predict(test_x), expected, rtol=1e-6, atol=1e-8)


def test_over_max_windows_a_seeded_subset_is_fitted():
    x, y = data(n=80)
    y[5] = -5  # unlabelled rows are dropped before the subset is drawn
    test_x = data(seed=1, n=9)[0]
    model = KELMRegressor(C=1.0, kernel="rbf", gamma=0.3, standardize=False, max_windows=30, seed=4).fit(x, y)
    labelled = np.flatnonzero(np.all(y != -5, axis=1))
    subset = np.sort(np.random.default_rng(4).choice(labelled, 30, replace=False))
    np.testing.assert_allclose(
        model.predict(test_x), closed_form(x[subset], y[subset], test_x, 1.0, "rbf", 0.3), rtol=1e-6, atol=1e-8
    )
    assert len(model.model_.X_fit_) == 30
    everything = KELMRegressor(C=1.0, kernel="rbf", gamma=0.3, standardize=False, max_windows=None).fit(x, y)
    assert len(everything.model_.X_fit_) == 79


def test_the_aff_wild2_window_counts():
    from vapipe.models.kelm import aff_wild2_windows

    # ~1.6 M training frames at 30 fps: 53,333 s; 2-s windows every 0.5 s, or non-overlapping (the paper's)
    assert aff_wild2_windows(1_600_000, 30.0, 2.0, 0.5) == 106_664
    assert aff_wild2_windows(1_600_000, 30.0, 2.0, None) == 26_667


def test_the_training_rule_asks_for_the_functionals_and_the_kernel_of_a_kelm_system():
    import pandas as pd

    from vapipe.rehearsal_resources import kelm_system_mem_mb

    # Aff-Wild2-sized: 400 annotated trials of 4000 rows at 30 fps (1.6 M frames), test trials ignored
    trials = [{"split": "Train_Set", "n_rows": 4000, "fps": 30.0}] * 400 + [
        {"split": "Test_Set", "n_rows": 9, "fps": 30.0}
    ]
    manifest = pd.DataFrame(trials)
    windows, fitted, columns = 400 * 67, 20000, 3 * (1280 + 1)  # ceil(4000 / 30 / 2) windows a trial
    expected = (windows * columns * 4 + fitted * columns * 8 + fitted**2 * 8) / 1e6
    assert kelm_system_mem_mb(manifest, [1280], {}) == pytest.approx(expected, abs=1)
    # 0.5-s steps: four times the windows, the same capped kernel; two functionals: two thirds the columns
    stepped = kelm_system_mem_mb(manifest, [1280], {"step_seconds": 0.5, "functionals": ["mean", "max"]})
    windows, columns = 400 * 267, 2 * 1281
    assert stepped == pytest.approx((windows * columns * 4 + fitted * columns * 8 + fitted**2 * 8) / 1e6, abs=1)
