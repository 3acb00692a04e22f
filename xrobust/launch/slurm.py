"""Render and submit the sbatch templates in slurm/ (xrobust.shipped).

A template declares its variables in `# var NAME=default  description` lines (no `=`: required)
and uses them as `{{NAME}}` (inserted as is) or `{{NAME|q}}` (shell-quoted). An `#SBATCH` line
whose value renders empty or 0 is dropped. The line marked `# @include env.sh` is replaced by
the shared job environment, so a rendered script is self-contained.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LaunchError
from ..io import atomic_write_text
from ..shipped import shipped_folder

TEMPLATE_NAMES = ("intermediate_multitask", "intermediate_array", "target_array", "evaluate")
_VAR_LINE = re.compile(r"^# var ([A-Z_][A-Z0-9_]*)(?:=(.*?))?(?:\s{2,}.*)?$")
_PLACEHOLDER = re.compile(r"\{\{([A-Z_][A-Z0-9_]*)(\|q)?\}\}")
_INCLUDE = re.compile(r"^.*# @include ([\w.]+)\s*$")


def template_dir() -> Path:
    return shipped_folder("slurm")


def template_text(name: str) -> tuple[str, Path]:
    path = template_dir() / f"{name}.sbatch"
    if not path.is_file():
        raise LaunchError(f"unknown sbatch template {name!r} (looked for {path}); "
                          f"available: {', '.join(available_templates())}")
    return path.read_text(encoding="utf-8"), path


def available_templates() -> list[str]:
    return sorted(p.stem for p in template_dir().glob("*.sbatch"))


@dataclass
class TemplateVars:
    defaults: dict[str, str | None] = field(default_factory=dict)  # None: required

    @classmethod
    def parse(cls, text: str) -> "TemplateVars":
        out = cls()
        for line in text.splitlines():
            m = _VAR_LINE.match(line)
            if m:
                out.defaults[m.group(1)] = m.group(2).strip() if m.group(2) is not None else None
        return out


def render_template(name: str, values: dict[str, str]) -> str:
    """The template with every placeholder filled; LaunchError names missing/unknown variables."""
    text, path = template_text(name)
    declared = TemplateVars.parse(text)
    unknown = sorted(set(values) - set(declared.defaults))
    if unknown:
        raise LaunchError(f"template {path}: unknown variable(s) {', '.join(unknown)}; "
                          f"it takes {', '.join(sorted(declared.defaults))}")
    merged = {k: v for k, v in declared.defaults.items()}
    merged.update({k: str(v) for k, v in values.items()})
    if "TASKS" in values and "ARRAY" in declared.defaults and "ARRAY" not in values:
        merged["ARRAY"] = f"0-{len(values['TASKS'].split()) - 1}"
    used = {m.group(1) for m in _PLACEHOLDER.finditer(text)}
    missing = sorted(k for k in used if merged.get(k) is None)
    if missing:
        raise LaunchError(f"template {path}: no value for {', '.join(missing)} "
                          "(pass " + " ".join(f"--var {k}=VALUE" for k in missing) + ")")
    for key, value in merged.items():
        if value is not None and ("\n" in value or "\r" in value):
            raise LaunchError(f"template variable {key}: a value may not contain a newline")

    def fill(m: re.Match) -> str:
        value = merged[m.group(1)]
        return shlex.quote(value) if m.group(2) else value

    out_lines = []
    for line in text.splitlines():
        if _VAR_LINE.match(line):
            continue
        inc = _INCLUDE.match(line)
        if inc:
            inc_path = template_dir() / inc.group(1)
            if not inc_path.is_file():
                raise LaunchError(f"template {path}: included file {inc_path} is missing")
            out_lines.append(f"# ---- {inc.group(1)} (inlined) ----")
            out_lines.extend(inc_path.read_text(encoding="utf-8").rstrip("\n").splitlines())
            out_lines.append(f"# ---- end of {inc.group(1)} ----")
            continue
        filled = _PLACEHOLDER.sub(fill, line)
        if line.startswith("#SBATCH") and _PLACEHOLDER.search(line):
            value = filled.split("=", 1)[1].strip() if "=" in filled else ""
            if value in ("", "0"):
                continue
        out_lines.append(filled)
    return "\n".join(out_lines) + "\n"


def resolve_config(config: str, overrides: list[str] | None) -> str:
    """The resolved config as YAML text (validated by xrobust.config when it is available)."""
    try:
        from ..config import dump_yaml, load_config
    except ImportError:
        load_config = None
    if load_config is not None:
        return dump_yaml(load_config(config, overrides or []))
    import yaml

    path = Path(config)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LaunchError(f"cannot read config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise LaunchError(f"config {path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise LaunchError(f"config {path}: expected a YAML mapping at the top, got {type(data).__name__}")
    return yaml.safe_dump(data, sort_keys=False)


def parse_vars(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise LaunchError(f"--var {item!r}: expected NAME=VALUE")
        key, _, value = item.partition("=")
        out[key.strip()] = value
    return out


def render(template: str, config: str, overrides: list[str] | None = None, out: str | None = None,
           variables: dict[str, str] | None = None) -> tuple[Path, Path]:
    """Write the sbatch script and its resolved config (OUT.yaml); returns both paths."""
    script = Path(out or f"{template}.sbatch").resolve()
    config_out = script.with_suffix(".yaml")
    values = dict(variables or {})
    values["CONFIG"] = str(config_out)
    if "TASKS" not in values and template in ("intermediate_array", "target_array"):
        tasks = _registry_tasks("intermediate" if template.startswith("intermediate") else "target")
        if tasks:
            values["TASKS"] = " ".join(tasks)
    text = render_template(template, values)
    resolved = resolve_config(config, overrides)
    header = f"# resolved from {config}" + (f" with --set {' '.join(overrides)}" if overrides else "") + "\n"
    atomic_write_text(config_out, header + resolved)
    atomic_write_text(script, text)
    script.chmod(0o755)
    return script, config_out


def _registry_tasks(phase: str) -> list[str]:
    try:
        from ..tasks import registry
    except ImportError:
        return []
    return list(getattr(registry, "INTERMEDIATE_TASKS" if phase == "intermediate" else "TARGET_TASKS", ()))


def sbatch_command(script: str | Path, dependency: str | None = None, extra: list[str] | None = None) -> list[str]:
    cmd = ["sbatch", "--parsable"]
    if dependency:
        cmd.append(f"--dependency={dependency}")
    return cmd + list(extra or []) + [str(script)]


def submit(script: str | Path, dependency: str | None = None, extra: list[str] | None = None,
           env: dict | None = None) -> str:
    """sbatch the script; returns the job id. LaunchError with sbatch's stderr on failure."""
    if shutil.which("sbatch", path=(env or {}).get("PATH")) is None:
        raise LaunchError(f"sbatch not found on PATH: cannot submit {script} (is this a Slurm login node?)")
    cmd = sbatch_command(script, dependency, extra)
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(Path(script).parent))
    if res.returncode != 0:
        raise LaunchError(f"sbatch {script} failed (exit {res.returncode}): {res.stderr.strip() or res.stdout.strip()}")
    job_id = res.stdout.strip().split(";")[0]
    if not re.fullmatch(r"\d+", job_id):
        raise LaunchError(f"sbatch {script}: unexpected output {res.stdout.strip()!r} (expected a job id)")
    return job_id


