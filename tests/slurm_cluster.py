"""A throwaway one-node SLURM cluster on localhost, built from Debian's packages, for testing profiles/slurm.

Configs, state, logs and the accounting database (MariaDB under slurmdbd) live in one folder;
nothing under /etc is changed. Clients find the cluster through SLURM_CONF (`cluster.env`). Two
things go where SLURM looks by default: munged's socket (/run/munge) and a link /run/slurm/conf to
the config folder, which a configless slurmd would make, for the `srun` inside each job (the
plugin's job step drops SLURM_CONF). The daemons run in the foreground, started by `start()`, and
`stop()` ends them by their process ids and removes what it made outside the folder.

    python tests/slurm_cluster.py start DIR   # prints the SLURM_CONF to export; DIR must not exist
    python tests/slurm_cluster.py stop DIR

The node declares 16 CPUs, 160 GB and two GPUs (`SlurmdParameters=config_overrides`; the GPUs' device
files are /dev/null and /dev/zero), so that the profile's real requests (`--gpus=1`, 8 CPUs, 64 GB)
are granted and scheduled as on a cluster; the jobs themselves run on this machine's CPUs.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ["slurm-wlm", "munge", "slurmdbd", "mariadb-server"]
DAEMONS = ["munged", "mariadb-install-db", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct"]
CLUSTER_NAME = "vapipe"
# A partition besides the default one ("main") and an account besides root's: a run that names them
# shows in sacct that --default-resources slurm_partition=... slurm_account=... reached sbatch.
PARTITION = ACCOUNT = "vapipe"
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")
FAKE_GPU_DEVICES = ["/dev/null", "/dev/zero", "/dev/full", "/dev/urandom"]
# Where SLURM's clients look for slurm.conf when SLURM_CONF is unset and /etc/slurm has none (a
# configless slurmd links its cache here). The plugin's job step drops SLURM_CONF before its `srun`.
RUN_CONF = Path("/run/slurm/conf")
ETC_CONF = Path("/etc/slurm/slurm.conf")


def missing_programs() -> list[str]:
    """The programs this cluster needs that are not on PATH (sbin included)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin"])
    return [name for name in DAEMONS if shutil.which(name, path=path) is None]


