"""Real Slurm clusters for tests: a private munged, slurmctld and one slurmd per node on this machine.

Needs root. Installs the Debian packages when missing, writes slurm.conf into a scratch folder,
starts the daemons, waits until every node is idle, and stops them by their pid files.

- `SlurmCluster(root)`: one node named after this machine, at 127.0.0.1.
- `SlurmCluster(root, nodes=N)`: nodes n1..nN at 127.0.1.1..N. Each slurmd runs in its own UTS and
  mount namespace (`unshare --uts --mount`): host name nX, /etc/hosts bind-mounted from a scratch
  file that names every node, and a node-local TMPDIR (`cluster.tmpdir`, the same path on every
  node, bind-mounted from a folder of its own per node). Jobs see several hosts that share nothing
  but the file systems outside TMPDIR, as on a real cluster. Nothing outside the namespaces changes.

Each cluster has its own munged (own key, socket, pid file; `AuthInfo=socket=`), its own free ports
and a random first job id, so clusters of concurrent test sessions on one machine never share a
daemon, a port or a job id (the templates derive MASTER_PORT from the job id).
`AuthInfo=cred_expire=...` is kept short because it is also the delay before a requeued job may
start again (120 s by default).
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PACKAGES = ["slurm-wlm", "slurmctld", "slurmd", "slurm-client", "munge"]
PARTITION = "debug"
CRED_EXPIRE_S = 5
FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")


class ClusterUnavailable(Exception):
    """The cluster cannot run here (the message says why); tests skip with it."""


def _run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def install_packages() -> float:
    """apt-get install the Slurm packages when a binary is missing; returns seconds spent."""
    needed = ["slurmctld", "slurmd", "sbatch", "munged", "mungekey"]
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


def _stop_pids(pidfiles: list[Path], grace_s: float = 10.0) -> None:
    """SIGTERM the processes named in the pid files at once; SIGKILL those still there after grace_s."""
    pids = []
    for pidfile in pidfiles:
        try:
            pids.append(int(pidfile.read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            continue
    for pid in list(pids):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pids.remove(pid)
    deadline = time.monotonic() + grace_s
    while pids and time.monotonic() < deadline:
        time.sleep(0.1)
        for pid in list(pids):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                pids.remove(pid)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class PrivateMunge:
    """A munged of one cluster: its own key, socket, pid, log and seed files.

    munged requires every folder above its socket to be searchable by all users, which pytest's
    0700 temporary folders are not: the socket lives in a folder of its own under /tmp. The daemon
    runs under the name `xrtest-munged` (a symlink) so that nothing looking for the system's
    `munged` by name takes it for that one.
    """

    def __init__(self, root: Path):
        self.dir = root / "munge"
        self.socket_dir: Path | None = None
        self.pidfile = self.dir / "munged.pid"

    @property
    def socket(self) -> Path:
        assert self.socket_dir is not None, "munged not started"
        return self.socket_dir / "socket"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        key = self.dir / "munge.key"
        if not key.exists():
            res = _run(["mungekey", "--create", f"--keyfile={key}"])
            if res.returncode != 0:
                raise ClusterUnavailable(f"mungekey failed: {res.stderr.strip()}")
        self.socket_dir = Path(tempfile.mkdtemp(prefix="xrtest-munge-", dir="/tmp"))
        os.chmod(self.socket_dir, 0o755)
        exe = self.dir / "xrtest-munged"
        if not exe.exists():
            exe.symlink_to(shutil.which("munged") or "/usr/sbin/munged")
        res = _run([str(exe), f"--socket={self.socket}", f"--key-file={key}", f"--pid-file={self.pidfile}",
                    f"--log-file={self.dir / 'munged.log'}", f"--seed-file={self.dir / 'munged.seed'}"])
        if res.returncode != 0:
            raise ClusterUnavailable(f"munged failed to start: {res.stderr.strip()}")

    def stop(self) -> None:
        _stop_pids([self.pidfile])
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)


class SlurmCluster:
    def __init__(self, root: str | os.PathLike, nodes: int = 0):
        self.root = Path(root)
        self.multinode = nodes > 0
        self.nodes = [f"n{i}" for i in range(1, nodes + 1)] or [socket.gethostname().split(".")[0]]
        self.node = self.nodes[0]
        self.conf = self.root / "slurm.conf"
        self.tmpdir = self.root / "tmp" if self.multinode else None  # node-local on every node
        self.munge = PrivateMunge(self.root)
        self.apt_seconds = 0.0
        self.start_seconds = 0.0
        self._pidfiles: list[Path] = []
        self._running = False
        self.cpus = 0

    def node_addr(self, node: str) -> str:
        return f"127.0.1.{self.nodes.index(node) + 1}" if self.multinode else "127.0.0.1"

    def node_tmp(self, node: str) -> Path:
        """Where the TMPDIR that jobs see on `node` lies on this machine."""
        return self.root / "nodes" / node / "tmp"

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
        # several test clusters (parallel sessions) may run at once: free ports, and a first job id
        # of its own, since the templates derive MASTER_PORT from it (20000 + id % 20000: kept below
        # the ephemeral ports, 32768 and up)
        self.ports = _free_ports(1 + len(self.nodes))
        first_job_id = random.SystemRandom().randrange(1, 12_000)
        for sub in ("state", "spool", "log", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for node in self.nodes:  # job scripts are executed from there
            spool = self.root / "spool" / (f"slurmd-{node}" if self.multinode else "slurmd")
            spool.mkdir(exist_ok=True)
            spool.chmod(0o755)
        r = self.root
        if self.multinode:
            node_lines = "".join(f"NodeName={n} NodeAddr={self.node_addr(n)} Port={p} CPUs={cpus} RealMemory={mem} "
                                 "State=UNKNOWN\n" for n, p in zip(self.nodes, self.ports[1:]))
            per_node = "-%n"
            # ranks bound to their CPUs, as on most clusters: a step that lacks --cpus-per-task shows
            task_plugin = "task/affinity"
        else:
            node_lines = f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem} State=UNKNOWN\n"
            per_node = ""
            task_plugin = "task/none"
        self.conf.write_text(
            f"""ClusterName=xrtest
