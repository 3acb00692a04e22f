"""`xrobust tasks`: print the task registry as a table or as JSON."""

from __future__ import annotations

import json

from xrobust.tasks import all_tasks

_COLUMNS = ("name", "display", "phase", "format", "labels", "langs", "metric", "train", "head",
            "splits")


def add_parsers(sub) -> None:
    parser = sub.add_parser("tasks", help="list the intermediate and XTREME target tasks")
    parser.add_argument("--json", action="store_true", help="print a JSON list of task objects")
    parser.add_argument("--all", action="store_true", help="include the embedded demo tasks")
    parser.set_defaults(func=run)


def _row(t) -> tuple[str, ...]:
    if t.open_labels:
        labels = "open"
    elif t.num_choices:
        labels = f"{t.num_choices} choices"
    else:
        labels = str(len(t.labels)) if t.labels else "-"
    return (t.name, t.display_name, t.phase, t.format, labels, str(len(t.languages)), t.metric,
            t.train_task or "-", t.head or "-", ",".join(t.splits()))


def run(args) -> int:
    tasks = all_tasks(include_demo=args.all)
    if args.json:
        rows = []
        for t in tasks:
            row = t.to_dict()
            row["splits"] = list(t.splits())
            rows.append(row)
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    table = [_COLUMNS] + [_row(t) for t in tasks]
    widths = [max(len(r[i]) for r in table) for i in range(len(_COLUMNS))]
    for r in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    return 0
