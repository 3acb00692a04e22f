"""Expand a study's axes into units of work, each one normal run directory, with the work they share.

- An *intermediate* unit trains the intermediate phase for one (task, method, seed) and evaluates the
  retrieval targets (BUCC, Tatoeba) on that encoder, without target training, as X-STILTs does. It is
  trained once and every target run of that (task, method, seed) starts from its encoder.
- A *cell* unit is one cell run (intermediate, method, seed): the target phases from that encoder,
  then zero-shot evaluation of the trained targets. Inside it the pipeline groups target tasks by
  head (`pipeline.run_groups`), so XQuAD and MLQA share one SQuAD-trained run.
- The *pretrained* unit evaluates the retrieval targets on the base encoder itself: the retrieval
  scores of intermediate `none`.
Units whose configs are identical are one unit (e.g. method `freelb` applied to the intermediate
phase only, with intermediate `none`: the same runs as plain training). A unit's level is one more
than its dependencies' deepest; each level is one Slurm job array.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..config import config_from_dict, to_dict
from ..config.loader import overlay_names, overlay_path
from ..errors import ConfigError
from .spec import MULTITASK, NONE, Study


def method_overlay(method: str, phases: list[str], settings: dict) -> dict:
    """The config fragment that applies adversarial `method` to `phases`.

    The one place that knows how a value of the method axis becomes config: the method's settings
    from its shipped overlay (config/presets/overlays/<method>.yaml, the documented defaults, written
    for the intermediate phase) when there is one, else the schema's defaults, then the study's
    `method_settings`, applied to each phase in `phases`.
    """
    if method == NONE:
        adversarial = {"method": NONE}
    else:
        adversarial = {**_shipped_settings(method), **settings, "method": method}
    return {"phases": {p: {"adversarial": dict(adversarial)} for p in phases}}


def _shipped_settings(method: str) -> dict:
    if method not in overlay_names():
        return {}
    data = yaml.safe_load(overlay_path(method).read_text(encoding="utf-8")) or {}
    return dict(((data.get("phases") or {}).get("intermediate") or {}).get("adversarial") or {})


def _merge(into: dict, fragment: dict) -> None:
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def is_retrieval(task: str) -> bool:
    """A task evaluated on the encoder alone (no head, no target training: BUCC, Tatoeba)."""
    from ..tasks import get_task

    return not get_task(task).task_format.has_head


@dataclass
class Unit:
    key: str  # "intermediate/<task>-<method>-s<seed>", "pretrained" or "cells/<intermediate>-<method>-s<seed>"
    kind: str  # intermediate | pretrained | cell
    config: dict  # the run's resolved experiment config
    axes: dict  # study name and axis values: W&B config fields of the run
    deps: list[str] = field(default_factory=list)
    level: int = 1

    @property
    def run_dir(self) -> Path:
        return Path(self.config["output_dir"]) / self.config["name"]

    @property
    def evaluates(self) -> list[str]:
        return list(self.config["evaluation"]["tasks"] or [])

    @property
    def file_name(self) -> str:
        return self.key.replace("/", "__")


@dataclass
class CellRun:
    """One seed of one cell: which units hold its results (retrieval ones in the encoder unit)."""
    intermediate: str
    method: str
    seed: int
    encoder: str | None  # the intermediate unit, or for `none` the pretrained unit (None without retrieval)
    cell: str | None  # unit key of the target runs (None: only retrieval targets)


@dataclass
class Plan:
    study: Study
    units: dict[str, Unit]  # ordered by level
    runs: dict[tuple[str, str, int], CellRun]
    aliases: dict[str, str]  # a unit key that is the same run as another one -> that unit's key

    def levels(self) -> list[list[Unit]]:
        top = max((u.level for u in self.units.values()), default=0)
        return [[u for u in self.units.values() if u.level == level] for level in range(1, top + 1)]


class _Builder:
    def __init__(self, study: Study):
        self.study = study
        self.base = to_dict(study.base)
        self.units: dict[str, Unit] = {}
        self.by_content: dict[str, str] = {}
        self.aliases: dict[str, str] = {}
        self.retrieval = [t for t in study.targets if is_retrieval(t)]
        self.trained = [t for t in study.targets if not is_retrieval(t)]
        covered = {t for p in study.target_phases for t in study.base.phases[p].tasks}
        missing = [t for t in self.trained if t not in covered]
        if missing:
            raise ConfigError(f"{study.source}: key 'study.targets': {', '.join(missing)} trained by no target "
                              f"phase of the base config (target phases: {', '.join(study.target_phases) or 'none'})")

    def _config(self, phases: dict, *, name: str, folder: str, seed: int, evaluate: list[str]) -> dict:
        d = copy.deepcopy(self.base)
        d.update(name=name, output_dir=str(self.study.root / folder), seed=seed, phases=phases)
        d["evaluation"]["tasks"] = list(evaluate) or None
        d["tracking"]["group"] = self.study.name
        return d

    def _add(self, unit: Unit) -> str:
        """Register a unit, or return the key of an identical one (same config but for the name)."""
        config_from_dict(copy.deepcopy(unit.config), f"{self.study.source} (study unit {unit.key})")
        content = {k: v for k, v in unit.config.items() if k not in ("name", "output_dir")}
        fingerprint = json.dumps([unit.kind, content], sort_keys=True)
        if fingerprint in self.by_content:
            same = self.by_content[fingerprint]
            if same != unit.key:
                self.aliases[unit.key] = same
            return same
        unit.level = 1 + max((self.units[d].level for d in unit.deps), default=0)
        self.units[unit.key] = unit
        self.by_content[fingerprint] = unit.key
        return unit.key

    def _intermediate_phase(self, value: str, method: str | None) -> dict:
        study = self.study
        phase = copy.deepcopy(self.base["phases"][study.intermediate_phase])
        if value != MULTITASK:
            phase["tasks"] = [value]
        phase["multitask"] = True
        phases = {study.intermediate_phase: phase}
        if method is not None:
            _merge(phases, method_overlay(method, [study.intermediate_phase],
                                          study.method_settings.get(method, {}))["phases"])
        return phases

    def intermediate(self, value: str, method: str, seed: int) -> str:
        # a method not applied to the intermediate phase leaves it as the base config has it
        applied = method if self.study.intermediate_phase in self.study.method_phases else None
        name = f"{value}-s{seed}" if applied is None else f"{value}-{applied}-s{seed}"
        config = self._config(self._intermediate_phase(value, applied), name=name, folder="intermediate",
                              seed=seed, evaluate=self.retrieval)
        axes = {"study": self.study.name, "unit": "intermediate", "intermediate": value, "method": applied,
                "seed": seed}
        return self._add(Unit(f"intermediate/{name}", "intermediate", config, axes))

    def pretrained(self) -> str:
        """The base encoder, untrained: its config keeps an intermediate phase only to be a valid config
        (retrieval featurizes with that phase's settings, as in the intermediate units)."""
        study = self.study
        trained = [v for v in study.intermediate if v != NONE]
        value = MULTITASK if self.base["phases"][study.intermediate_phase]["tasks"] else trained[0] if trained else None
        phases = self._intermediate_phase(value, NONE) if value else \
            {study.target_phases[0]: copy.deepcopy(self.base["phases"][study.target_phases[0]])}
        config = self._config(phases, name="pretrained", folder="", seed=study.seeds[0], evaluate=self.retrieval)
        config["output_dir"] = str(study.root)
        axes = {"study": study.name, "unit": "pretrained", "intermediate": NONE, "method": NONE}
        return self._add(Unit("pretrained", "pretrained", config, axes))

    def _target_phases(self, encoder: str, method: str) -> dict:
        """The base's target phases, cut to the study's targets, starting from `encoder`."""
        study = self.study
        order = list(self.base["phases"])
        sources = {}
        for i, key in enumerate(order):
            init = self.base["phases"][key]["init_encoder"]
            if init is None:
                sources[key] = order[i - 1] if i else "model"
            elif init.startswith("phase:"):
                sources[key] = init[len("phase:"):]
            else:
                sources[key] = None  # an explicit encoder path: kept
        phases: dict = {}
        for key in study.target_phases:
            phase = copy.deepcopy(self.base["phases"][key])
            phase["tasks"] = [t for t in phase["tasks"] if t in self.trained]
            if not phase["tasks"]:
                continue
            source = sources[key]
            if source in (study.intermediate_phase, "model"):
                phase["init_encoder"] = encoder
            elif source is not None:
                if source not in phases:
                    raise ConfigError(f"{study.source}: phase '{key}' starts from phase '{source}', which trains "
                                      f"none of the study's targets")
                phase["init_encoder"] = None if list(phases)[-1] == source else f"phase:{source}"
            phases[key] = phase
        present = [p for p in phases if p in study.method_phases]
        if present:
            _merge(phases, method_overlay(method, present, study.method_settings.get(method, {}))["phases"])
        return phases

    def cell(self, value: str, method: str, seed: int, encoder_unit: str | None) -> str | None:
        if not self.trained:
            return None
        if value == NONE:
            encoder, deps = self.base["model"]["name_or_path"], []
        else:
            encoder = str(self.units[encoder_unit].run_dir / self.study.intermediate_phase / "model")
            deps = [encoder_unit]
        name = f"{value}-{method}-s{seed}"
        config = self._config(self._target_phases(encoder, method), name=name, folder="cells", seed=seed,
                              evaluate=self.trained)
        axes = {"study": self.study.name, "unit": "cell", "intermediate": value, "method": method, "seed": seed}
        return self._add(Unit(f"cells/{name}", "cell", config, axes, deps=deps))


def build_plan(study: Study) -> Plan:
    b = _Builder(study)
    runs = {}
    pretrained = b.pretrained() if NONE in study.intermediate and b.retrieval else None
    for value in study.intermediate:
        for method in study.methods:
            for seed in study.seeds:
                encoder = pretrained if value == NONE else b.intermediate(value, method, seed)
                cell = b.cell(value, method, seed, encoder)
                runs[(value, method, seed)] = CellRun(value, method, seed, encoder, cell)
    units = dict(sorted(b.units.items(), key=lambda kv: kv[1].level))
    return Plan(study, units, runs, b.aliases)


def write_configs(plan: Plan) -> None:
    """Each unit's resolved config at configs/<unit>.yaml: what its job runs."""
    from ..io import atomic_write_text

    for unit in plan.units.values():
        atomic_write_text(config_path(plan, unit), yaml.safe_dump(unit.config, sort_keys=False, allow_unicode=True))


def config_path(plan: Plan, unit: Unit) -> Path:
    return plan.study.root / "configs" / f"{unit.file_name}.yaml"