def install() -> None:
    """Install Debian's SLURM, munge and the accounting daemon with its database (needs root and apt)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True, timeout=600)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
        check=True,
        env=env,
        capture_output=True,
        timeout=900,
    )


def munge_works() -> bool:
    """Whether a munged answers at the default socket (a credential encodes and decodes)."""
    if not MUNGE_SOCKET.exists():
        return False
    encoded = subprocess.run([_program("munge"), "-n"], capture_output=True, timeout=30)
    decoded = subprocess.run([_program("unmunge")], input=encoded.stdout, capture_output=True, timeout=30)
    return encoded.returncode == 0 and decoded.returncode == 0


def _program(name: str) -> str:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin"])
    return shutil.which(name, path=path) or name


class LocalCluster:
    """One slurmctld + one slurmd (+ slurmdbd on MariaDB, + munged) rooted at `root`."""

    def __init__(self, root: Path, cpus: int = 16, memory_mb: int = 160000, gpus: int = 2):
        self.root = Path(root)
        self.cpus, self.memory_mb, self.gpus = cpus, memory_mb, gpus
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.root / "etc/slurm.conf"
        self.processes: dict[str, subprocess.Popen] = {}
        self.linked = False
        self.made: list[Path] = []  # folders outside `root` that start() created, removed by stop()

    @property
    def env(self) -> dict[str, str]:
        """Environment for SLURM clients (sbatch, squeue, sacct, snakemake) that talk to this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    # -- configuration --------------------------------------------------------------------------

    def _write_configs(self) -> None:
        etc, munge = self.root / "etc", self.root / "munge"
        for sub in ("etc", "state", "spool", "log", "mysql"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        user = pwd.getpwnam("munge")
        for folder in (munge, MUNGE_SOCKET.parent):
            if not folder.exists():
                folder.mkdir(mode=0o755)
                os.chown(folder, user.pw_uid, user.pw_gid)
                self.made.append(folder)
        self.conf.write_text(
            f"ClusterName={CLUSTER_NAME}\n"
            f"SlurmctldHost={self.host}(127.0.0.1)\n"
            "SlurmUser=root\n"
            "AuthType=auth/munge\n"
            f"StateSaveLocation={self.root / 'state'}\n"
            f"SlurmdSpoolDir={self.root / 'spool'}\n"
            f"SlurmctldPidFile={self.root / 'slurmctld.pid'}\n"
            f"SlurmdPidFile={self.root / 'slurmd.pid'}\n"
            f"SlurmctldLogFile={self.root / 'log/slurmctld.log'}\n"
            f"SlurmdLogFile={self.root / 'log/slurmd.log'}\n"
            "ProctrackType=proctrack/linuxproc\n"
            "TaskPlugin=task/none\n"
            "SelectType=select/cons_tres\n"
            "SelectTypeParameters=CR_Core_Memory\n"
            # The node below declares more than this machine has (GPUs, CPUs, memory): take it as declared.
            "SlurmdParameters=config_overrides\n"
            # Reject at sbatch what could never run, instead of leaving it pending forever.
            "EnforcePartLimits=ALL\n"
            "GresTypes=gpu\n"
            "AccountingStorageType=accounting_storage/slurmdbd\n"
            "AccountingStorageHost=localhost\n"
            "AccountingStorageTRES=gres/gpu\n"
            "AccountingStoreFlags=job_comment\n"
            "JobAcctGatherType=jobacct_gather/linux\n"
            "MinJobAge=300\n"
            "ReturnToService=2\n"
            "SchedulerParameters=sched_interval=2\n"
            f"NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} "
            f"Gres=gpu:{self.gpus} State=UNKNOWN\n"
            "PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n"
            f"PartitionName={PARTITION} Nodes=ALL MaxTime=INFINITE State=UP\n"
        )
        # SLURM drops a GPU without a device file: character devices that every machine has stand in.
        (etc / "gres.conf").write_text(
            f"NodeName={self.host} Name=gpu File={','.join(FAKE_GPU_DEVICES[: self.gpus])}\n"
        )
        dbd = etc / "slurmdbd.conf"
        dbd.write_text(
            "AuthType=auth/munge\n"
            "DbdHost=localhost\n"
            "SlurmUser=root\n"
            f"PidFile={self.root / 'slurmdbd.pid'}\n"
            f"LogFile={self.root / 'log/slurmdbd.log'}\n"
            "StorageType=accounting_storage/mysql\n"
            "StorageHost=localhost\n"
            "StorageUser=root\n"
            "StorageLoc=slurm_acct_db\n"
        )
        dbd.chmod(0o600)

    # -- daemons --------------------------------------------------------------------------------

    def _spawn(self, name: str, command: list[str], **kwargs) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")
        self.processes[name] = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, **kwargs
        )
        log.close()

    def _wait(self, what: str, ready, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {process.returncode} while waiting for {what}; see {self.root / 'log'}"
                    )
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}; see {self.root / 'log'}")
            time.sleep(0.3)

    def _ok(self, *command: str, env=None) -> bool:
        return subprocess.run(command, capture_output=True, env=env or self.env, timeout=30).returncode == 0

    def _link_conf(self) -> None:
        if ETC_CONF.exists():
            raise RuntimeError(f"{ETC_CONF} exists: this machine has a SLURM of its own, which jobs would reach")
        if RUN_CONF.is_symlink() and not RUN_CONF.exists():
            RUN_CONF.unlink()  # left by a run that could not clean up
        if RUN_CONF.exists():
            raise RuntimeError(f"{RUN_CONF} exists: another SLURM configuration is in use on this machine")
        if not RUN_CONF.parent.exists():
            RUN_CONF.parent.mkdir(parents=True)
            self.made.append(RUN_CONF.parent)
        RUN_CONF.symlink_to(self.conf.parent)
        self.linked = True

    def start(self) -> None:
        """Write the configs and start munged, MariaDB, slurmdbd, slurmctld and slurmd; return once the node is idle."""
        self._write_configs()
        self._link_conf()
        # SLURM's clients reach munged at its default socket only; a munged already serving it is used as is.
        if not munge_works():
            munge = self.root / "munge"
            self._spawn(
                "munged",
                [
                    _program("munged"),
                    "--foreground",
                    "--force",
                    f"--pid-file={munge / 'munged.pid'}",
                    f"--log-file={munge / 'munged.log'}",
                    f"--seed-file={munge / 'munged.seed'}",
                ],
                user="munge",
                group="munge",
            )
            self._wait("munged", munge_works)

        mysql, mysql_socket = self.root / "mysql", self.root / "mysqld.sock"
        subprocess.run(
            [
                _program("mariadb-install-db"),
                "--no-defaults",
                f"--datadir={mysql}",
                "--user=root",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        self._spawn(
            "mariadbd",
            [
                _program("mariadbd"),
                "--no-defaults",
                "--user=root",
                f"--datadir={mysql}",
                f"--socket={mysql_socket}",
                "--skip-networking",
                f"--pid-file={self.root / 'mariadbd.pid'}",
            ],
        )
        self._wait("MariaDB", mysql_socket.exists)

        # slurmdbd logs in to MariaDB as root through the socket (unix_socket authentication).
        self._spawn("slurmdbd", [_program("slurmdbd"), "-D"], env={**self.env, "MYSQL_UNIX_PORT": str(mysql_socket)})
        self._wait(
            "slurmdbd",
            lambda: (
                self._ok("sacctmgr", "-i", "add", "cluster", CLUSTER_NAME)
                or CLUSTER_NAME in self._out("sacctmgr", "-n", "-P", "list", "cluster", "format=cluster")
            ),
        )
        user = pwd.getpwuid(os.getuid()).pw_name
        for command in (
            ["add", "account", ACCOUNT, f"cluster={CLUSTER_NAME}"],
            ["add", "user", user, f"account={ACCOUNT}", f"cluster={CLUSTER_NAME}"],
        ):
            subprocess.run(["sacctmgr", "-i", *command], check=True, capture_output=True, env=self.env, timeout=60)

        self._spawn("slurmctld", [_program("slurmctld"), "-D", "-c"], env=self.env)
        self._wait("slurmctld", lambda: self._ok("scontrol", "ping"))
        self._spawn("slurmd", [_program("slurmd"), "-D"], env=self.env)
        self._wait("the node to be idle", lambda: self._out("sinfo", "-h", "-o", "%t").strip() == "idle")

    def _out(self, *command: str) -> str:
        result = subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=30)
        return result.stdout if result.returncode == 0 else ""

    def cancel_all(self, timeout: float = 60) -> None:
        """Cancel every job and wait until the queue is empty."""
        if "slurmctld" not in self.processes:
            return
        subprocess.run(
            ["scancel", "--full", "--user", pwd.getpwuid(os.getuid()).pw_name],
            capture_output=True,
            env=self.env,
            timeout=30,
        )
        deadline = time.monotonic() + timeout
        while self._out("squeue", "-h", "-o", "%i").strip() and time.monotonic() < deadline:
            time.sleep(0.5)

    def stop(self) -> None:
        """Cancel the jobs, then stop the daemons this object started (newest first), by their process ids."""
        try:
            self.cancel_all()
        except Exception:  # noqa: BLE001 - the daemons are stopped below whatever happened here
            pass
        for name in reversed(list(self.processes)):
            process = self.processes.pop(name)
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for pid_file in self.root.glob("**/*.pid"):
            pid_file.unlink()
        if self.linked and RUN_CONF.is_symlink():
            RUN_CONF.unlink()
            self.linked = False
        for folder in self.made:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        self.made = []

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print(__doc__)
        return 2
    action, root = argv[0], Path(argv[1])
    if action == "start":
        if missing_programs():
            install()
        root.mkdir(parents=True)
        root.chmod(0o755)  # munged runs as the munge user and must reach its socket folder
        cluster = LocalCluster(root)
        try:
            cluster.start()
        except BaseException:
            cluster.stop()
            raise
        # The daemons outlive this command: `stop` finds them by the ids recorded here.
        (root / "daemons.json").write_text(
            json.dumps(
                {"pids": {n: p.pid for n, p in cluster.processes.items()}, "made": [str(f) for f in cluster.made]}
            )
        )
        print(f"export SLURM_CONF={cluster.conf}")
        return 0
    started = json.loads((root / "daemons.json").read_text())
    pids = started["pids"]
    subprocess.run(
        ["scancel", "--full", "--user", pwd.getpwuid(os.getuid()).pw_name],
        capture_output=True,
        env={**os.environ, "SLURM_CONF": str(root / "etc/slurm.conf")},
    )
    for pid in reversed(list(pids.values())):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
    for pid_file in root.glob("**/*.pid"):
        pid_file.unlink()
    if RUN_CONF.is_symlink() and Path(os.readlink(RUN_CONF)) == root / "etc":
        RUN_CONF.unlink()
    for folder in map(Path, started["made"]):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
