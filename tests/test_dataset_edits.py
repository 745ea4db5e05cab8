"""Edits to a real dataset are seen: the next run rebuilds the manifest and exactly the stores and
jobs the edit affects (per-trial source fingerprints in the manifest, in the stores, and in the
jobs' params), and nothing when nothing changed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO

from vapipe.data.demo import DemoSpec, generate_demo_dataset

TARGET = "results/metrics/tcn_av.tsv"


def run(workdir: Path, *args: str) -> dict[str, int]:
    """Run the workflow on the dataset; {rule: jobs run}."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        *args,
        TARGET,
        "--cores",
        "2",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(REPO / "config/config.yaml"),
        str(REPO / "tests/config/tiny.yaml"),
        str(workdir / "dataset.yaml"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    output = result.stdout + result.stderr
    if "Nothing to be done" in output:
        return {}
    jobs = {}  # every job run prints "rule NAME:" (jobs planned after the checkpoint included)
    for rule in re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):$", output, flags=re.M):
        jobs[rule] = jobs.get(rule, 0) + 1
    return jobs


@pytest.fixture(scope="module")
def dataset_run(tmp_path_factory) -> Path:
    """The tiny demo dataset used as a real one (no generating rule), run to tcn_av's metrics."""
    workdir = tmp_path_factory.mktemp("edits")
    tiny = yaml.safe_load((REPO / "tests/config/tiny.yaml").read_text())
    generate_demo_dataset(workdir / "data", DemoSpec(**tiny["dataset"]["demo"]))
    (workdir / "dataset.yaml").write_text(yaml.safe_dump({"dataset": {"demo": None, "root": str(workdir / "data")}}))
    first = run(workdir)
    assert first["build_manifest"] == 1 and first["train_fold"] == 3
    return workdir


@pytest.mark.slow
def test_nothing_changed_nothing_runs(dataset_run):
    assert run(dataset_run) == {}


@pytest.mark.slow
def test_an_edited_annotation_retrains_without_touching_the_caches(dataset_run):
    path = next((dataset_run / "data/annotations/VA_Estimation_Challenge/Train_Set").glob("*.txt"))
    lines = path.read_text().splitlines()
    lines[5] = "0.123,-0.456"
    path.write_text("\n".join(lines) + "\n")
    jobs = run(dataset_run)
    assert jobs == {"build_manifest": 1, "train_fold": 3, "postprocess_predictions": 3, "score_system": 1}
    assert run(dataset_run) == {}


@pytest.mark.slow
def test_a_changed_crops_folder_recomputes_that_trials_face_stores_only(dataset_run):
    manifest = pd.read_csv(dataset_run / "results/manifest.tsv", sep="\t").set_index("trial")
    trial = manifest.index[0]
    crops = sorted(Path(manifest.loc[trial, "crops_dir"]).glob("*.jpg"))
    crops[3].unlink()  # the detector lost a face
    jobs = run(dataset_run)
    assert jobs.pop("build_manifest") == 1 and "embed_audio" not in jobs and "extract_audio" not in jobs
    assert jobs["embed_faces"] == 1 and jobs["train_fold"] == 3
    summaries = [
        pd.read_csv(p, sep="\t") for p in (dataset_run / "results/features/face_mobilenetv3/shards").glob("*.tsv")
    ]
    shard = next(s for s in summaries if trial in set(s["trial"])).set_index("trial")["status"]
    assert len(shard) > 1 and shard[shard == "computed"].index.tolist() == [trial]  # the rest of its shard: cached
    assert run(dataset_run) == {}
