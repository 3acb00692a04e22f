"""Where every unit of a study stands, from its run directory first, then its Slurm job or local record.

States: done (all phases complete, results written), running, pending (queued or waiting on its
dependencies), blocked (its dependencies failed: Slurm says DependencyNeverSatisfied, or the local
executor skipped it), failed (ended without completing; with the last error line of its log), and
not submitted.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .execute import latest_jobs, local_record_path, log_path, unit_done
from .plan import Plan

LIVE = ("running", "pending")


@dataclass
class UnitStatus:
    key: str
    level: int
    state: str
    job: str = ""  # <array job>_<index>, or "local"
    detail: str = ""  # Slurm state/reason, or the failing run's last error line
    log: str = ""


_ERROR_LINE = re.compile(r"^(error: |\w*(Error|Exception)\b)")


def last_error(path: str | Path) -> str:
    """The last line of a log that says what went wrong: the CLI's `error: ...`, else a traceback's last
    line, else the last line."""
    try:
        lines = [line.strip() for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    for line in reversed(lines):
        if _ERROR_LINE.match(line):
            return line[:300]
    return lines[-1][:300] if lines else ""


def _run(cmd: list[str], env) -> str | None:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout if res.returncode == 0 else None


def slurm_states(jobs: list[str], env: dict | None = None) -> dict[str, tuple[str, str]]:
    """"<job>_<index>" -> (Slurm state, reason or exit code) for the array tasks Slurm still knows:
    squeue for queued ones, then sacct (with accounting) or scontrol (recently ended, without)."""
    out: dict[str, tuple[str, str]] = {}
    if not jobs:
        return out
    ids = ",".join(sorted(set(jobs)))
    text = _run(["squeue", "-h", "-r", "-j", ids, "-o", "%i %T %r"], env) or ""
    for line in text.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2:
            out[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    text = _run(["sacct", "-n", "-P", "-X", "-j", ids, "-o", "JobID,State,ExitCode"], env)
    for line in (text or "").splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[0] not in out:
            out[parts[0]] = (parts[1].split()[0], f"exit {parts[2]}")
    for job in set(jobs):
        text = _run(["scontrol", "show", "job", "-o", job], env) or ""
        for line in text.splitlines():
            m = {k: v for k, v in re.findall(r"(\w+)=(\S*)", line)}
            if "ArrayJobId" in m and "ArrayTaskId" in m and m["ArrayTaskId"].isdigit():
                key = f"{m['ArrayJobId']}_{m['ArrayTaskId']}"
                out.setdefault(key, (m.get("JobState", "?"), m.get("Reason") if m.get("JobState") == "PENDING"
                                     else f"exit {m.get('ExitCode', '?')}"))
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def study_status(plan: Plan, env: dict | None = None) -> list[UnitStatus]:
    jobs = latest_jobs(plan)
    slurm = slurm_states([j["job"] for j in jobs.values()], env) if jobs else {}
    rows = []
    for unit in plan.units.values():
        row = UnitStatus(unit.key, unit.level, "not submitted")
        local = local_record_path(plan, unit)
        record = json.loads(local.read_text()) if local.is_file() else None
        job = jobs.get(unit.key)
        if job and (not record or record.get("started", 0) < _submitted(plan, job)):
            row.job, row.log = job["array"], job["output"]
            state, reason = slurm.get(job["array"], ("", ""))
            row.detail = f"{state} {reason}".strip()
            if state in ("RUNNING", "COMPLETING", "CONFIGURING"):
                row.state = "running"
            elif state in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "SUSPENDED"):
                row.state = "blocked" if "DependencyNeverSatisfied" in reason else "pending"
            else:
                row.state = "failed"
        elif record:
            row.job, row.log = "local", record.get("log", str(log_path(plan, unit)))
            if record["state"] == "running":
                row.state = "running" if _pid_alive(record["pid"]) else "failed"
                row.detail = "" if row.state == "running" else "interrupted (its process is gone)"
            elif record["state"] == "stopped":
                row.state, row.detail = "failed", "interrupted (stopped by a signal; `submit` continues it)"
            else:
                row.state = "failed"
                row.detail = f"exit {record.get('returncode')}"
        if unit_done(unit):
            row.state = "done"
        elif row.state == "failed" and row.log and not row.detail.startswith("interrupted"):
            row.detail = last_error(row.log) or row.detail
        rows.append(row)
    states = {r.key: r for r in rows}
    for row in rows:  # in level order: a dependency's state is final when its dependents are looked at
        bad = [d for d in plan.units[row.key].deps if states[d].state in ("failed", "blocked")]
        if row.state == "not submitted" and bad:
            row.state, row.detail = "blocked", f"needs {', '.join(bad)}"
    return rows


def _submitted(plan: Plan, job: dict) -> float:
    """When the unit's latest Slurm submission was made (the jobs.json entry's time)."""
    import time

    for submission in reversed(json.loads((plan.study.root / "jobs.json").read_text())["submissions"]):
        if any(a["job"] == job["job"] for a in submission["arrays"]):
            return time.mktime(time.strptime(submission["time"], "%Y-%m-%dT%H:%M:%S"))
    return 0.0


def status_table(rows: list[UnitStatus]) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    lines = ["| unit | level | state | job | detail |", "|---|---:|---|---|---|"]
    lines += [f"| {r.key} | {r.level} | {r.state} | {r.job} | {r.detail.replace('|', '/')} |" for r in rows]
    lines.append("")
    lines.append(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return "\n".join(lines) + "\n"
