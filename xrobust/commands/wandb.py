"""`xrobust wandb summary PATH`: config, history and summary of an offline W&B run."""

from __future__ import annotations

import json


def add_parsers(sub) -> None:
    wb = sub.add_parser("wandb", help="inspect W&B runs")
    cmds = wb.add_subparsers(dest="wandb_command", required=True)
    p = cmds.add_parser("summary", help="print an offline run (offline-run-* folder or its .wandb file)")
    p.add_argument("path")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.set_defaults(func=cmd_summary)


def cmd_summary(args) -> int:
    from ..tracking.wandb_reader import read_run

    run = read_run(args.path)
    if args.json:
        print(json.dumps(run, indent=2, default=str))
        return 0
    print(f"run {run['run_id']} (project {run['project']})  {run['file']}")
    print("config:")
    for key, value in run["config"].items():
        print(f"  {key}: {json.dumps(value, default=str)}")
    print(f"history ({len(run['history'])} rows):")
    for row in run["history"]:
        items = ", ".join(f"{k}={v}" for k, v in row.items() if not k.startswith("_") or k == "_step")
        print(f"  {items}")
    print("summary:")
    for key, value in run["summary"].items():
        if not key.startswith("_"):
            print(f"  {key}: {json.dumps(value, default=str)}")
    return 0
