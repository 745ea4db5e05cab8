from pathlib import Path

import pandas as pd
import pytest
import yaml

from vapipe.config import ConfigError
from vapipe.evaluation.paper_rows import (
    load_paper_rows,
    materialize_rows,
    paper_table,
    row_record,
    row_scores,
)
from vapipe.evaluation.tables import markdown_page_html, metrics_page

REPO = Path(__file__).resolve().parents[1]
# What the issue asks a row for, per paper: (table, count).
EXPECTED_ROWS = {
    "sage": {1: 1, 2: 1},
    "dresvyanskiy": {2: 3, 4: 3, 5: 4},
    "iaca": {1: 1, 2: 8},
    "ustc": {2: 6},
    "dasp": {1: 2, 2: 6, 3: 2},
}


def load_config(*names):
    config = {}
    for name in names:
        for key, value in yaml.safe_load((REPO / name).read_text()).items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                merged = dict(config[key])
                for k, v in value.items():
                    merged[k] = {**merged[k], **v} if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
                config[key] = merged
            else:
                config[key] = value
    return config


def test_every_paper_row_the_issue_lists_is_declared():
    papers = load_paper_rows(REPO / "config/rows.yaml")
    for paper, tables in EXPECTED_ROWS.items():
        counts = pd.Series([row["table"] for row in papers[paper]["rows"].values()]).value_counts().to_dict()
        assert counts == tables, (paper, counts)


# tests/data/paper_numbers.yaml: every printed number of the rows, transcribed from the papers' text
# independently of config/rows.yaml (its header says how).
PAPER_NUMBERS = yaml.safe_load((REPO / "tests/data/paper_numbers.yaml").read_text())


def printed_numbers(entry: dict) -> dict:
    """{(split, target): value} of a row's `paper:` mapping or a transcription entry (nulls kept)."""
    return {(split, t): v for split, values in entry.items() if split != "source" for t, v in values.items()}


def test_every_printed_number_in_the_rows_file_is_the_papers():
    papers = load_paper_rows(REPO / "config/rows.yaml")
    assert set(papers) == set(PAPER_NUMBERS)
    checked = 0
    for paper, transcribed in PAPER_NUMBERS.items():
        declared = {**papers[paper]["rows"], **(papers[paper].get("printed") or {})}
        assert set(declared) == set(transcribed), paper  # no printed row missing, none invented
        for row_id, entry in transcribed.items():
            ours = printed_numbers(declared[row_id]["paper"])
            assert ours == printed_numbers(entry), (paper, row_id, entry["source"])
            assert f"Table {declared[row_id]['table']}" in entry["source"], (paper, row_id)
            checked += sum(v is not None for v in ours.values())
    assert checked == 114


@pytest.mark.parametrize("paper", sorted(PAPER_NUMBERS))
def test_the_transcribed_means_are_the_mean_of_valence_and_arousal(paper):
    """A check on the transcription itself: where a paper prints the mean, it is (V + A) / 2 up to
    the printed rounding."""
    for row_id, entry in PAPER_NUMBERS[paper].items():
        for split, values in entry.items():
            if split == "source" or values.get("mean") is None or values.get("valence") is None:
                continue
            assert abs(values["mean"] - (values["valence"] + values["arousal"]) / 2) <= 6e-4, (row_id, split)


def test_printed_only_rows_appear_in_the_table_without_ours():
    from vapipe.evaluation.paper_rows import printed_record

    papers = load_paper_rows(REPO / "config/rows.yaml")
    baseline = printed_record("ustc", "t2_baseline", papers["ustc"]["printed"]["t2_baseline"])
    text = paper_table("USTC", [], [baseline])
    assert "| 2 | Baseline | validation | 0.240 | 0.200 | – | not reproduced | – | – | – |" in text


@pytest.mark.parametrize("configs", [["config/config.yaml"], ["config/affwild2.yaml"]])
def test_rows_materialize_in_the_demo_and_the_real_config(configs):
    config = load_config(*configs)
    papers = load_paper_rows(REPO / "config/rows.yaml")
    systems, fusions = materialize_rows(config, papers)
    assert len(fusions) == 3 and fusions["dresvyanskiy_rf_face_audio_functionals"]["method"] == "random_forest"
    iaca = systems["iaca_tca_gated"]
    assert iaca["params"]["fusion"] == "tca" and iaca["params"]["gating"] is True
    assert iaca["paper_features"] == ["face_r3d18", "voice_resnet18_spec"]
    assert "folds" not in systems["ustc_mstcn"]  # folds: all
    assert systems["dresvyanskiy_kelm_mean_max"]["params"]["functionals"] == ["mean", "max"]
    for system in systems.values():
        assert all(f in config["backbones"] for f in system["features"])
    if config["dataset"].get("demo"):
        assert iaca["features"] == ["face_mobilenetv3", "voice_logmel"]
    else:
        assert iaca["features"] == ["face_r3d18", "voice_resnet18_spec"]


