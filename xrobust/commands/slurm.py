"""`xrobust slurm render|submit|pipeline`: sbatch scripts with the resolved config baked in."""

from __future__ import annotations

import shlex

from ..errors import LaunchError


def _common(p, template: bool = True) -> None:
    if template:
        p.add_argument("--template", required=True, help="intermediate_multitask | intermediate_array | "
                       "target_array | evaluate")
    p.add_argument("--config", required=True, help="experiment config (preset name or YAML path)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override (dotted key), repeatable")
    p.add_argument("--var", dest="vars", action="append", default=[], metavar="NAME=VALUE",
                   help="template variable, repeatable (see the `# var` lines of the template)")


def add_parsers(sub) -> None:
    slurm = sub.add_parser("slurm", help="render and submit Slurm jobs")
    cmds = slurm.add_subparsers(dest="slurm_command", required=True)

    p = cmds.add_parser("render", help="write a ready sbatch script (and its resolved config next to it)")
    _common(p)
    p.add_argument("--out", help="script path (default: TEMPLATE.sbatch); the config goes to OUT.yaml")
    p.set_defaults(func=cmd_render)

    p = cmds.add_parser("submit", help="render, then sbatch; prints the job id")
    _common(p)
    p.add_argument("--out", help="script path (default: TEMPLATE.sbatch)")
    p.add_argument("--dependency", help="sbatch --dependency value, e.g. afterok:1234")
    p.add_argument("--dry-run", action="store_true", help="print the script and the sbatch command only")
    p.set_defaults(func=cmd_submit)

    p = cmds.add_parser("pipeline", help="intermediate -> target array -> evaluation as an afterok chain")
    _common(p, template=False)
    p.add_argument("--out-dir", default="slurm_jobs", help="where the scripts are written")
    p.add_argument("--dry-run", action="store_true", help="render and print the sbatch commands only")
    p.set_defaults(func=cmd_pipeline)


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
