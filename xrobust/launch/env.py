"""Process environment under Slurm: ranks from SLURM_* variables, hostfiles, a stable run id."""

from __future__ import annotations

import os
import re
import subprocess
from typing import Mapping, MutableMapping

from ..errors import LaunchError

PREEMPTED_EXIT_CODE = 3  # the training process checkpointed on a signal: the job script requeues


def distributed_env_from_slurm(env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set RANK/LOCAL_RANK/WORLD_SIZE (and MASTER_ADDR/PORT) from Slurm when they are unset.

    Needed under plain `srun` and under `deepspeed --launcher slurm`, which start one task per
    rank without setting the torch.distributed variables. Values already set are kept. Returns
    the variables it set.
    """
    env = os.environ if env is None else env
    if "SLURM_PROCID" not in env:
        return {}
    mapping = {
        "RANK": env.get("SLURM_PROCID"),
        "LOCAL_RANK": env.get("SLURM_LOCALID"),
        "WORLD_SIZE": env.get("SLURM_NTASKS") or env.get("SLURM_NPROCS"),
    }
    if "MASTER_ADDR" not in env and env.get("SLURM_JOB_NODELIST"):
        hosts = expand_nodelist(env["SLURM_JOB_NODELIST"])
        mapping["MASTER_ADDR"] = hosts[0]
    if "MASTER_PORT" not in env and env.get("SLURM_JOB_ID"):
        mapping["MASTER_PORT"] = str(master_port(env["SLURM_JOB_ID"]))
    changed = {}
    for key, value in mapping.items():
        if value is not None and key not in env:
            env[key] = value
            changed[key] = value
    return changed


def master_port(job_id: str | int) -> int:
    """A port derived from the job id (the same formula as slurm/env.sh), in 20000-39999."""
    digits = re.sub(r"\D", "", str(job_id)) or "0"
    return 20000 + int(digits) % 20000


def stable_run_id(env: Mapping[str, str] | None = None, prefix: str = "xr") -> str | None:
    """A W&B run id that survives requeues: from the array job + task, else the job id.

    Array tasks each have their own SLURM_JOB_ID, but the id is built from SLURM_ARRAY_JOB_ID and
    SLURM_ARRAY_TASK_ID so it reads like `sacct` shows it (1234_5). None outside Slurm.
    XROBUST_RUN_ID, when set, wins.
    """
    env = os.environ if env is None else env
    if env.get("XROBUST_RUN_ID"):
        return env["XROBUST_RUN_ID"]
    array_job, array_task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    if array_job and array_task:
        return f"{prefix}-{array_job}-{array_task}"
    if env.get("SLURM_JOB_ID"):
        return f"{prefix}-{env['SLURM_JOB_ID']}"
    return None


def expand_nodelist(nodelist: str) -> list[str]:
    """Host names of a Slurm node list (`scontrol show hostnames`, or a local parser without it)."""
    try:
        res = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True,
                             text=True, timeout=30)
        if res.returncode == 0 and res.stdout.split():
            return res.stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return _parse_nodelist(nodelist)


def _parse_nodelist(nodelist: str) -> list[str]:
    hosts: list[str] = []
    # split on commas that are not inside brackets
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\][^,\[]*)*", nodelist):
        m = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", part)
        if not m:
            hosts.append(part)
            continue
        head, ranges, tail = m.groups()
        for rng in ranges.split(","):
            lo, _, hi = rng.partition("-")
            if not hi:
                hosts.extend(_parse_nodelist(f"{head}{lo}{tail}"))
                continue
            if not (lo.isdigit() and hi.isdigit()):
                raise LaunchError(f"SLURM_JOB_NODELIST {nodelist!r}: cannot read range {rng!r}")
            for i in range(int(lo), int(hi) + 1):
                hosts.extend(_parse_nodelist(f"{head}{str(i).zfill(len(lo))}{tail}"))
    return hosts


def hostfile_from_nodelist(nodelist: str | None = None, slots: int | None = None) -> str:
    """DeepSpeed hostfile text (`host slots=N` per line) for the job's nodes.

    nodelist defaults to SLURM_JOB_NODELIST; slots defaults to SLURM_NTASKS_PER_NODE, then
    SLURM_GPUS_ON_NODE, then 1.
    """
    nodelist = nodelist or os.environ.get("SLURM_JOB_NODELIST")
    if not nodelist:
        raise LaunchError("SLURM_JOB_NODELIST is not set: hostfile_from_nodelist needs a Slurm allocation "
                          "or an explicit node list")
    if slots is None:
        raw = os.environ.get("SLURM_NTASKS_PER_NODE") or os.environ.get("SLURM_GPUS_ON_NODE") or "1"
        slots = int(re.match(r"\d+", raw).group(0))
    if slots < 1:
        raise LaunchError(f"hostfile slots must be >= 1, got {slots}")
    return "".join(f"{host} slots={slots}\n" for host in expand_nodelist(nodelist))
