"""`xrobust slurm render|submit|pipeline`: sbatch scripts with the resolved config baked in."""

from __future__ import annotations

import shlex

from ..errors import LaunchError
from ..config import add_overrides
from . import add_command


def _common(p, template: bool = True) -> None:
    if template:
        p.add_argument("--template", required=True, help="intermediate_multitask | intermediate_array | "
                       "target_array | evaluate")
    p.add_argument("--config", required=True, help="experiment config (preset name or YAML path)")
    add_overrides(p)
    p.add_argument("--var", dest="vars", action="append", default=[], metavar="NAME=VALUE",
                   help="template variable, repeatable (see the `# var` lines of the template)")


def add_parsers(sub) -> None:
    slurm = sub.add_parser("slurm", help="render and submit Slurm jobs")
    cmds = slurm.add_subparsers(dest="slurm_command", required=True)

    p = add_command(cmds, "render", "write a ready sbatch script (and its resolved config next to it)", cmd_render,
                    _common)
    p.add_argument("--out", help="script path (default: TEMPLATE.sbatch); the config goes to OUT.yaml")
    p = add_command(cmds, "submit", "render, then sbatch; prints the job id", cmd_submit, _common)
    p.add_argument("--out", help="script path (default: TEMPLATE.sbatch)")
    p.add_argument("--dependency", help="sbatch --dependency value, e.g. afterok:1234")
    p.add_argument("--dry-run", action="store_true", help="print the script and the sbatch command only")
    p = add_command(cmds, "pipeline", "intermediate -> target array -> evaluation as an afterok chain",
                    cmd_pipeline, lambda parser: _common(parser, template=False))
    p.add_argument("--out-dir", default="slurm_jobs", help="where the scripts are written")
    p.add_argument("--dry-run", action="store_true", help="render and print the sbatch commands only")


def cmd_render(args) -> int:
    from ..launch.slurm import parse_vars, render

    script, config = render(args.template, args.config, args.overrides, args.out, parse_vars(args.vars))
    print(f"wrote {script}\nwrote {config}")
    return 0


def cmd_submit(args) -> int:
    from ..launch.slurm import parse_vars, render, sbatch_command, submit

    script, _ = render(args.template, args.config, args.overrides, args.out, parse_vars(args.vars))
    if args.dry_run:
        print(script.read_text(encoding="utf-8"), end="")
        print("# " + shlex.join(sbatch_command(script, args.dependency)))
        return 0
    print(submit(script, args.dependency))
    return 0


def cmd_pipeline(args) -> int:
    from ..launch.slurm import PIPELINE, parse_vars, pipeline

    per_template: dict[str, dict[str, str]] = {"all": {}}
    for key, value in parse_vars(args.vars).items():
        # TEMPLATE:NAME=VALUE targets one template; NAME=VALUE goes to all of them
        if ":" in key:
            template, _, name = key.partition(":")
            if template not in PIPELINE:
                raise LaunchError(f"--var {key}: unknown template {template!r} (pipeline: {', '.join(PIPELINE)})")
            per_template.setdefault(template, {})[name] = value
        else:
            per_template["all"][key] = value
    for name, script, job, dependency in pipeline(args.config, args.overrides, args.out_dir, per_template,
                                                   dry_run=args.dry_run):
        dep = f" --dependency={dependency}" if dependency else ""
        print(f"{name}\t{job}\tsbatch --parsable{dep} {script}")
    return 0
