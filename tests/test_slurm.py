"""profiles/slurm on a real SLURM: a one-node cluster on localhost runs the tiny demo to its submission.

The cluster (tests/slurm_cluster.py) is Debian's slurm-wlm with accounting (slurmdbd on MariaDB), so
the plugin checks job states with `sacct`, as on most sites. Its node declares 16 CPUs, 160 GB and
two GPUs (stand-in device files), so the profile's requests are used exactly as written; the jobs run
on this machine's CPUs. The run is killed (SIGKILL, as when a login node dies) once the first face
extraction shard has finished while another job runs, its jobs are cancelled with scancel, and the
same command is run again. A local run of the same config goes alongside, for its submission.

When SLURM is not installed, the cluster tests install it as root (apt) and skip otherwise, with the
reason; with CI=true they fail instead of skipping.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import slurm_cluster
import yaml
from conftest import REPO

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
CONFIGS = [str(REPO / "config/config.yaml"), str(REPO / "tests/config/tiny.yaml")]
TARGET = "results/submission.zip"
# The plugin waits 40 s before its first status check and adds 10 s per check while nothing ends;
# the test cluster answers at once. None of these keys is in the profile: nothing of it is replaced.
FAST_STATUS = ["--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2"]
# Partition and account on the command line, as the README says to.
SITE = ["--default-resources", f"slurm_partition={slurm_cluster.PARTITION}", f"slurm_account={slurm_cluster.ACCOUNT}"]
RUN_TIMEOUT = 1200
# SLURM's client and daemon commands (Debian's slurm-client, slurmctld, slurmd, slurmdbd).
SLURM_COMMANDS = {
    "sacct",
    "sacctmgr",
    "salloc",
    "sattach",
    "sbatch",
    "sbcast",
    "scancel",
    "scontrol",
    "scrontab",
    "sdiag",
    "sinfo",
    "sprio",
    "squeue",
    "sreport",
    "srun",
    "sshare",
    "sstat",
    "strigger",
    "sview",
}


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    return [
        *SNAKEMAKE,
        TARGET,
        *args,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        *CONFIGS,
    ]


def without_slurm_path(folder: Path) -> str:
    """A PATH folder that links every program on PATH except SLURM's."""
    folder.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/sbin", "/sbin"]:
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            name = entry.name
            if name in SLURM_COMMANDS or name.startswith("slurm") or os.path.lexists(folder / name):
                continue
            if os.access(entry.path, os.X_OK):
                (folder / name).symlink_to(entry.path)
    return str(folder)


