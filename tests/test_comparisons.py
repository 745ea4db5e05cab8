"""The papers' comparisons on our data, the paper tables' protocol section and the forest plot's numbers."""

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO

from vapipe.errors import ConfigError
from vapipe.evaluation.bootstrap import Difference
from vapipe.evaluation.comparisons import comparison_row, paper_comparisons, side_frames_path, verdict
from vapipe.evaluation.paper_rows import ccc_text, paper_table
from vapipe.evaluation.report_figures import forest_table, paper_mean

PAPER = {
    "rows": {
        "gated": {"system": "iaca_ca_gated", "score": "official"},
        "plain": {"system": "iaca_ca", "score": "official"},
        "fused": {"fusion": "dwf"},
        "selected": {"system": "sage_paper", "score": "targetwise"},
    },
    "comparisons": {"gating": {"a": {"row": "gated"}, "b": {"row": "plain"}, "claim": "gating helps"}},
}
SYSTEMS = {"iaca_ca_gated": {}, "iaca_ca": {}, "sage_paper": {}}


def test_a_row_side_is_its_system_and_scored_fold_or_its_fusion():
    resolved = paper_comparisons("iaca", PAPER, SYSTEMS, {"dwf": {}})["gating"]
    assert resolved["a"] == {"system": "iaca_ca_gated", "fold": "official"}
    assert side_frames_path(resolved["b"]) == "results/predictions/iaca_ca/official/frames.tsv"
    fused = {**PAPER, "comparisons": {"f": {"a": {"row": "fused"}, "b": {"row": "plain"}, "claim": "c"}}}
    side = paper_comparisons("p", fused, SYSTEMS, {"dwf": {}})["f"]["a"]
    assert side_frames_path(side) == "results/fusion/dwf/frames.tsv"


@pytest.mark.parametrize(
    "comparison, message",
    [
        ({"a": {"row": "nope"}, "b": {"row": "plain"}, "claim": "c"}, "row 'nope' is not a row of this paper"),
        ({"a": {"row": "selected"}, "b": {"row": "plain"}, "claim": "c"}, "scored 'targetwise'"),
        ({"a": {"system": "ghost", "fold": "official"}, "b": {"row": "plain"}, "claim": "c"}, "system 'ghost'"),
        ({"a": {"row": "gated"}, "b": {"row": "plain"}}, "needs exactly the keys"),
        ({"a": {"row": "gated", "fold": "k0"}, "b": {"row": "plain"}, "claim": "c"}, "expected {row: ..}"),
    ],
)
def test_a_bad_comparison_names_its_path(comparison, message):
    with pytest.raises(ConfigError, match=rf"rows iaca.comparisons.bad.*{message}"):
        paper_comparisons("iaca", {**PAPER, "comparisons": {"bad": comparison}}, SYSTEMS, {"dwf": {}})


def test_every_comparison_in_the_rows_file_resolves():
    papers = yaml.safe_load((REPO / "config/rows.yaml").read_text())
    systems = {name for spec in papers.values() for name in (spec.get("systems") or {})}
    fusions = {name for spec in papers.values() for name in (spec.get("fusions") or {})}
    resolved = {paper: paper_comparisons(paper, spec, systems, fusions) for paper, spec in papers.items()}
    assert len(resolved["iaca"]) == 4 and len(resolved["dasp"]) == 4
    assert resolved["iaca"]["gating_rjca"]["a"] == {"system": "iaca_rjca_gated_paper", "fold": "official"}


def test_the_verdict_needs_the_whole_interval_on_one_side():
    assert verdict(0.01, 0.2) == "holds"
    assert verdict(-0.01, 0.2) == "not resolved"
    assert verdict(-0.2, -0.01) == "reversed"
    differences = {
        "mean": Difference(0.05, -0.02, 0.12, 0.81),
        "valence": Difference(0.07, 0.0, 0.1, 0.9),
        "arousal": Difference(0.03, 0.0, 0.1, 0.7),
    }
    entry = {"a": {"system": "x", "fold": "official"}, "b": {"fusion": "f"}, "claim": "x beats f"}
    row = comparison_row("c", entry, differences)
    assert (row["a"], row["b"], row["difference"], row["share_positive"]) == ("x (official)", "f", 0.05, 0.81)
    assert row["verdict"] == "not resolved"


def _record(**extra):
    record = {
        "paper": "iaca",
        "table": 2,
        "row": "t2_ca",
        "label": "CA",
        "system": "iaca_ca",
        "scored_on": "official",
        "ours_valence": 0.5,
        "ours_arousal": 0.3,
        "ours_mean": 0.4,
        "ours_mean_low": 0.21,
        "ours_mean_high": 0.55,
        "paper_validation_valence": 0.541,
        "paper_validation_arousal": 0.517,
        "data": "demo (generated)",
        "weights": "face: random-init",
        "stand_ins": "face_r3d18 -> face_mobilenetv3",
        "smoothing": "none",
        "needs": "Training settings from the baselines' code.",
        "uses": "R3D-18 + ResNet-18; CA",
        "protocol_ours": "generated demo data; iaca trained on folds official, seed 0; scored on official",
    }
    return {**record, **extra}


def test_the_paper_table_states_protocols_deviations_and_the_comparisons():
    comparisons = pd.DataFrame(
        [
            {
                "comparison": "gating_ca",
                "claim": "gating helps",
                "a": "iaca_ca_gated (official)",
                "b": "iaca_ca (official)",
                "difference": 0.08,
                "low": 0.01,
                "high": 0.15,
                "share_positive": 0.98,
                "valence_difference": 0.1,
                "arousal_difference": 0.06,
                "verdict": "holds",
            }
        ]
    )
    text = paper_table("IACA", [_record()], protocol="Official split; validation CCC.", comparisons=comparisons)
    assert "0.400 [0.21, 0.55]" in text
    assert "The paper's evaluation protocol: Official split; validation CCC." in text
    protocol_line = next(line for line in text.splitlines() if line.startswith("| 2 | CA | R3D-18"))
    assert "iaca trained on folds official, seed 0" in protocol_line
    assert "Training settings from the baselines' code." in protocol_line
    assert "Backbones stand in for the paper's: face_r3d18 -> face_mobilenetv3." in protocol_line
    assert "Generated demo data" in protocol_line
    assert (
        "| gating_ca | gating helps | iaca_ca_gated (official) | iaca_ca (official) | +0.080 [+0.010, +0.150]" in text
    )
    assert text.rstrip().endswith("| 0.98 | holds |")


def test_our_cell_gives_seed_spread_and_interval_only_when_known():
    assert ccc_text(_record(ours_mean_sd=0.0123), "mean") == "0.400 ± 0.012 [0.21, 0.55]"
    assert ccc_text(_record(), "valence") == "0.500"


def test_the_forest_plot_draws_each_row_beside_the_papers_held_out_number():
    table = forest_table([_record(), _record(label="no interval", ours_mean_low=np.nan, ours_mean_high=np.nan)])
    assert table.loc[0, "paper"] == pytest.approx((0.541 + 0.517) / 2)  # the mean of the printed pair
    assert (table.loc[0, "low"], table.loc[0, "high"]) == (0.21, 0.55)
    assert (table.loc[1, "low"], table.loc[1, "high"]) == (0.4, 0.4)
    assert np.isnan(paper_mean({"paper_test_mean": 0.5}))  # a test number only: nothing to draw beside
    assert paper_mean({"paper_development_mean": 0.59, "paper_test_mean": 0.55}) == 0.59
