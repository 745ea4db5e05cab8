"""The scale rehearsal (issue 15): an Aff-Wild2-shaped release, its measured steps, and the resource
requests sized from them (`vapipe.rehearsal`, `vapipe.rehearsal_resources`, `vapipe rehearse`)."""

import json
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from vapipe.cli import main
from vapipe.data.affwild2 import base_video, read_annotation
from vapipe.data.manifest import DatasetLayout, build_manifest
from vapipe.features.cache import read_store, store_path, write_store
from vapipe.rehearsal import (
    FRAME_RATES,
    SPLIT_FRAMES,
    SPLIT_TRIALS,
    build_release,
    dataset_config,
    parse_job_count,
    plan_trials,
    requested_memory,
)
from vapipe.rehearsal_resources import (
    DEFAULT_WIDTH,
    backbone_width,
    fold_rows,
    fusion_mem_mb,
    train_fold_mem_mb,
)

FIELDS = {"step", "seconds", "peak_rss_gb", "features_gb_fp16"}


def test_the_full_size_plan_has_aff_wild2s_trials_frames_and_rates():
    plan = plan_trials(1.0)
    assert plan.groupby("split").size().to_dict() == SPLIT_TRIALS
    assert plan["trial"].is_unique and len(plan) == 594
    for split, frames in SPLIT_FRAMES.items():  # the right person copies the left one's length
        assert plan.loc[plan["split"] == split, "n_frames"].sum() == pytest.approx(frames, rel=0.05)
    two_person = plan[plan["trial"].str.endswith(("_left", "_right"))]
    assert plan["video"].nunique() == 550 and len(two_person) == 88
    for _, people in two_person.groupby("video"):
        assert sorted(people["trial"].str.rsplit("_", n=1).str[1]) == ["left", "right"]
        assert people["n_frames"].nunique() == people["split"].nunique() == people["fps"].nunique() == 1
        assert (people["trial"].map(base_video) == people["video"]).all()
    assert set(plan["fps"]) <= {rate for rate, _ in FRAME_RATES} and min(plan["fps"]) == Fraction(6)
    assert plan["fps"].value_counts().idxmax() == Fraction(30)
    extra = plan["n_rows"] - plan["n_frames"]
    assert set(extra[plan["split"] != "Test_Set"]) == {0, 1, 2} and (extra[plan["split"] == "Test_Set"] == 0).all()
    # Lengths spread like Aff-Wild2's (a few hundred to tens of thousands of frames), seeded.
    assert plan["n_frames"].min() < 1000 and plan["n_frames"].max() > 15_000
    pd.testing.assert_frame_equal(plan, plan_trials(1.0))
    assert plan_trials(1 / 8)["n_frames"].sum() == pytest.approx(plan["n_frames"].sum() / 8, rel=0.01)
    with pytest.raises(ValueError, match="fraction must be in"):
        plan_trials(0)


def test_job_counts_and_memory_requests_are_read_from_a_dry_run():
    text = """
rule train_fold:
    input: a
    wildcards: system=tcn_av, fold=k0
    resources: tmpdir=<TBD>, mem_mb=19500, mem_mib=18597, runtime=120, gpu=1
rule train_fold:
    resources: tmpdir=<TBD>, mem_mb=2100, mem_mib=2003
localrule fuse_systems:
    resources: mem_mb=1700, runtime=30
rule score_system:
    resources: mem_mb=99999
Job stats:
job           count
----------  -------
train_fold        2
total          1839
"""
    assert parse_job_count(text) == 1839
    assert requested_memory(text, ("train_fold", "fuse_systems")) == {"train_fold": 19500, "fuse_systems": 1700}
    with pytest.raises(RuntimeError, match="no job count"):
        parse_job_count("nothing to do")


def test_backbone_widths_come_from_a_store_the_config_or_the_known_table(tmp_path):
    resnet = {"kind": "timm", "id": "resnet50"}
    assert backbone_width(resnet) == 2048
    assert backbone_width({"kind": "hf_audio", "id": "microsoft/wavlm-base", "config": {"hidden_size": 128}}) == 128
    assert backbone_width({"kind": "hf_audio", "id": "microsoft/wavlm-base"}) == 768
    assert backbone_width({"kind": "logmel", "id": "logmel", "n_mels": 64}) == 64
    assert backbone_width({"kind": "hf_clip_vision", "id": "x", "output": "pooler_output"}) == 768
    assert backbone_width({"kind": "onnx", "id": "mine"}) == DEFAULT_WIDTH
    # A store already written wins over the table (e.g. a timm model the table does not know).
    write_store(store_path(tmp_path, "face", "t1"), np.zeros((5, 7)), np.ones(5, bool), {"backbone": "face"})
    assert backbone_width(resnet, tmp_path, "face") == 7
    assert backbone_width(resnet, tmp_path, "other") == 2048


