"""Entry of multi-node template tests: records where and how this rank runs, then runs `xrobust.cli`.

Writes $RANK_PROBE_DIR/<job>-<restart>-<rank>.json (host name, CPUs it may run on, the collectives'
network interface, TMPDIR, its command line) and the file `probe-<job>-<restart>-<rank>` into $TMPDIR,
so a test can tell that TMPDIR was node-local; then runs the real command line unchanged.
"""

import json
import os
import runpy
import socket
import sys

rank = os.environ.get("RANK") or os.environ.get("SLURM_PROCID", "?")
job = os.environ.get("SLURM_JOB_ID", "?")
name = f"{job}-{os.environ.get('SLURM_RESTART_COUNT', '0')}-{rank}"
tmpdir = os.environ.get("TMPDIR", "")
record = {
    "rank": rank,
    "host": socket.gethostname(),
    "cpus": len(os.sched_getaffinity(0)),
    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    "gloo_socket_ifname": os.environ.get("GLOO_SOCKET_IFNAME"),
    "nccl_socket_ifname": os.environ.get("NCCL_SOCKET_IFNAME"),
    "tmpdir": tmpdir,
    "argv": sys.orig_argv,  # the interpreter's command line: the job folder's entry file
}
if tmpdir:
    with open(os.path.join(tmpdir, f"probe-{name}"), "w") as f:
        f.write(record["host"])
out = os.path.join(os.environ["RANK_PROBE_DIR"], f"{name}.json")
with open(out, "w") as f:
    json.dump(record, f)
sys.argv[0] = "xrobust"
runpy.run_module("xrobust.cli", run_name="__main__", alter_sys=True)
