"""The real workflow, through snakemake itself, on a tiny demo config."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO
from vapipe.submission import validate_submission

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(workdir: Path, *args: str, configs=("config/config.yaml", "tests/config/tiny.yaml")):
    """Run snakemake on the repo's Snakefile in `workdir` with the given config files."""
    command = [*SNAKEMAKE, *args, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--configfile", *[str(REPO / c) for c in configs]]
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


def test_lint_reports_only_the_per_rule_environment_message(tmp_path):
    result = snakemake(tmp_path, "--lint", configs=("config/config.yaml",))
    lints = [line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip().startswith("* ")]
    assert lints, result.stderr
    assert {line for line in lints} == {"* Specify a conda environment or container for each rule.:"}


def test_dry_run_of_the_default_config_plans_the_whole_pipeline(tmp_path):
    result = snakemake(tmp_path, "-n", "--cores", "8", "results/submission.zip", configs=("config/config.yaml",))
    assert result.returncode == 0, result.stderr
    assert "make_demo_dataset" in result.stdout and "build_manifest" in result.stdout


def test_missing_real_dataset_stops_with_one_clear_message(tmp_path):
    result = snakemake(tmp_path, "-n", "--cores", "1", configs=("config/affwild2.yaml",))
    assert result.returncode != 0
    assert "dataset.root '/data/affwild2' does not exist" in result.stdout + result.stderr


@pytest.mark.slow
def test_end_to_end_demo_to_submission(tmp_path):
    result = snakemake(tmp_path, "--cores", "2", "results/submission.zip", "results/metrics/tcn_av.tsv")
    assert result.returncode == 0, result.stderr[-5000:]
    example = tmp_path / "resources/demo/CVPR_6th_ABAW_VA_test_set_example.txt"
    n_rows = validate_submission(tmp_path / "results/submission.zip", example)
    assert n_rows == len(example.read_text().splitlines()) - 1
    metrics = pd.read_csv(tmp_path / "results/metrics/tcn_av.tsv", sep="\t").set_index("fold")
    assert set(metrics.index) == {"official", "k0", "k1", "kfold_pooled"}
    assert metrics[["valence", "arousal"]].abs().le(1).all().all()
    stores = list((tmp_path / "results/features/face_mobilenetv3").glob("*.zarr"))
    manifest = pd.read_csv(tmp_path / "results/manifest.tsv", sep="\t")
    assert len(stores) == len(manifest)
    assert (tmp_path / "logs/train_fold/tcn_av/k0.log").read_text().count("epoch") >= 3

    again = snakemake(tmp_path, "--cores", "2", "results/submission.zip", "results/metrics/tcn_av.tsv")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
