"""A real single-node Slurm cluster for tests (munged + slurmctld + slurmd on this machine).

Needs root. Installs the Debian packages when missing, writes slurm.conf into a scratch folder,
starts the daemons, waits until the node is idle, and stops them by their pid files.
`AuthInfo=cred_expire=...` is kept short because it is also the delay before a requeued job may
start again (120 s by default).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ["slurm-wlm", "slurmctld", "slurmd", "slurm-client", "munge"]
PARTITION = "debug"
CRED_EXPIRE_S = 5


class ClusterUnavailable(Exception):
    """The cluster cannot run here (the message says why); tests skip with it."""


def _run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def install_packages() -> float:
    """apt-get install the Slurm packages when a binary is missing; returns seconds spent."""
    needed = ["slurmctld", "slurmd", "sbatch", "munged"]
    if all(shutil.which(b) or os.path.exists(f"/usr/sbin/{b}") for b in needed):
        return 0.0
    if os.geteuid() != 0:
        raise ClusterUnavailable("Slurm is not installed and installing it needs root")
    if not shutil.which("apt-get"):
        raise ClusterUnavailable("Slurm is not installed and apt-get is not available")
    t0 = time.monotonic()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        res = _run(cmd, env=env, timeout=600)
        if res.returncode != 0:
            raise ClusterUnavailable(f"{' '.join(cmd)} failed: {res.stderr.strip()[-2000:]}")
    return time.monotonic() - t0


def _node_resources() -> tuple[int, int]:
    res = _run(["slurmd", "-C"])
    fields = dict(tok.split("=", 1) for tok in res.stdout.split() if "=" in tok)
    try:
        return int(fields["CPUs"]), int(fields["RealMemory"])
    except KeyError as exc:
        raise ClusterUnavailable(f"`slurmd -C` gave no {exc}: {res.stdout!r} {res.stderr!r}")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class SlurmCluster:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self.apt_seconds = 0.0
        self.start_seconds = 0.0
        self._pidfiles: list[Path] = []
        self.cpus = 0

    # -- environment for clients ---------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf)
        for key in list(env):  # a test run inside a Slurm job must not leak its job into ours
            if key.startswith("SLURM_") and key != "SLURM_CONF":
                del env[key]
        return env

    def run(self, cmd, timeout=120, check=True, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("env", self.env)
        res = _run(cmd, timeout=timeout, **kw)
        if check and res.returncode != 0:
            raise RuntimeError(f"{cmd} -> {res.returncode}\n{res.stdout}\n{res.stderr}")
        return res

    # -- lifecycle -----------------------------------------------------------------------------
    def write_conf(self) -> None:
        cpus, mem = _node_resources()
        self.cpus = cpus
        self.ports = _free_ports(2)  # several test clusters (parallel checkouts) may run at once
        for sub in ("state", "spool", "log", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        r = self.root
        self.conf.write_text(
            f"""ClusterName=xrtest
SlurmctldHost={self.node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire={CRED_EXPIRE_S}
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
SlurmctldPort={self.ports[0]}
SlurmdPort={self.ports[1]}
SlurmctldTimeout=10
SlurmdTimeout=10
MessageTimeout=10
InactiveLimit=0
MinJobAge=300
KillWait=5
WaitTime=0
SchedulerParameters=sched_interval=2
TCPTimeout=5
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem} State=UNKNOWN
PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
"""
        )

    def _start_munge(self) -> None:
        if _run(["pgrep", "-x", "munged"]).returncode == 0:
            return  # already running on this machine (a system service or an earlier session)
        munge = pwd.getpwnam("munge")
        run_dir = Path("/run/munge")
        run_dir.mkdir(parents=True, exist_ok=True)
        os.chown(run_dir, munge.pw_uid, munge.pw_gid)
        os.chmod(run_dir, 0o755)
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            res = _run(["mungekey", "--create"])
            if res.returncode != 0:
                raise ClusterUnavailable(f"mungekey failed: {res.stderr}")
            os.chown(key, munge.pw_uid, munge.pw_gid)
            os.chmod(key, 0o600)
        res = _run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"])
        if res.returncode != 0:
            raise ClusterUnavailable(f"munged failed to start: {res.stderr.strip()}")
        self._pidfiles.append(run_dir / "munged.pid")

    def start(self, timeout: float = 60.0) -> "SlurmCluster":
        t0 = time.monotonic()
        self.apt_seconds = install_packages()
        if os.geteuid() != 0:
            raise ClusterUnavailable("starting slurmctld/slurmd/munged needs root")
        self.write_conf()
        self._start_munge()
        env = self.env
        for daemon, pid in (("slurmctld", "slurmctld.pid"), ("slurmd", "slurmd.pid")):
            args = [f"/usr/sbin/{daemon}"] + (["-i"] if daemon == "slurmctld" else [])
            res = _run(args, env=env)
            if res.returncode != 0:
                self.stop()
                raise ClusterUnavailable(f"{daemon} failed to start: {res.stderr.strip()}\n{self.logs()}")
            self._pidfiles.append(self.root / "run" / pid)
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            res = _run(["sinfo", "-h", "-N", "-o", "%t"], env=env)
            state = res.stdout.strip()
            if state == "idle":
                self.start_seconds = time.monotonic() - t0
                return self
            time.sleep(0.5)
        self.stop()
        raise ClusterUnavailable(f"node never became idle (state {state!r})\n{self.logs()}")

    def logs(self) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log"):
            p = self.root / "log" / name
            if p.exists():
                out.append(f"--- {name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-30:]))
        return "\n".join(out)

    def stop(self) -> None:
        """Stop the daemons this object started, newest first, by their pid files."""
        for pidfile in reversed(self._pidfiles):
            try:
                pid = int(pidfile.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._pidfiles.clear()

    # -- helpers for tests ---------------------------------------------------------------------
    def sbatch(self, script: str | os.PathLike, *args: str, timeout=180, check=False):
        return self.run(["sbatch", *args, str(script)], timeout=timeout, check=check, cwd=str(self.root))

    def job_field(self, job_id: str, field: str) -> str:
        res = self.run(["scontrol", "show", "job", "-o", str(job_id)], check=False)
        for tok in res.stdout.split():
            if tok.startswith(field + "="):
                return tok.split("=", 1)[1]
        return ""

    def wait_job_gone(self, job_id: str, timeout: float = 120) -> str:
        """Wait until the job leaves the queue; returns its final state."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.job_field(job_id, "JobState")
            if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
                return state
            time.sleep(0.5)
        raise TimeoutError(f"job {job_id} still {state} after {timeout} s\n{self.logs()}")