def test_a_folds_memory_request_follows_its_frames_and_widths():
    manifest = pd.DataFrame(
        {"split": ["Train_Set", "Validation_Set", "Test_Set"], "n_rows": [1_600_000, 370_000, 10**6]}
    )
    rows = fold_rows(manifest)
    assert rows == 1_970_000  # test trials are loaded after training, not held with the fold
    # Aff-Wild2's default backbones: 11.1 GB of float16 features; 1.1 x that + 1.5 GB + 0.9 MB per input dim.
    feature_mb = rows * (2048 + 768) * 2 / 1e6
    request = train_fold_mem_mb(rows, [2048, 768])
    assert request == math.ceil((1500 + 1.1 * feature_mb + 0.9 * 2816) / 100) * 100 == 16300
    # Every full-size peak the rehearsal measured (GB) fits with 10% to spare, and fits a 24 GB machine.
    for model, peak in {"tcn_fusion": 13.91, "sage": 14.60, "mstcn_cma": 14.56, "dasp": 13.66, "iaca": 16.86}.items():
        assert peak * 1.1 * 1000 <= train_fold_mem_mb(rows, [2048, 768], model=model) <= 24000, model
    # ... and at 1/8 (tcn_av, 4.20 GB with 1.39 GB of features) and 1/16 (sage, 4.51 GB with 0.69 GB).
    assert train_fold_mem_mb(246_836, [2048, 768]) > 4200 and train_fold_mem_mb(123_418, [2048, 768]) > 4510
    assert train_fold_mem_mb(rows // 2, [2048, 768]) < 0.65 * request
    assert train_fold_mem_mb(6000, [1024, 128]) == 2600  # the demo: the fixed part and its widths
    raw = 1500 + 1.1 * feature_mb + 0.9 * 2816
    assert train_fold_mem_mb(rows, [2048, 768], attempt=2) == math.ceil(raw * 1.5 / 100) * 100
    assert fusion_mem_mb(manifest, 3, 1) < fusion_mem_mb(manifest, 3, 5) < 2 * fusion_mem_mb(manifest, 3, 5, attempt=2)


def test_the_release_at_a_tiny_fraction_has_aff_wild2s_layout(tmp_path):
    """The release passes the manifest as Aff-Wild2 does (config/affwild2.yaml's dataset section)."""
    plan = build_release(tmp_path / "release", 0.002)
    manifest, skipped = build_manifest(DatasetLayout.from_config(dataset_config(tmp_path / "release")))
    assert skipped.empty and len(manifest) == 594
    merged = manifest.merge(plan, on="trial", suffixes=("", "_plan"))
    assert len(merged) == 594
    assert (merged["n_frames"] == merged["n_frames_plan"]).all() and (merged["n_rows"] == merged["n_rows_plan"]).all()
    assert [Fraction(f) for f in merged["fps_fraction"]] == list(merged["fps_plan"])
    assert (merged["split"] == merged["split_plan"]).all() and not merged["variable_rate"].any()
    assert (merged["n_crops"] <= merged["n_frames"]).all() and merged["timing_note"].eq("").all()
    assert manifest["crops_dir"].str.contains("cropped_aligned_new_50_vids").sum() == 50
    labelled = manifest[manifest["split"] != "Test_Set"]
    some = read_annotation(labelled["annotation_path"].iloc[0])
    assert some.shape == (labelled["n_rows"].iloc[0], 2) and (np.abs(some[some != -5]) <= 1).all()


@pytest.mark.slow
def test_vapipe_rehearse_prints_one_json_line_per_measured_step(tmp_path, capsys):
    """Release, manifest, stores, fusions and submission at F = 0.002 through the command line."""
    out = tmp_path / "rehearsal"
    steps = ["release", "manifest", "features", "fusion", "submission"]
    assert main(["rehearse", "--fraction", "0.002", "--out", str(out), "--steps", *steps]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["step"] for r in lines] == [
        "release",
        "manifest",
        "features",
        "fusion:random_forest",
        "fusion:dwf",
        "submission",
    ]
    for record in lines:
        assert FIELDS <= set(record) and "error" not in record, record
        assert record["seconds"] > 0 and 0.01 < record["peak_rss_gb"] < 8
    by_step = {r["step"]: r for r in lines}
    assert by_step["release"]["trials"] == by_step["manifest"]["trials"] == 594
    assert by_step["features"]["stores_gb_fp16"] == pytest.approx(
        by_step["manifest"]["frames"] * 2816 * 2 / 1e9, abs=1e-3
    )
    some = read_store(next((out / "run" / "results" / "features" / "face_resnet50").glob("*.zarr")))
    assert some.features.shape[1] == 2048 and some.attrs["synthetic"] is True
    rf = by_step["fusion:random_forest"]
    assert rf["fitting_frames"] == by_step["release"]["frames_by_split"]["Validation_Set"]
    assert rf["scores"]["grouped_cv_smoothed"] > 0.5  # the synthetic systems carry the labels
    assert by_step["submission"]["rows"] == by_step["release"]["frames_by_split"]["Test_Set"]