SlurmctldHost={socket.gethostname().split(".")[0]}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge.socket},cred_expire={CRED_EXPIRE_S}
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin={task_plugin}
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
FirstJobId={first_job_id}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool/slurmd{per_node}
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd{per_node}.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd{per_node}.log
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
{node_lines}PartitionName={PARTITION} Nodes={','.join(self.nodes)} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
"""
        )

    def _write_hosts(self) -> Path:
        """/etc/hosts of the nodes: this machine's entries, then every node's name and address."""
        hosts = self.root / "hosts"
        try:
            own = Path("/etc/hosts").read_text()
        except OSError:
            own = "127.0.0.1 localhost\n"
        own = "\n".join(line for line in own.splitlines() if not any(n in line.split()[1:] for n in self.nodes))
        hosts.write_text(own.rstrip("\n") + "\n" + "".join(f"{self.node_addr(n)} {n}\n" for n in self.nodes))
        return hosts

    def _slurmd_command(self, node: str, hosts: Path | None) -> list[str]:
        if not self.multinode:
            return ["/usr/sbin/slurmd"]
        local_tmp = self.node_tmp(node)
        local_tmp.mkdir(parents=True, exist_ok=True)
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        q = shlex.quote
        setup = (f"hostname {q(node)} && mount --bind {q(str(hosts))} /etc/hosts && "
                 f"mount --bind {q(str(local_tmp))} {q(str(self.tmpdir))} && exec /usr/sbin/slurmd -N {q(node)}")
        return ["unshare", "--uts", "--mount", "--propagation", "private", "sh", "-c", setup]

    def check_namespaces(self) -> None:
        """ClusterUnavailable when this machine cannot give each node its own host name and mounts."""
        if not shutil.which("unshare"):
            raise ClusterUnavailable("the multi-node cluster needs `unshare` (util-linux)")
        probe = self.root / "ns-probe"
        probe.mkdir(parents=True, exist_ok=True)
        res = _run(["unshare", "--uts", "--mount", "--propagation", "private", "sh", "-c",
                    f"hostname n-probe && mount --bind {shlex.quote(str(probe))} {shlex.quote(str(probe))}"],
                   timeout=30)
        if res.returncode != 0:
            raise ClusterUnavailable("this machine cannot create UTS and mount namespaces with bind mounts "
                                     f"(`unshare --uts --mount` as root failed: {res.stderr.strip()})")

    def start(self, timeout: float = 60.0) -> "SlurmCluster":
        t0 = time.monotonic()
        self.apt_seconds = install_packages()
        if os.geteuid() != 0:
            raise ClusterUnavailable("starting slurmctld/slurmd/munged needs root")
        if self.multinode:
            self.check_namespaces()
        try:
            self.munge.start()
            self.write_conf()
            hosts = self._write_hosts() if self.multinode else None
            env = self.env
            self._start_daemon(["/usr/sbin/slurmctld", "-i"], self.root / "run" / "slurmctld.pid", env)
            for node in self.nodes:
                pid = self.root / "run" / (f"slurmd-{node}.pid" if self.multinode else "slurmd.pid")
                self._start_daemon(self._slurmd_command(node, hosts), pid, env)
            self._wait_idle(timeout)
            self._running = True
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def _start_daemon(self, cmd: list[str], pidfile: Path, env: dict) -> None:
        res = _run(cmd, env=env, timeout=60)
        self._pidfiles.append(pidfile)
        if res.returncode != 0:
            raise ClusterUnavailable(f"{' '.join(cmd)} failed to start: {res.stderr.strip()}\n{self.logs()}")

    def _wait_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        states = ""
        while time.monotonic() < deadline:
            states = _run(["sinfo", "-h", "-N", "-o", "%N %t"], env=self.env).stdout.strip()
            if sorted(states.splitlines()) == sorted(f"{n} idle" for n in self.nodes):
                return
            time.sleep(0.5)
        raise ClusterUnavailable(f"nodes never all became idle ({states!r})\n{self.logs()}")

    def logs(self, lines: int = 30) -> str:
        out = []
        for p in sorted((self.root / "log").glob("*.log")) + [self.munge.dir / "munged.log"]:
            if p.exists():
                out.append(f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)

    def stop(self) -> None:
        """Cancel what is left of the jobs, then stop the daemons this object started by their pid
        files: the slurmds, slurmctld, munged."""
        if self._running:
            self._running = False
            self.run(["scancel", "--full", "--partition", PARTITION], check=False, timeout=30)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                res = self.run(["squeue", "-h", "-t", "RUNNING,COMPLETING", "-o", "%i"], check=False, timeout=30)
                if res.returncode != 0 or not res.stdout.strip():
                    break
                time.sleep(0.5)
        slurmctld, slurmds = self._pidfiles[:1], self._pidfiles[1:]
        _stop_pids(slurmds)
        _stop_pids(slurmctld)
        self._pidfiles.clear()
        self.munge.stop()

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
            if state in FINAL_STATES:
                return state
            time.sleep(0.5)
        raise TimeoutError(f"job {job_id} still {state} after {timeout} s\n{self.logs()}")