def test_the_audio_rows_run_the_papers_voiced_segments_and_a_config_can_lay_settings_over_a_row():
    config = load_config("config/config.yaml")
    papers = load_paper_rows(REPO / "config/rows.yaml")
    systems, _ = materialize_rows(config, papers)
    demo = config["systems"]["dresvyanskiy_audio_v1"]["train"]
    assert (demo["min_speech_seconds"], demo["speech_windows"]) == (0, "trial")  # the demo's own choice
    row = systems["dresvyanskiy_audio_v1_pdem"]["train"]
    assert (row["min_speech_seconds"], row["speech_windows"], row["speech_gap_seconds"]) == (2.0, "segments", 0.5)
    assert row["epochs"] == demo["epochs"]  # everything else from the system it derives from
    config["row_systems"] = {"dresvyanskiy_audio_v1_pdem": {"train": {"min_speech_seconds": 0.5}}}
    systems, _ = materialize_rows(config, papers)
    assert systems["dresvyanskiy_audio_v1_pdem"]["train"]["min_speech_seconds"] == 0.5
    assert systems["dresvyanskiy_audio_v1_pdem"]["train"]["speech_windows"] == "segments"
    assert systems["dresvyanskiy_audio_v2_pdem"]["train"]["min_speech_seconds"] == 2.0
    config["row_systems"] = {"dresvyanskiy_audio_v9_pdem": {"train": {}}}
    with pytest.raises(ConfigError, match="row_systems.dresvyanskiy_audio_v9_pdem: no paper row defines"):
        materialize_rows(config, papers)


def test_materializing_names_what_is_wrong(tmp_path):
    config = load_config("config/config.yaml")
    rows = yaml.safe_load((REPO / "config/rows.yaml").read_text())
    rows["iaca"]["systems"]["iaca_ca"]["features"] = ["face_unknown", "voice_resnet18_spec"]
    with pytest.raises(ConfigError, match="rows iaca.systems.iaca_ca: backbone 'face_unknown' is neither"):
        materialize_rows(config, rows)
    rows = yaml.safe_load((REPO / "config/rows.yaml").read_text())
    rows["sage"]["systems"]["sage_paper"]["from"] = "nope"
    with pytest.raises(ConfigError, match="'from' names system 'nope'"):
        materialize_rows(config, rows)
    rows = yaml.safe_load((REPO / "config/rows.yaml").read_text())
    rows["sage"]["systems"]["tcn_av"] = {"from": "sage"}
    with pytest.raises(ConfigError, match="already used"):
        materialize_rows(config, rows)
    path = tmp_path / "rows.yaml"
    path.write_text(
        "sage:\n  title: x\n  rows:\n    r1: {table: 1, label: x, paper: {validation: {}}, system: a, fusion: b}\n"
    )
    with pytest.raises(ConfigError, match=f"{path}: sage.rows.r1: give exactly one of 'system' or 'fusion'"):
        load_paper_rows(path)


def test_row_scores_pick_the_fold_the_row_reports_or_select_per_target():
    metrics = pd.DataFrame(
        {
            "fold": ["official", "k0", "k1", "kfold_pooled", "train_k0", "train_k1"],
            "valence": [0.5, 0.3, 0.6, 0.4, 0.2, 0.35],
            "arousal": [0.7, 0.8, 0.2, 0.5, 0.45, 0.4],
            "mean": [0.6, 0.55, 0.4, 0.45, 0.325, 0.375],
            "n_frames": [10, 20, 20, 40, 10, 10],
        }
    )
    assert row_scores(metrics, "official") == (
        "official",
        {"valence": 0.5, "arousal": 0.7, "mean": 0.6, "n_frames": 10},
    )
    assert row_scores(metrics, None)[0] == "official"
    # target-wise: only the within-train folds, all scored on the official validation set, compete
    what, scores = row_scores(metrics, "targetwise")
    assert "valence train_k1, arousal train_k0" in what
    assert scores["mean"] == pytest.approx(0.4)
    with_intervals = metrics.assign(valence_low=metrics["valence"] - 0.1, arousal_high=metrics["arousal"] + 0.1)
    _, scores = row_scores(with_intervals, "targetwise")
    assert (scores["valence_low"], scores["arousal_high"]) == pytest.approx((0.25, 0.55))  # the chosen folds'
    assert scores["mean"] == pytest.approx(0.4) and "mean_low" not in scores
    with pytest.raises(ValueError, match="no row 'k7'"):
        row_scores(metrics, "k7")


