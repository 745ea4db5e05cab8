"""The real workflow, through snakemake itself, on a tiny demo config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO

from vapipe.features.cache import is_complete, read_store
from vapipe.features.masks import mask_path, read_mask
from vapipe.submission import validate_submission

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(workdir: Path, *args: str, configs=("config/config.yaml", "tests/config/tiny.yaml")):
    """Run snakemake on the repo's Snakefile in `workdir` with the given config files."""
    command = [
        *SNAKEMAKE,
        *args,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        *[str(REPO / c) for c in configs],
    ]
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


def share_spleeter(workdir: Path) -> None:
    """The 2.4 GB Spleeter environment and its checkpoint are built once, into the repository's
    resources/ (where a real run puts them), and shared by every test workflow that separates vocals."""
    (workdir / "resources").mkdir(exist_ok=True)
    for shared in ("envs", "models"):
        (REPO / "resources" / shared).mkdir(parents=True, exist_ok=True)
        (workdir / "resources" / shared).symlink_to(REPO / "resources" / shared)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """One uninterrupted run of the tiny demo to the submission (shared by the tests below)."""
    workdir = tmp_path_factory.mktemp("tiny_run")
    share_spleeter(workdir)
    result = snakemake(workdir, "--cores", "2", "results/submission.zip", "results/metrics/tcn_av.tsv")
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