def test_dry_run_of_the_slurm_profile_needs_no_slurm(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PATH"] = without_slurm_path(tmp_path / "bin")
    assert shutil.which("sbatch", path=env["PATH"]) is None
    workdir = tmp_path / "run"
    command = [
        *SNAKEMAKE,
        "-n",
        TARGET,
        "--workflow-profile",
        str(REPO / "profiles/slurm"),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(REPO / "config/config.yaml"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "workflow specific profile" in output and "This was a dry-run" in output
    # The GPU rules ask SLURM for a GPU with the plugin's resources; the small jobs go as groups.
    embed = re.search(r"rule embed_faces:\n(?:\s+\S.*\n)*?\s+resources: (.*)\n", output)
    assert embed and "gpu=1" in embed.group(1) and "cpus_per_gpu=8" in embed.group(1), output[-5000:]
    assert "slurm_extra" not in output
    assert "Group job scoring" in output


# --- the real cluster ---------------------------------------------------------------------------


def unavailable(reason: str):
    """Skip, except in CI, where a missing cluster is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"SLURM test cluster unavailable in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def cluster():
    missing = slurm_cluster.missing_programs()
    if missing:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            unavailable(
                f"SLURM is not installed ({', '.join(missing)} missing) and cannot be installed "
                f"here (needs root and apt-get): apt-get install {' '.join(slurm_cluster.PACKAGES)}"
            )
        try:
            slurm_cluster.install()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            unavailable(f"installing {' '.join(slurm_cluster.PACKAGES)} failed: {error}")
    if os.geteuid() != 0:
        unavailable("starting the SLURM daemons needs root")
    root = Path(tempfile.mkdtemp(prefix="vapipe-slurm-"))
    root.chmod(0o755)  # munged runs as the munge user
    local = slurm_cluster.LocalCluster(root)
    try:
        try:
            local.start()
        except (RuntimeError, OSError, subprocess.SubprocessError) as error:
            unavailable(f"the one-node SLURM cluster did not start: {error}")
        yield local
    finally:
        local.stop()
        shutil.rmtree(root, ignore_errors=True)


def merged_config() -> dict:
    def update(base: dict, new: dict) -> dict:
        for key, value in new.items():
            base[key] = update(base.get(key, {}), value) if isinstance(value, dict) else value
        return base

    config: dict = {}
    for path in CONFIGS:
        update(config, yaml.safe_load(Path(path).read_text()))
    return config


def expected_slurm_jobs() -> set[str]:
    """The SLURM job comments (rule and wildcards) of one whole run of the tiny demo to its submission."""
    config = merged_config()
    name = config["submission"]["system"]
    system = config["systems"][name]
    assert config["dataset"].get("demo") and not system.get("params", {}).get("prototypes"), "not a plain tiny demo"
    shards = range(config["extraction"]["shards"])
    backbones = {b: config["backbones"][b] for b in system["features"]}
    assert all(b["input"] in ("face", "mixture") for b in backbones.values()), "the DAG below has no vocals"
    all_folds = ["official"] * bool(config["folds"]["official"]) + [f"k{i}" for i in range(config["folds"]["k"])]
    return {
        "rule_make_demo_dataset",
        "rule_build_manifest",
        "rule_make_folds",
        "rule_audio_extract_audio",  # the group of every video's audio track
        *[
            f"rule_embed_faces_wildcards_{b}_{s}"
            for b, spec in backbones.items()
            if spec["input"] == "face"
            for s in shards
        ],
        *[
            f"rule_embed_audio_wildcards_{b}_{s}"
            for b, spec in backbones.items()
            if spec["input"] != "face"
            for s in shards
        ],
        *[f"rule_train_fold_wildcards_{name}_{fold}" for fold in system.get("folds", all_folds)],
        "rule_scoring_postprocess_predictions_score_system_write_submission",  # the group after training
    }


def sacct(cluster, run_id: str) -> pd.DataFrame:
    """SLURM's accounting records of one snakemake run (its jobs share the run id as their name)."""
    since = (datetime.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    result = subprocess.run(
        [
            "sacct",
            "-X",
            "-n",
            "-P",
            "-S",
            since,
            "--name",
            run_id,
            "--format=JobID,Comment,Partition,Account,State,Start,End,Elapsed,AllocTRES",
        ],
        capture_output=True,
        text=True,
        env=cluster.env,
        timeout=60,
        check=True,
    )
    rows = [line.split("|") for line in result.stdout.splitlines() if line.strip()]
    table = pd.DataFrame(
        rows, columns=["job", "comment", "partition", "account", "state", "start", "end", "elapsed", "tres"]
    )
    table["state"] = table["state"].str.split().str[0]  # "CANCELLED by 0" -> CANCELLED
    return table


def finished_outputs(log: str) -> list[str]:
    """Outputs of the jobs that snakemake reported finished, from its log."""
    outputs, current = {}, None
    for line in log.splitlines():
        if match := re.match(r"\s+output: (.+)$", line):
            current = match.group(1).split(", ")
        elif (match := re.match(r"\s+jobid: (\d+)$", line)) and current is not None:
            outputs[match.group(1)] = current
            current = None
    done = re.findall(r"Finished jobid: (\d+) \(Rule: \w+\)", log)
    return sorted({path for jobid in done for path in outputs[jobid]})


def mtimes(workdir: Path, outputs: list[str]) -> dict[str, int]:
    """Modification times of the given outputs (every file inside a directory output)."""
    files = {}
    for output in outputs:
        path = workdir / output
        for file in [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]:
            files[str(file.relative_to(workdir))] = file.stat().st_mtime_ns
    return files


def run_until(command: list[str], log_path: Path, env: dict, stop_when=None) -> tuple[int | None, str]:
    """Run snakemake; SIGKILL it (its whole process group) as soon as `stop_when(log)` holds."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + RUN_TIMEOUT
    try:
        while process.poll() is None:
            if stop_when is not None and stop_when(log_path.read_text()):
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return None, log_path.read_text()
            assert time.monotonic() < deadline, f"snakemake ran past {RUN_TIMEOUT} s:\n{log_path.read_text()[-5000:]}"
            time.sleep(0.5)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode, log_path.read_text()


@dataclass
class SlurmRun:
    workdir: Path
    local: Path
    first_log: str
    second_log: str
    first: pd.DataFrame  # sacct of the killed run
    second: pd.DataFrame  # sacct of the resubmitted run
    before: dict[str, int]  # mtimes of the killed run's finished outputs, before the resubmission
    seconds: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory) -> SlurmRun:
    """The tiny demo on the cluster, killed midway and resubmitted; and the same config run locally."""
    seconds = {}
    # The local run goes alongside the cluster run, which spends much of its time waiting on SLURM.
    local = tmp_path_factory.mktemp("local")
    local_log = open(local.parent / "local.log", "w")
    local_run = subprocess.Popen(
        snakemake_command(local, "--cores", "2"), stdout=local_log, stderr=subprocess.STDOUT, start_new_session=True
    )
    local_started = time.monotonic()
    try:
        run = run_on_slurm(cluster, tmp_path_factory.mktemp("slurm"), local, seconds)
        local_run.wait(timeout=RUN_TIMEOUT)
        seconds["local run"] = time.monotonic() - local_started
    finally:
        if local_run.poll() is None:
            os.killpg(local_run.pid, signal.SIGKILL)
            local_run.wait()
        local_log.close()
    assert local_run.returncode == 0, (local.parent / "local.log").read_text()[-5000:]
    columns = ["comment", "partition", "account", "state", "start", "end", "elapsed", "tres"]
    print(f"\nsacct, killed run:\n{run.first[columns].to_string(index=False)}")
    print(f"sacct, resubmitted run:\n{run.second[columns].to_string(index=False)}")
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    return run


def run_on_slurm(cluster, workdir: Path, local: Path, seconds: dict) -> SlurmRun:
    """Start the run, SIGKILL it midway (after the first face shard, while a job runs), cancel its jobs,
    unlock, and run it again."""
    command = snakemake_command(workdir, "--workflow-profile", str(REPO / "profiles/slurm"), *FAST_STATUS, *SITE)
    started = time.monotonic()
    first_finished = re.compile(r"Finished jobid: \d+ \(Rule: embed_faces\)")

    def midway(log: str) -> bool:
        """A face shard has finished and a job of the run is running."""
        if not first_finished.search(log):
            return False
        run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
        running = subprocess.run(
            ["squeue", "-h", "-t", "RUNNING", "--name", run_id, "-o", "%i"],
            capture_output=True,
            text=True,
            env=cluster.env,
            timeout=30,
        )
        return bool(running.stdout.split())

    code, first_log = run_until(command, workdir.parent / "slurm-first.log", cluster.env, stop_when=midway)
    assert code is None, f"the run ended (exit {code}) before the kill point:\n{first_log[-5000:]}"
    run_id = re.search(r"SLURM run ID: (\S+)", first_log).group(1)
    # What a user does after the login node died: cancel the run's jobs (they share its name).
    subprocess.run(["scancel", "--name", run_id], env=cluster.env, check=True, timeout=60)
    cluster.cancel_all()
    seconds["killed run"] = time.monotonic() - started
    before = mtimes(workdir, finished_outputs(first_log))

    started = time.monotonic()
    unlock = subprocess.run(snakemake_command(workdir, "--unlock"), capture_output=True, text=True, timeout=600)
    assert unlock.returncode == 0, unlock.stderr[-5000:]
    code, second_log = run_until(command, workdir.parent / "slurm-second.log", cluster.env)
    assert code == 0, second_log[-5000:]
    seconds["resubmitted run"] = time.monotonic() - started
    second_id = re.search(r"SLURM run ID: (\S+)", second_log).group(1)

    return SlurmRun(
        workdir, local, first_log, second_log, sacct(cluster, run_id), sacct(cluster, second_id), before, seconds
    )


def read_submission(path: Path) -> pd.DataFrame:
    with zipfile.ZipFile(path) as archive:
        (name,) = archive.namelist()
        return pd.read_csv(io.StringIO(archive.read(name).decode()))


@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_run_writes_the_local_runs_submission(slurm_run):
    on_slurm = read_submission(slurm_run.workdir / TARGET)
    local = read_submission(slurm_run.local / TARGET)
    assert list(on_slurm.columns) == ["image_location", "valence", "arousal"]
    assert on_slurm["image_location"].tolist() == local["image_location"].tolist()
    np.testing.assert_allclose(on_slurm[["valence", "arousal"]], local[["valence", "arousal"]], rtol=0, atol=1e-6)


@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_accounting_records_every_job_with_the_profiles_resources(slurm_run):
    runs = pd.concat([slurm_run.first, slurm_run.second])
    done = runs[runs.state == "COMPLETED"]
    assert set(done.comment) == expected_slurm_jobs()
    assert set(slurm_run.second.state) == {"COMPLETED"}
    assert set(runs.partition) == {slurm_cluster.PARTITION} and set(runs.account) == {slurm_cluster.ACCOUNT}
    for row in runs.itertuples():
        gpu_rule = row.comment.startswith(("rule_embed_", "rule_train_fold_"))
        assert ("gres/gpu=1" in row.tres) == gpu_rule, row
    embed = done[done.comment.str.startswith("rule_embed_")]
    assert embed.tres.str.contains("cpu=8,").all() and embed.tres.str.contains("mem=16000M").all()


@pytest.mark.slow
@pytest.mark.slurm
def test_resubmitted_slurm_run_runs_only_the_remaining_jobs(slurm_run):
    first, second = slurm_run.first, slurm_run.second
    completed = set(first.comment[first.state == "COMPLETED"])
    cancelled = set(first.comment[first.state != "COMPLETED"])
    rerun = set(second.comment)
    assert completed and cancelled, first  # killed midway: some jobs had finished, others not
    assert not completed & rerun
    assert cancelled <= rerun
    # Outputs the killed run had finished are left as they were.
    assert slurm_run.before and mtimes(slurm_run.workdir, list(slurm_run.before)) == slurm_run.before