def test_a_paper_table_sets_ours_beside_the_paper_and_names_data_weights_and_stand_ins():
    config = load_config("config/config.yaml")
    papers = load_paper_rows(REPO / "config/rows.yaml")
    systems, fusions = materialize_rows(config, papers)
    config["systems"].update(systems)
    config["fusions"] = fusions
    row = papers["dresvyanskiy"]["rows"]["t5_system4"]
    metrics = pd.DataFrame(
        {
            "fold": ["out_of_bag", "grouped_cv", "grouped_cv_smoothed"],
            "valence": [0.9, 0.5, 0.52],
            "arousal": [0.8, 0.4, 0.41],
            "mean": [0.85, 0.45, 0.465],
            "n_frames": [100, 100, 100],
        }
    )
    record = row_record("dresvyanskiy", "t5_system4", row, config, metrics)
    assert record["scored_on"] == "grouped_cv_smoothed" and record["ours_mean"] == 0.465
    assert record["paper_development_mean"] == 0.763 and record["paper_test_mean"] == 0.4324
    assert record["data"] == "demo (generated)"
    assert "face_mobilenetv3: random-init" in record["weights"]
    assert "face_efficientnet_b1 -> face_mobilenetv3" in record["stand_ins"]
    text = paper_table("Dresvyanskiy", [record])
    assert "| 5 | 4: RF (face + audio + functionals) | development / test | 0.738 / 0.401 |" in text
    assert "out_of_bag 0.850" in text and "0.465" in text


def test_markdown_tables_become_html_pages_the_report_can_show():
    page = markdown_page_html("# T <1>\n\nnote\n\n| a | b |\n|---|---|\n| 1 | x & y |\n")
    assert "<h1>T &lt;1&gt;</h1>" in page and "<p>note</p>" in page
    assert "<tr><th>a</th><th>b</th></tr>" in page and "<tr><td>1</td><td>x &amp; y</td></tr>" in page
    assert "---" not in page
    metrics = pd.DataFrame(
        {"fold": ["official"], "valence": [0.5], "arousal": [0.25], "mean": [0.375], "n_frames": [10]}
    )
    assert "<td>sys</td><td>official</td><td>0.500</td><td>0.250</td><td>0.375</td><td>10</td>" in metrics_page(
        {"sys": metrics}
    )


@pytest.mark.parametrize("configs", [["config/config.yaml"], ["config/affwild2.yaml"]])
def test_each_row_is_smoothed_only_where_its_paper_smooths(configs):
    """Issue 13.1: the 0.5 s Hamming window is Dresvyanskiy et al.'s; SAGE, IACA, USTC and DASP
    describe no smoothing, so their rows are scored on the upsampled predictions as they are."""
    from vapipe.specs import PipelineSpec

    config = load_config(*configs)
    papers = load_paper_rows(REPO / "config/rows.yaml")
    systems, fusions = materialize_rows(config, papers)
    spec = PipelineSpec.from_config({**config, "systems": {**config["systems"], **systems}, "fusions": fusions})
    for paper, declared in papers.items():
        for row in declared["rows"].values():
            names = [row["system"]] if "system" in row else list(spec.fusions[row["fusion"]].systems)
            expected = 0.5 if paper == "dresvyanskiy" else 0.0
            assert {spec.postprocess_of(n).smoothing_seconds for n in names} == {expected}, (paper, row["label"])
    assert spec.postprocess.smoothing_seconds == 0.5  # the default, for the config's other systems


def test_the_tables_state_each_rows_smoothing():
    config = load_config("config/config.yaml")
    papers = load_paper_rows(REPO / "config/rows.yaml")
    systems, fusions = materialize_rows(config, papers)
    config["systems"].update(systems)
    config["fusions"] = fusions
    metrics = pd.DataFrame({"fold": ["official"], "valence": [0.5], "arousal": [0.4], "mean": [0.45], "n_frames": [9]})
    iaca = row_record("iaca", "t2_ca", papers["iaca"]["rows"]["t2_ca"], config, metrics)
    face = row_record(
        "dresvyanskiy", "t4_mean_min_max", papers["dresvyanskiy"]["rows"]["t4_mean_min_max"], config, metrics
    )
    assert iaca["smoothing"] == "none" and face["smoothing"] == "Hamming 0.5 s"
    voiced = pd.concat([metrics, metrics.assign(fold="official_voiced")], ignore_index=True)
    audio = row_record("dresvyanskiy", "t2_v1", papers["dresvyanskiy"]["rows"]["t2_v1"], config, voiced)
    assert audio["scored_on"] == "official_voiced" and audio["smoothing"] == "none"  # Table 2: before post-processing
    assert "| official | 0.500 | 0.400 | 0.450 | none | iaca_ca |" in paper_table("IACA", [iaca])


def test_sages_audio_backbone_is_the_papers_wavlm_base():
    """Issue 13.3: SAGE (paper 000, sec. 4.1) uses WavLM-base; base-plus is a different model."""
    backbones = load_config("config/affwild2.yaml")["backbones"]
    assert backbones["voice_wavlm_base"]["id"] == "microsoft/wavlm-base"
    papers = load_paper_rows(REPO / "config/rows.yaml")
    assert papers["sage"]["systems"]["sage_paper"]["features"] == ["face_resnet50", "voice_wavlm_base"]