@pytest.mark.slow
def test_end_to_end_demo_to_submission(tiny_run):
    example = tiny_run / "resources/demo/CVPR_6th_ABAW_VA_test_set_example.txt"
    n_rows = validate_submission(tiny_run / "results/submission.zip", example)
    assert n_rows == len(example.read_text().splitlines()) - 1
    metrics = pd.read_csv(tiny_run / "results/metrics/tcn_av.tsv", sep="\t").set_index("fold")
    assert set(metrics.index) == {"official", "k0", "k1", "kfold_pooled"}
    assert metrics[["valence", "arousal"]].abs().le(1).all().all()
    stores = list((tiny_run / "results/features/face_mobilenetv3").glob("*.zarr"))
    manifest = pd.read_csv(tiny_run / "results/manifest.tsv", sep="\t")
    assert len(stores) == len(manifest)
    assert (tiny_run / "logs/train_fold/tcn_av/k0.log").read_text().count("epoch") >= 3
    assert "RANDOM weights" in (tiny_run / "logs/embed/face_mobilenetv3/0.log").read_text()

    again = snakemake(tiny_run, "--cores", "2", "results/submission.zip", "results/metrics/tcn_av.tsv")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def start_and_kill_when(workdir: Path, ready) -> None:
    """Start the tiny run and SIGKILL snakemake and all its jobs as soon as `ready()` holds."""
    command = [
        *SNAKEMAKE,
        "--cores",
        "2",
        "results/submission.zip",
        "results/metrics/tcn_av.tsv",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(REPO / "config/config.yaml"),
        str(REPO / "tests/config/tiny.yaml"),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    try:
        while not ready():
            assert process.poll() is None, "the run ended before the kill point"
            assert time.monotonic() < deadline, "kill point never reached"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def resume(workdir: Path) -> None:
    """What a user does after a crash: unlock, then run the same command again."""
    assert snakemake(workdir, "--unlock").returncode == 0
    result = snakemake(workdir, "--cores", "2", "results/submission.zip", "results/metrics/tcn_av.tsv")
    assert result.returncode == 0, result.stderr[-5000:]


def assert_same_outputs(workdir: Path, reference: Path) -> None:
    for name in ("results/submission.zip", "results/metrics/tcn_av.tsv", "results/predictions/tcn_av/k0/frames.tsv"):
        assert (workdir / name).read_bytes() == (reference / name).read_bytes(), name


def store_identity(path: Path) -> tuple[int, int]:
    """(inode, mtime) of a store's folder and metadata: both change if the store is rewritten."""
    return path.stat().st_ino, (path / "zarr.json").stat().st_mtime_ns


@pytest.mark.slow
def test_killed_during_extraction_redoes_only_unfinished_trials(tiny_run, tmp_path):
    stores = tmp_path / "results/features/face_mobilenetv3"
    start_and_kill_when(
        tmp_path, lambda: any(p.name.endswith(".zarr") for p in stores.glob("*")) if stores.is_dir() else False
    )
    assert not (stores / "shards/0.tsv").exists() or not (stores / "shards/1.tsv").exists()
    finished = {p.name: store_identity(p) for p in stores.glob("*.zarr") if is_complete(p)}
    assert finished, "the kill came before any store was complete"
    resume(tmp_path)
    # The stores finished before the kill were kept as they were; the shards redid only the rest.
    assert {name: store_identity(stores / name) for name in finished} == finished
    summary = pd.concat(pd.read_csv(path, sep="\t") for path in sorted((stores / "shards").glob("*.tsv")))
    status = dict(zip(summary.trial, summary.status))
    redone = {trial for trial, s in status.items() if s == "computed"}
    assert {f"{trial}.zarr" for trial, s in status.items() if s == "cached"} <= set(finished)
    assert redone and not {f"{trial}.zarr" for trial in redone} & set(finished)
    for path in stores.glob("*.zarr"):  # every store equals the uninterrupted run's
        ours, reference = read_store(path), read_store(tiny_run / "results/features/face_mobilenetv3" / path.name)
        assert np.array_equal(ours.features, reference.features) and np.array_equal(ours.valid, reference.valid)
    assert_same_outputs(tmp_path, tiny_run)


@pytest.mark.slow
def test_killed_during_training_resumes_to_identical_outputs(tiny_run, tmp_path):
    logs = tmp_path / "logs/train_fold/tcn_av"
    start_and_kill_when(
        tmp_path, lambda: any("epoch 1/" in p.read_text() for p in logs.glob("*.log")) if logs.is_dir() else False
    )
    assert not (tmp_path / "results/submission.zip").exists()
    resume(tmp_path)
    assert_same_outputs(tmp_path, tiny_run)


@pytest.mark.slow
def test_mask_targets_of_the_tiny_run(tiny_run):
    shards = yaml.safe_load((REPO / "config/config.yaml").read_text())["extraction"]["shards"]
    targets = [f"results/masks/{mask}/shards/{s}.tsv" for mask in ("vad", "mouth") for s in range(shards)]
    result = snakemake(tiny_run, "--cores", "2", *targets)
    assert result.returncode == 0, result.stderr[-5000:]
    manifest = pd.read_csv(tiny_run / "results/manifest.tsv", sep="\t")
    for mask in ("vad", "mouth"):
        summary = pd.concat(pd.read_csv(tiny_run / t, sep="\t") for t in targets if f"/{mask}/" in t)
        assert sorted(summary.trial) == sorted(manifest.trial)
        for row in manifest.itertuples():
            store = read_mask(mask_path(tiny_run / "results/masks", mask, row.trial))
            assert store.features.shape == (row.n_rows, 1) and store.valid.any()


def write_override(path: Path, backbones: dict) -> str:
    """A config file adding backbones to the tiny config (its path, for `configs=`)."""
    path.write_text(yaml.safe_dump({"backbones": backbones}))
    return str(path)


@pytest.mark.slow
def test_exported_cache_imports_as_a_backbone_with_equal_stores(tiny_run, tmp_path):
    result = snakemake(tiny_run, "--cores", "2", "results/exports/face_mobilenetv3.h5")
    assert result.returncode == 0, result.stderr[-5000:]
    exported = tiny_run / "results/exports/face_mobilenetv3.h5"
    imported = {"face_imported": {"kind": "hdf5", "id": str(exported), "input": "face"}}
    configs = ("config/config.yaml", "tests/config/tiny.yaml", write_override(tmp_path / "import.yaml", imported))
    shards = [f"results/features/face_imported/shards/{s}.tsv" for s in range(2)]
    result = snakemake(tiny_run, "--cores", "2", *shards, configs=configs)
    assert result.returncode == 0, result.stderr[-5000:]
    manifest = pd.read_csv(tiny_run / "results/manifest.tsv", sep="\t")
    for trial in manifest.trial:
        ours = read_store(tiny_run / f"results/features/face_imported/{trial}.zarr")
        reference = read_store(tiny_run / f"results/features/face_mobilenetv3/{trial}.zarr")
        assert np.array_equal(ours.features, reference.features) and np.array_equal(ours.valid, reference.valid)
        assert ours.attrs["kind"] == "hdf5" and ours.attrs["fps"] == reference.attrs["fps"]


@pytest.mark.slow
def test_an_audio_backbone_on_vocals_reads_the_spleeter_output(tiny_run, tmp_path):
    # a backbone of its own: the demo's audio systems may have separated the vocals already
    vocals = {"voice_logmel_vocals_probe": {"kind": "logmel", "id": "logmel", "input": "vocals"}}
    configs = ("config/config.yaml", "tests/config/tiny.yaml", write_override(tmp_path / "vocals.yaml", vocals))
    target = "results/features/voice_logmel_vocals_probe/shards/0.tsv"
    result = snakemake(tiny_run, "-n", "--cores", "2", target, "--forcerun", "separate_vocals", configs=configs)
    assert result.returncode == 0, result.stderr[-5000:]
    planned = result.stdout
    assert "rule separate_vocals" in planned
    embed = planned[planned.index("rule embed_audio:") :].split("\n[")[0]  # up to the next job
    assert "backbone=voice_logmel_vocals_probe" in embed and ".vocals.wav" in embed


@pytest.mark.slow
def test_every_paper_model_trains_through_the_workflow_and_lands_in_the_table(tiny_run):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    systems = config["tables"]["demo_models"]["systems"]
    result = snakemake(
        tiny_run, "--cores", "2", "results/tables/demo_models.md", "results/sweeps/tcn_av/official/missing_audio.tsv"
    )
    assert result.returncode == 0, result.stderr[-5000:]
    table = (tiny_run / "results/tables/demo_models.md").read_text()
    for system in systems:
        assert f"| {system} |" in table
        seeds = config["systems"][system].get("seeds") or []
        trained = f"{system}_seed{seeds[0]}" if len(seeds) > 1 else system  # a seed-average trains its seeds
        log = (tiny_run / f"logs/train_fold/{trained}/official.log").read_text()
        assert "held-out CCC" in log
    sweep = pd.read_csv(tiny_run / "results/sweeps/tcn_av/official/missing_audio.tsv", sep="\t")
    assert list(sweep["share"]) == [0.0, 0.1, 0.2, 0.4, 0.6, 0.8]
    assert (tiny_run / "results/sweeps/tcn_av/official/missing_audio.png").stat().st_size > 10_000
    history = (tiny_run / "logs/train_fold/dresvyanskiy_audio_v1_seed0/official.log").read_text()
    assert "validation (early stopping / selection)" in history
    # Smoothing is Dresvyanskiy et al.'s protocol: SAGE's frames are its upsampled outputs as they are
    for system, smoothed in (("sage", False), ("dresvyanskiy_face", True)):
        folder = tiny_run / f"results/predictions/{system}/official"
        frames, upsampled = (pd.read_csv(folder / f"{name}.tsv", sep="\t") for name in ("frames", "upsampled"))
        assert frames[["valence", "arousal"]].equals(upsampled[["valence", "arousal"]]) != smoothed, system
    assert "| sage | sage | face_mobilenetv3, voice_wavlm | official" in table and "| none |" in table


def planned_jobs(result) -> dict[str, int]:
    """Job counts of a dry run's 'Job stats' table."""
    assert result.returncode == 0, result.stderr[-5000:]
    lines = result.stdout.splitlines()
    start = lines.index("Job stats:") + 3
    counts = {}
    for line in lines[start:]:
        fields = line.split()
        if len(fields) != 2 or fields[0] == "total":
            break
        counts[fields[0]] = int(fields[1])
    return counts


@pytest.mark.slow
def test_a_single_paper_row_plans_only_the_jobs_it_needs(tiny_run):
    papers = yaml.safe_load((REPO / "config/rows.yaml").read_text())
    every = planned_jobs(snakemake(tiny_run, "-n", "--cores", "2", "paper_tables"))
    assert every["paper_row"] == sum(len(p["rows"]) for p in papers.values()) == 37
    assert every["paper_table"] == 5 and every["fuse_systems"] == 3
    # Stage 1 jobs a row plans are only the caches the tiny run has not made yet (its stand-in backbones, masks).
    stage1 = {
        "embed_audio",
        "embed_faces",
        "detect_voice_activity",
        "detect_mouth_open",
        # the audio rows read Spleeter vocals (paper 001) and train on augmented copies
        "separate_vocals",
        "build_spleeter_env",
        "fetch_spleeter_model",
        "embed_audio_augmented",
    }
    row = snakemake(tiny_run, "-n", "--cores", "2", "results/rows/iaca/t2_tca.tsv")
    jobs = planned_jobs(row)
    # IACA's rows train three seeds (config/rows.yaml): one model per seed, their average scored,
    # and each seed scored for the spread the row reports
    assert {k: v for k, v in jobs.items() if k not in stage1} == {
        "train_fold": 3,
        "average_seed_predictions": 1,
        "postprocess_predictions": 4,
        "score_system": 4,
        "seed_scores": 1,
        "paper_row": 1,
    }
    assert "wildcards: system=iaca_tca_seed2, fold=official" in row.stdout
    fused = planned_jobs(snakemake(tiny_run, "-n", "--cores", "2", "results/rows/dresvyanskiy/t5_system4.tsv"))
    # the face model, KELM, and audio V3 as the average of its three seeds (config/config.yaml)
    assert {k: v for k, v in fused.items() if k not in stage1} == {
        "train_fold": 5,
        "average_seed_predictions": 1,
        "postprocess_predictions": 3,
        "fuse_systems": 1,
        "paper_row": 1,
    }
    for jobs in (planned_jobs(row), fused):
        assert set(jobs) <= set(every) and all(jobs[k] <= every[k] for k in jobs)
    assert fused["train_fold"] * 5 < every["train_fold"]


@pytest.mark.slow
def test_fusion_rows_table_submission_and_report(tiny_run, tmp_path):
    targets = [
        "results/tables/dresvyanskiy.md",
        "results/figures/tcn_av/traces.png",
        "results/sweeps/tcn_av/official/missing_audio.png",
    ]
    result = snakemake(tiny_run, "--cores", "2", *targets)
    assert result.returncode == 0, result.stderr[-5000:]
    rf = tiny_run / "results/metrics/dresvyanskiy_rf_face_audio_functionals.tsv"
    scores = pd.read_csv(rf, sep="\t").set_index("fold")["mean"]
    assert list(scores.index) == ["out_of_bag", "grouped_cv", "grouped_cv_smoothed"]
    assert abs(scores["out_of_bag"] - scores["grouped_cv"]) > 1e-3, scores  # both written, and not the same
    summary = yaml.safe_load((tiny_run / "results/fusion/dresvyanskiy_dwf_face_audio/summary.json").read_text())
    for target in ("valence", "arousal"):
        assert sum(summary["weights"][target].values()) == pytest.approx(1.0)
    table = (tiny_run / "results/tables/dresvyanskiy.md").read_text()
    for row in yaml.safe_load((REPO / "config/rows.yaml").read_text())["dresvyanskiy"]["rows"].values():
        assert f"| {row['table']} | {row['label']} |" in table
    assert "demo (generated)" in table and "random-init" in table

    # A fused system as the submission: its test rows, smoothed after fusion.
    override = tmp_path / "fused_submission.yaml"
    override.write_text("submission: {system: dresvyanskiy_dwf_face_audio, folds: [official]}\n")
    fused = snakemake(
        tiny_run,
        "--cores",
        "2",
        "results/submission.zip",
        configs=("config/config.yaml", "tests/config/tiny.yaml", str(override)),
    )
    assert fused.returncode == 0, fused.stderr[-5000:]
    assert (
        "from dresvyanskiy_dwf_face_audio (average: valence from fused"
        in (tiny_run / "logs/write_submission.log").read_text()
    )

    report = snakemake(tiny_run, "--report", "results/report.html", *targets)
    assert report.returncode == 0, report.stderr[-5000:]
    html = (tiny_run / "results/report.html").read_text()
    for name in ("traces.png", "missing_audio.png", "fusion.png", "dresvyanskiy.html", "ccc_per_trial.png"):
        assert name in html, name
