"""Run a plan's units: as Slurm job arrays (one per level, each `afterok` on the levels it needs) or one
after another on this machine. Either way a unit is the ordinary CLI on its config (`xrobust pipeline
--resume --fresh-if-nothing-to-resume`, or `xrobust study encoder` for the pretrained encoder): a new
unit starts, a finished phase is never trained again, an interrupted one continues from its checkpoint.

Files under the study directory: plan.json (the units), configs/, jobs/ (sbatch scripts and one shell
script per unit), jobs.json (every submission: array job ids and their units), logs/, local/ (the
local executor's record per unit).
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..errors import LaunchError, XRobustError
from ..io import atomic_write_json, atomic_write_text
from .plan import Plan, Unit, config_path, write_configs

JOBS_FILE = "jobs.json"


# -- what a unit runs and whether it is done ---------------------------------------------------------------

def study_id(plan: Plan) -> str:
    """A random id made when the study directory is first used: W&B run ids of its units include it,
    so a study deleted and started again does not resume the old W&B runs."""
    path = plan.study.root / "study.json"
    if path.is_file():
        return json.loads(path.read_text())["id"]
    value = secrets.token_hex(3)
    atomic_write_json(path, {"name": plan.study.name, "id": value})
    return value


def run_id(plan: Plan, unit: Unit) -> str:
    return f"{plan.study.name}-{study_id(plan)}-{unit.file_name}"


def unit_command(plan: Plan, unit: Unit) -> list[str]:
    """xrobust CLI arguments of the unit, the same on every attempt: the pipeline resumes what an
    earlier attempt left (its checkpoints; finished phases are passed over) and starts what it did not."""
    config = str(config_path(plan, unit))
    if unit.kind == "pretrained":
        return ["study", "encoder", "--config", config]
    return (["pipeline", "--config", config, "--resume", "--fresh-if-nothing-to-resume"]
            + ([] if unit.evaluates else ["--no-eval"]))


def phase_dirs(unit: Unit) -> list[Path]:
    """The run folders of the unit's training phases (the pipeline's layout: one per head when a
    phase is not multi-task)."""
    from ..config import config_from_dict
    from ..pipeline import phase_runs

    if unit.kind == "pretrained":
        return []
    return [run_dir for _, _, run_dir in phase_runs(config_from_dict(dict(unit.config), unit.key), unit.run_dir)]


def results_file(unit: Unit) -> Path:
    from ..evaluation.results import RESULTS_FILE, results_dir

    return results_dir(unit.run_dir, unit.config["evaluation"]["split"]) / RESULTS_FILE


def unit_done(unit: Unit) -> bool:
    """Every phase run has its completion record and, when the unit evaluates, results.json was written
    after the last of them."""
    from ..training.rundir import COMPLETE

    marks = [d / COMPLETE for d in phase_dirs(unit)]
    if not all(m.is_file() for m in marks):
        return False
    if not unit.evaluates:
        return True
    results = results_file(unit)
    return results.is_file() and all(results.stat().st_mtime >= m.stat().st_mtime for m in marks)


def unit_env(plan: Plan, unit: Unit) -> dict[str, str]:
    """Variables a unit's processes get: the study axes for W&B, and a W&B run id that stays the same
    across requeues and resubmissions."""
    return {"XROBUST_STUDY_AXES": json.dumps(unit.axes, sort_keys=True), "XROBUST_RUN_ID": run_id(plan, unit)}


def prepare(plan: Plan) -> None:
    """Write plan.json and every unit's config (the same plan gives the same files)."""
    write_configs(plan)
    atomic_write_json(plan.study.root / "plan.json", plan_record(plan))


def plan_record(plan: Plan) -> dict:
    return {
        "study": plan.study.name, "source": str(plan.study.source), "id": study_id(plan),
        "baseline": list(plan.study.baseline), "seeds": plan.study.seeds, "targets": plan.study.targets,
        "units": {k: {"kind": u.kind, "level": u.level, "deps": u.deps, "axes": u.axes, "run_dir": str(u.run_dir),
                      "config": str(config_path(plan, u))} for k, u in plan.units.items()},
        "aliases": plan.aliases,
        "runs": [{"intermediate": r.intermediate, "method": r.method, "seed": r.seed, "encoder": r.encoder,
                  "cell": r.cell} for r in plan.runs.values()],
    }


# -- local executor ---------------------------------------------------------------------------------------

def local_record_path(plan: Plan, unit: Unit) -> Path:
    return plan.study.root / "local" / f"{unit.file_name}.json"


def log_path(plan: Plan, unit: Unit) -> Path:
    return plan.study.root / "logs" / f"{unit.file_name}.log"


def launch_command(ranks: int, args: list[str]) -> list[str]:
    if ranks == 1:
        return [sys.executable, "-m", "xrobust.cli", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
            "-m", "xrobust.cli", *args]


