"""What a plan costs: training runs per phase, optimizer steps, padded tokens, and GPU-hours.

Steps are the configured `max_steps`, else epochs x English training examples / batch size (the
sizes below; `study.train_examples` adds or overrides entries). Tokens count every example padded
to its phase's maximum length, so dynamic padding makes the real figure lower. An adversarial
method multiplies the cost by its forward-backward passes per step (`Strategy.passes`, REFERENCE.md
section 5; measure yours with `xrobust bench adversarial`), and a data-level one (RS-DA) the training
examples an epoch sees (`Strategy.train_examples_factor`). GPU-hours = tokens x passes / tokens_per_s
x gpus / 3600, with the throughput of plain training from `study.throughput` or a `xrobust bench train
--json` file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

# English training examples of each task's training data (dataset cards; ANLI+ = ANLI r1-r3 + MNLI + SNLI)
TRAIN_EXAMPLES = {
    "anli_plus": 16946 + 45460 + 100459 + 392702 + 550152, "mnli": 392702, "qqp": 363846, "sst2": 67349,
    "squad": 87599, "hellaswag": 39905, "cosmosqa": 25262, "commonsenseqa": 9741, "ccg": 39604,
    "pawsx": 49401, "udpos": 12543, "panx": 20000, "tydiqa": 3696,
}


@dataclass
class TrainingRun:
    unit: str
    phase: str
    tasks: list[str]
    steps: int | None  # None: unknown (epochs of a task whose size is not known)
    tokens: float | None
    passes: float


def throughput(value, source: str) -> tuple[float, int] | None:
    """(tokens per second, GPUs that figure used) from a mapping or a bench train JSON file."""
    if value is None:
        return None
    if isinstance(value, str):
        path = Path(value)
        try:
            runs = json.loads(path.read_text())["runs"]
            best = max(runs.values(), key=lambda r: r.get("ranks", 1))
            return float(best["tokens_per_s"]), int(best.get("ranks", 1))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{source}: throughput file {path}: expected `xrobust bench train --json` output "
                              f"({type(exc).__name__}: {exc})") from None
    try:
        return float(value["tokens_per_s"]), int(value.get("gpus", 1))
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{source}: key 'study.throughput': expected {{tokens_per_s: N, gpus: N}}, "
                          f"got {value!r}") from None


def training_runs(plan, train_examples: dict | None = None) -> list[TrainingRun]:
    """Every training run the plan's units make (the pipeline's own grouping of tasks into runs)."""
    from ..adversarial.strategies import strategy_class
    from ..config import config_from_dict
    from ..pipeline import run_groups
    from ..tasks import get_task

    sizes = {**TRAIN_EXAMPLES, **(train_examples or {})}
    out = []
    for unit in plan.units.values():
        if unit.kind == "pretrained":
            continue
        cfg = config_from_dict(dict(unit.config), unit.key)
        for key, phase in cfg.phases.items():
            method = strategy_class(phase.adversarial.method)
            for tasks in run_groups(phase):
                specs = {s.head_name: s for s in map(get_task, tasks)}.values()
                known = [sizes.get(s.train_task or s.name) for s in specs]
                steps = phase.max_steps
                if steps is None and None not in known:
                    examples = sum(known) * method.train_examples_factor(phase.adversarial)
                    steps = max(1, math.ceil(phase.epochs * examples / phase.batch_size))
                length = phase.max_length or max(s.max_length for s in specs)
                tokens = None if steps is None else float(steps) * phase.batch_size * length
                out.append(TrainingRun(unit.key, key, list(tasks), steps, tokens,
                                       method.passes(phase.adversarial)))
    return out


def gpu_hours(runs: list[TrainingRun], rate: tuple[float, int] | None) -> float | None:
    if rate is None or any(r.tokens is None for r in runs):
        return None
    tokens_per_s, gpus = rate
    return sum(r.tokens * r.passes for r in runs) / tokens_per_s * gpus / 3600
