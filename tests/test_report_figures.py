"""Figures of the report that say how far a number can be trusted."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vapipe.evaluation.report_figures import (
    forest_plot,
    learning_curve_table,
    learning_curves_figure,
    paired_differences_figure,
)


def test_learning_curves_take_the_heldout_mean_and_the_early_stopping_split_per_run():
    histories = {
        "official": [
            {"epoch": 1, "loss": 0.9, "monitor_valence": 0.1, "monitor_mean": 0.2, "validation_mean": 0.3},
            {"epoch": 2, "loss": 0.7, "monitor_valence": 0.2, "monitor_mean": 0.4, "validation_mean": 0.5},
        ],
        "k0 seed 1": [{"epoch": 1, "loss": 0.8}],
        "kelm": [{"epoch": 1, "kernel": "rbf", "C": 1.0, "monitor_mean": 0.6}],
    }
    table = learning_curve_table(histories)
    official = table[table["run"] == "official"]
    assert list(official["heldout_ccc"]) == [0.2, 0.4]  # the mean, not valence
    assert list(official["validation_ccc"]) == [0.3, 0.5]
    assert list(official["loss"]) == [0.9, 0.7]
    assert np.isnan(table.loc[table["run"] == "k0 seed 1", "heldout_ccc"]).all()
    assert np.isnan(table.loc[table["run"] == "kelm", "loss"]).all()


def test_the_three_figures_are_drawn(tmp_path):
    curves = learning_curve_table({"official": [{"epoch": e, "loss": 1 / e, "monitor_mean": 0.1 * e} for e in (1, 2)]})
    learning_curves_figure(curves, "curves", tmp_path / "curves.png")
    rows = pd.DataFrame(
        {"label": ["a", "b"], "ours": [0.5, 0.3], "low": [0.4, 0.1], "high": [0.6, 0.4], "paper": [0.55, np.nan]}
    )
    forest_plot(rows, "forest", tmp_path / "forest.png")
    comparisons = pd.DataFrame(
        {"label": ["A vs B"], "difference": [0.1], "low": [-0.02], "high": [0.2], "share_positive": [0.93]}
    )
    paired_differences_figure(comparisons, "paired", tmp_path / "paired.png")
    for name in ("curves", "forest", "paired"):
        with Image.open(tmp_path / f"{name}.png") as image:
            assert image.size[0] >= 700 and len(np.unique(np.asarray(image.convert("L")))) > 10, name


@pytest.mark.parametrize("bad", [{"label": ["a"], "ours": [0.5], "low": [0.7], "high": [0.4], "paper": [0.5]}])
def test_reversed_bounds_are_refused(tmp_path, bad):
    with pytest.raises(ValueError, match="a: interval .* reversed"):
        forest_plot(pd.DataFrame(bad), "forest", tmp_path / "forest.png")