def _die_with_parent() -> None:
    """In the child: SIGTERM when the executor dies (even by SIGKILL), so no run trains on unseen."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _ninja_version(env: dict) -> str | None:
    import shutil

    ninja = shutil.which("ninja", path=env.get("PATH"))
    if ninja is None:
        return None
    try:
        return subprocess.run([ninja, "--version"], capture_output=True, text=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def local_record(plan: Plan, unit: Unit) -> dict | None:
    path = local_record_path(plan, unit)
    return json.loads(path.read_text()) if path.is_file() else None


class LocalExecutor:
    """The units on this machine, in level order, each with `ranks` processes, up to `jobs` units at a
    time (a unit starts once its dependencies are done).

    A unit that was interrupted (stopped by a signal, or its executor killed) continues; one that failed
    (its run exited with an error) runs again only with `retry_failed`, as on Slurm."""

    def __init__(self, plan: Plan, ranks: int = 1, echo=print, retry_failed: bool = False, jobs: int = 1):
        self.plan, self.ranks, self.echo, self.retry_failed = plan, ranks, echo, retry_failed
        self.jobs = max(1, jobs)
        self._children: dict[str, subprocess.Popen] = {}
        self._stop: int | None = None

    def _env(self, unit: Unit) -> dict:
        env = dict(os.environ)
        if unit.config.get("deepspeed") == "cpu":
            env.setdefault("DS_ACCELERATOR", "cpu")
        if "TORCH_EXTENSIONS_DIR" not in env and (ninja := _ninja_version(env)):
            # as slurm/env.sh: one build cache per ninja version, or every start rebuilds DeepSpeed's ops
            env["TORCH_EXTENSIONS_DIR"] = str(Path(env.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                                              / "torch_extensions" / f"ninja-{ninja}")
        env.update(unit_env(self.plan, unit))
        return env

    def _on_signal(self, signum, _frame) -> None:
        self._stop = signum
        for child in self._children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)  # the run checkpoints at its next step and exits

    def run(self) -> dict[str, str]:
        """Run every unit not yet done; returns unit -> done | failed | blocked | stopped."""
        root = self.plan.study.root
        root.mkdir(parents=True, exist_ok=True)
        lock = open(root / "local.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise XRobustError(f"{root}: another `xrobust study submit --executor local` is running this study "
                               f"(lock {root / 'local.lock'})") from None
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            return self._run_all()
        finally:
            for child in self._children.values():  # only after an exception: every child is waited for
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
                    child.wait()
            for s, h in handlers.items():
                signal.signal(s, h)
            lock.close()

    def _settle(self, unit: Unit, tag: str, states: dict) -> bool:
        """Decide a unit that does not need to run (or cannot yet); False: it should run now."""
        if self._stop is not None:
            states[unit.key] = "stopped"
        elif unit_done(unit):
            states[unit.key] = "done"
            self.echo(f"{tag}: done already")
        elif any(states.get(d) in ("failed", "blocked", "stopped") for d in unit.deps):
            states[unit.key] = "blocked"
            bad = [d for d in unit.deps if states.get(d) != "done"]
            self.echo(f"{tag}: blocked (needs {', '.join(bad)})")
        elif (record := local_record(self.plan, unit)) and record["state"] == "failed" and not self.retry_failed:
            states[unit.key] = "failed"
            self.echo(f"{tag}: failed before (exit {record.get('returncode')}; log {record.get('log')}); "
                      "--retry-failed runs it again")
        else:
            return False
        return True

    def _run_all(self) -> dict[str, str]:
        states: dict[str, str] = {}
        units = list(self.plan.units.values())
        tags = {u.key: f"[{n}/{len(units)}] {u.key}" for n, u in enumerate(units, 1)}
        waiting = list(units)
        running: dict[str, tuple] = {}  # unit -> (record, log file) of its process in self._children
        while waiting or running:
            for unit in list(waiting):
                ready = all(states.get(d) is not None for d in unit.deps)
                if not ready:
                    continue
                if self._settle(unit, tags[unit.key], states):
                    waiting.remove(unit)
                elif len(running) < self.jobs:
                    waiting.remove(unit)
                    running[unit.key] = self._start(unit, tags[unit.key])
            if not running:
                if waiting and not any(all(states.get(d) is not None for d in u.deps) for u in waiting):
                    raise XRobustError(f"study {self.plan.study.name}: units wait on units that never run: "
                                       f"{', '.join(u.key for u in waiting[:4])}")
                continue
            time.sleep(0.2)
            for key in [k for k, child in self._children.items() if child.poll() is not None]:
                states[key] = self._finish(self.plan.units[key], tags[key], *running.pop(key))
        return states

    def _start(self, unit: Unit, tag: str) -> tuple:
        args = unit_command(self.plan, unit)
        log = log_path(self.plan, unit)
        log.parent.mkdir(parents=True, exist_ok=True)
        self.echo(f"{tag}: running xrobust {shlex.join(args)} (log {log})")
        out = open(log, "a", encoding="utf-8")
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} xrobust {shlex.join(args)}\n")
        out.flush()
        child = subprocess.Popen(launch_command(self.ranks, args), env=self._env(unit), stdout=out,
                                 stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        self._children[unit.key] = child
        record = {"state": "running", "pid": child.pid, "host": os.uname().nodename, "started": time.time(),
                  "log": str(log), "command": args}
        atomic_write_json(local_record_path(self.plan, unit), record)
        return record, out

    def _finish(self, unit: Unit, tag: str, record: dict, out) -> str:
        from ..launch.env import PREEMPTED_EXIT_CODE

        code = self._children.pop(unit.key).wait()
        out.close()
        done = code == 0 and unit_done(unit)
        stopped = self._stop is not None or code == PREEMPTED_EXIT_CODE  # checkpointed on a signal: resumable
        state = "done" if done else "stopped" if stopped else "failed"
        atomic_write_json(local_record_path(self.plan, unit), {
            "state": state, "returncode": code, "started": record["started"], "ended": time.time(),
            "log": record["log"], "command": record["command"]})
        self.echo(f"{tag}: {state} in {time.time() - record['started']:.0f} s"
                  + ("" if done else f" (exit {code}; log {record['log']})"))
        return state


# -- Slurm executor ---------------------------------------------------------------------------------------

def load_jobs(plan: Plan) -> list[dict]:
    path = plan.study.root / JOBS_FILE
    return json.loads(path.read_text())["submissions"] if path.is_file() else []


def latest_jobs(plan: Plan) -> dict[str, dict]:
    """unit -> {"job": array job id, "index": array index, "array": "<job>_<index>", "level", "output"}
    of its most recent submission."""
    out = {}
    for submission in load_jobs(plan):
        for array in submission["arrays"]:
            for index, key in enumerate(array["units"]):
                out[key] = {"job": array["job"], "index": index, "array": f"{array['job']}_{index}",
                            "level": array["level"], "output": array["output"].replace("%A", array["job"])
                            .replace("%a", str(index))}
    return out


def unit_script(plan: Plan, unit: Unit) -> str:
    """The shell snippet an array task sources (after the template's xr_setup) to run this unit."""
    command = " ".join(shlex.quote(a) for a in unit_command(plan, unit))
    lines = [f"# study {plan.study.name}: unit {unit.key} (written by `xrobust study submit`)"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in unit_env(plan, unit).items()]
    lines.append(f"# shellcheck disable=SC2086\nxr_run {command} $EXTRA_ARGS")
    return "\n".join(lines) + "\n"


def submit_slurm(plan: Plan, units: list[str], variables: dict[str, dict[str, str]], *, dry_run: bool = False,
                 env: dict | None = None) -> list[dict]:
    """One array per level of `units` (in level order), each afterok on this submission's arrays that hold
    its units' dependencies. variables: template variables for "all" levels or per level ("1", "2"...)."""
    from ..launch.slurm import TemplateVars, render_template, submit, template_text

    root = plan.study.root
    declared = TemplateVars.parse(template_text("study_array")[0]).defaults
    number = len(load_jobs(plan)) + 1
    arrays: list[dict] = []
    for level_units in plan.levels():
        todo = [u for u in level_units if u.key in units]
        if not todo:
            continue
        level = todo[0].level
        scripts = []
        for unit in todo:
            path = root / "jobs" / "units" / f"{unit.file_name}.sh"
            atomic_write_text(path, unit_script(plan, unit))
            scripts.append(path)
        values = {**plan.study.slurm, **variables.get("all", {}), **variables.get(str(level), {})}
        unknown = sorted(set(values) - set(declared))
        if unknown:
            raise LaunchError(f"template study_array: unknown variable(s) {', '.join(unknown)}; it takes "
                              f"{', '.join(sorted(declared))}")
        values.update(CONFIG=str(root / "plan.json"), UNITS=" ".join(shlex.quote(str(p)) for p in scripts),
                      ARRAY=f"0-{len(scripts) - 1}")
        values.setdefault("JOB_NAME", f"{plan.study.name}-L{level}")
        values.setdefault("OUTPUT", str(root / "logs" / "%x-%A_%a.out"))
        values.setdefault("JOB_DIR", str(root / "jobs"))  # the jobs' folders beside their scripts
        Path(values["OUTPUT"]).parent.mkdir(parents=True, exist_ok=True)  # Slurm does not create it: the job would fail
        script = root / "jobs" / f"submit{number}-level{level}.sbatch"
        atomic_write_text(script, render_template("study_array", values))
        script.chmod(0o755)
        needed = {d for u in todo for d in u.deps}
        after = [a["job"] for a in arrays if needed & set(a["units"])]
        dependency = "afterok:" + ":".join(after) if after else None
        job = f"<level {level}>" if dry_run else submit(script, dependency, env=env)
        arrays.append({"level": level, "job": job, "script": str(script), "dependency": dependency,
                       "units": [u.key for u in todo], "output": values["OUTPUT"].replace("%x", values["JOB_NAME"])})
    if not dry_run and arrays:
        submissions = load_jobs(plan) + [{"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "arrays": arrays}]
        atomic_write_json(root / JOBS_FILE, {"submissions": submissions})
    return arrays