def wait_for_job(job_id: str, timeout: float = 3600, poll: float = 2.0, env: dict | None = None) -> str:
    """Wait until the job (every array task) has left the queue; LaunchError if any task failed."""
    deadline = time.monotonic() + timeout
    while True:
        res = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%i %T"], capture_output=True, text=True, env=env)
        if res.returncode != 0 or not res.stdout.strip():
            break
        if time.monotonic() > deadline:
            raise LaunchError(f"job {job_id} still queued/running after {timeout:.0f} s")
        time.sleep(poll)
    res = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, env=env)
    states = re.findall(r"\bJobState=(\S+)", res.stdout)
    codes = re.findall(r"\bExitCode=(\S+)", res.stdout)
    bad = [(s, c) for s, c in zip(states, codes) if s != "COMPLETED"]
    if bad:
        raise LaunchError(f"job {job_id} failed: " + ", ".join(f"{s} (exit {c})" for s, c in bad))
    return "COMPLETED"


PIPELINE = ("intermediate_multitask", "target_array", "evaluate")


def pipeline(config: str, overrides: list[str] | None, out_dir: str, variables: dict[str, dict[str, str]],
             dry_run: bool = False, env: dict | None = None) -> list[tuple[str, Path, str]]:
    """Render intermediate -> target array -> evaluation and submit them as an afterok chain.

    variables maps a template name (or "all") to its --var values. Returns (template, script, job id);
    with dry_run the job ids are placeholders and nothing is submitted.
    """
    results = []
    previous = None
    for i, name in enumerate(PIPELINE):
        vals = dict(variables.get("all", {}))
        vals.update(variables.get(name, {}))
        declared = TemplateVars.parse(template_text(name)[0]).defaults
        vals = {k: v for k, v in vals.items() if k in declared}
        script, _ = render(name, config, overrides, str(Path(out_dir) / f"{i + 1}_{name}.sbatch"), vals)
        dependency = f"afterok:{previous}" if previous else None
        if dry_run:
            job = f"<job {i + 1}>"
        else:
            job = submit(script, dependency, env=env)
        results.append((name, script, job, dependency))
        previous = job
    return results
