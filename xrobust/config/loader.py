"""YAML -> validated ExperimentConfig. Every problem names the file and the dotted key path."""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Union

import yaml

from ..adversarial.strategies import LEGACY_KEYS, METHODS, MethodConfig, strategy_class
from ..errors import ConfigError
from .schema import CHOICES, RANGES, ExperimentConfig, FlatAdversarialConfig

PRESET_PACKAGE = "xrobust.config.presets"
OVERLAYS = "overlays"  # presets/overlays/: partial configs that a config adds through `base:`, never run alone
STUDIES = "studies"  # presets/studies/: study configs (`xrobust study`), a base config plus a `study:` section


def _shipped(folder: str = ""):
    root = resources.files(PRESET_PACKAGE)
    return root / folder if folder else root


def _names(folder: str = "") -> list[str]:
    return sorted(p.name[:-5] for p in _shipped(folder).iterdir() if p.name.endswith(".yaml"))


def preset_names() -> list[str]:
    """The presets that `--config` accepts: the shipped files and, for every intermediate task of the
    registry, `xstilts_<task>` and `xstilts_<task>_<overlay>` (overlays are listed by overlay_names)."""
    return sorted(set(_names()) | set(_task_presets()))


def overlay_names() -> list[str]:
    """The shipped overlays: one per adversarial method, added to a preset as in `base: [xstilts_mnli, freelb]`."""
    return _names(OVERLAYS)


def _task_presets() -> dict[str, dict]:
    """The X-STILTs preset of each intermediate task, written out by the registry rather than by a file
    per task: `xstilts_<task>` trains the task before the target phases of xstilts_base, and
    `xstilts_<task>_<overlay>` adds an overlay. A shipped file of the same name takes its place
    (xstilts_ccg.yaml: CCGbank's licensed path; xstilts_squad.yaml: max_length 384)."""
    from ..tasks import INTERMEDIATE_TASKS

    out = {}
    for task in INTERMEDIATE_TASKS:
        plain = f"xstilts_{task}"
        out[plain] = {"base": "xstilts_base", "name": plain.replace("_", "-"),
                      "phases": {"intermediate": {"tasks": [task]}}}
        for overlay in overlay_names():
            out[f"{plain}_{overlay}"] = {"base": [plain, overlay], "name": f"{plain}_{overlay}".replace("_", "-")}
    return out


# A phase's `tasks` (or evaluation.tasks) given as one of these words: every such task of the registry.
TASK_GROUPS = ("intermediate", "target")


def _expand_task_groups(data: dict) -> dict:
    from ..tasks import INTERMEDIATE_TASKS, TARGET_TASKS

    groups = dict(zip(TASK_GROUPS, (INTERMEDIATE_TASKS, TARGET_TASKS)))
    sections = [*(data.get("phases") or {}).values(), data.get("evaluation")]
    for section in sections:
        if isinstance(section, dict) and isinstance(section.get("tasks"), str) and section["tasks"] in groups:
            section["tasks"] = list(groups[section["tasks"]])
    return data


def study_names() -> list[str]:
    """The shipped study configs that `xrobust study --config` accepts (docs/STUDIES.md)."""
    return _names(STUDIES)


def study_path(name: str) -> Path:
    return Path(str(_shipped(STUDIES) / f"{name}.yaml"))


def overlay_path(name: str) -> Path:
    """The file of the shipped overlay `name` (one of overlay_names())."""
    return Path(str(_shipped(OVERLAYS) / f"{name}.yaml"))


def resolve_config_path(name_or_path: str) -> Path:
    """A path to a YAML file, or the name of a preset shipped in the package."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        return path
    if name_or_path in preset_names():
        return _preset_path(name_or_path)
    if name_or_path in study_names():
        raise ConfigError(f"'{name_or_path}' is a study config, not an experiment preset: run it with "
                          f"`xrobust study plan|submit|status|report --config {name_or_path}`")
    if name_or_path in overlay_names():
        raise ConfigError(f"'{name_or_path}' is an overlay, not a preset: it is not run alone but added to a config "
                          f"through `base:`, e.g. base: [xstilts_mnli, {name_or_path}]")
    raise ConfigError(f"'{name_or_path}' is neither a config file nor a preset; presets: {', '.join(preset_names())}; "
                      f"overlays (for `base:` only): {', '.join(overlay_names())}")


def _preset_path(name: str) -> Path:
    """Where a preset's file is, or would be (a registry preset has none: _read_yaml writes it out)."""
    return Path(str(_shipped() / f"{name}.yaml"))


def _base_path(name: str, config: Path) -> Path:
    """One element of `base:`: a file relative to the config naming it, a shipped overlay, or whatever
    --config accepts (a preset name, a file path)."""
    if (config.parent / name).is_file():
        return config.parent / name
    if name in overlay_names():
        return overlay_path(name)
    return resolve_config_path(name)


def _read_yaml(path: Path) -> dict:
    generated = _task_presets().get(path.stem) if path == _preset_path(path.stem) and not path.is_file() else None
    if generated is not None:
        return copy.deepcopy(generated)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{where}: malformed YAML: {getattr(exc, 'problem', exc)}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level, got {type(data).__name__}")
    return data


def _deep_merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_raw(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """`base:` names one config or a list of them, each loaded with its own bases and merged left to
    right: a later base wins over an earlier one, and this file's keys win over all of them."""
    chain += (path,)
    if path.resolve() in {p.resolve() for p in chain[:-1]}:
        raise ConfigError(f"{path}: 'base' chain loops back to itself: {' -> '.join(str(p) for p in chain)}")
    data = _read_yaml(path)
    bases = data.pop("base", None)
    if bases is None:
        return data
    if not isinstance(bases, (str, list)) or not bases:
        raise ConfigError(f"{path}: key 'base': expected a preset name, an overlay name, a file path or a "
                          f"non-empty list of them, got {bases!r}")
    merged: dict = {}
    for i, name in enumerate([bases] if isinstance(bases, str) else bases):
        key = "base" if isinstance(bases, str) else f"base[{i}]"
        if not isinstance(name, str):
            raise ConfigError(f"{path}: key '{key}': expected a preset name, an overlay name or a file path, "
                              f"got {name!r}")
        try:
            base_path = _base_path(name, path)
        except ConfigError as exc:
            raise ConfigError(f"{path}: key '{key}': {exc}") from None
        merged = _deep_merge(merged, _load_raw(base_path, chain))
    return _deep_merge(merged, data)


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. phases.target.lr=2e-5")
    key, _, value = text.partition("=")
    try:
        parsed = yaml.safe_load(value) if value != "" else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip().split("."), parsed


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    data = copy.deepcopy(data)
    for text in overrides or []:
        keys, value = parse_override(text)
        node = data
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[keys[-1]] = value
    return data


def add_overrides(parser, example: str = "phases.target.lr=2e-5") -> None:
    """--set KEY=VALUE, repeatable: a dotted override of the config (apply_overrides), for every
    command that reads one."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"dotted override of the config, e.g. {example} (repeatable)")


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _convert(value: Any, tp, where: str, source: str):
    if tp is MethodConfig:
        return _adversarial(value, where, source)
    origin = typing.get_origin(tp)
    if origin is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(value, args[0], where, source)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: key '{where}': expected a mapping, got {value!r}")
        return _build(tp, value, where, source)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: key '{where}': expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: key '{where}': expected a mapping, got {value!r}")
        _, item = typing.get_args(tp)
        return {str(k): _convert(v, item, f"{where}.{k}", source) for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:  # YAML 1.1 reads 1e-5 (no dot) as a string
            value = float(value)
        except ValueError:
            pass
    if tp is float and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{source}: key '{where}': expected a finite number, got {value}")
    if tp in (int, float, str, bool) and (not isinstance(value, tp) or (tp is int and isinstance(value, bool))):
        raise ConfigError(f"{source}: key '{where}': expected {_type_name(tp)}, got {value!r}")
    return value


def _build(cls, data: dict, prefix: str, source: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(f"{source}: unknown key '{where}'; expected one of: {', '.join(sorted(names))}")
    kwargs = {}
    for name in names:
        if name in data:
            where = f"{prefix}.{name}" if prefix else name
            kwargs[name] = _convert(data[name], hints[name], where, source)
    return cls(**kwargs)


def _adversarial(value, where: str, source: str) -> MethodConfig:
    """An `adversarial` section: the config class of its `method` (built in, or package.module:Class),
    from the method's own keys or from the old flat form (FlatAdversarialConfig)."""
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: key '{where}': expected a mapping, got {value!r}")
    method = value.get("method", "none")
    try:
        cls = strategy_class(method).Config
    except ConfigError as exc:
        raise ConfigError(f"{source}: key '{where}.method': {exc}") from None
    old = [key for key in value if key in LEGACY_KEYS or key in cls.LEGACY]
    if old:
        return _from_flat(cls, method, value, old[0], where, source)
    for key in value:
        if key not in cls.keys():
            raise ConfigError(f"{source}: unknown key '{where}.{key}'; {method} has the keys: {', '.join(cls.keys())}")
    return _build(cls, value, where, source)


def _from_flat(cls, method: str, value: dict, old: str, where: str, source: str) -> MethodConfig:
    """The old flat form (`old` is one of its keys here), read with its old types, defaults and errors,
    mapped to the method's keys: renamed by cls.LEGACY, carried over where the name is the same,
    dropped where the method never read the key (as the old form ignored it)."""
    flat_keys = {f.name for f in dataclasses.fields(FlatAdversarialConfig)}
    new = [k for k in value if k not in flat_keys]
    if new or method not in METHODS:
        why = f"the new key '{new[0]}' is here too" if new else f"{method} is not a built-in method"
        renames = "".join(f", {k} -> {v}" for k, v in cls.LEGACY.items())
        raise ConfigError(f"{source}: key '{where}.{old}': a key of the old flat form, but {why}: write the "
                          f"section in {method}'s keys ({', '.join(cls.keys())}); old -> new: the same names"
                          f"{renames} (docs/ADVERSARIAL.md, 'The old flat form')")
    flat = dataclasses.asdict(_build(FlatAdversarialConfig, value, where, source))
    settings = {cls.LEGACY.get(k, k): v for k, v in flat.items() if cls.LEGACY.get(k, k) in cls.keys()}
    for key, problem in cls.legacy_problems(flat):
        raise ConfigError(f"{source}: key '{where}.{key}': {problem}")
    return cls(**settings)


def _check_choice(value, key: str, where: str, source: str) -> None:
    if value not in CHOICES[key]:
        allowed = ", ".join(str(c) for c in CHOICES[key] if c is not None)
        raise ConfigError(f"{source}: key '{where}': {value!r} is not one of: {allowed}")


def _get(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _check_range(value, rule: str, where: str, source: str) -> None:
    """rule: "[lo, hi)" style interval (see schema.RANGES); None (an unset optional) passes."""
    if value is None:
        return
    lo, hi = (float(x) for x in rule[1:-1].split(","))
    below = value < lo if rule[0] == "[" else value <= lo
    above = value > hi if rule[-1] == "]" else value >= hi
    if below or above:
        raise ConfigError(f"{source}: key '{where}': {value} is out of range; expected a value in {rule}")


def validate(cfg: ExperimentConfig, source: str) -> None:
    from ..tasks import get_task

    def fail(key, msg):
        raise ConfigError(f"{source}: key '{key}': {msg}")

    if not cfg.name:
        fail("name", "missing required value (the run's name)")
    for key, rule in RANGES.items():
        if not key.startswith("phase."):
            _check_range(_get(cfg, key), rule, key, source)
    _check_choice(cfg.model.dtype, "model.dtype", "model.dtype", source)
    if not cfg.phases:
        fail("phases", "missing required value: at least one training phase")
    for pname, phase in cfg.phases.items():
        p = f"phases.{pname}"
        if not phase.tasks:
            fail(f"{p}.tasks", "missing required value: a non-empty list of task names")
        for i, task in enumerate(phase.tasks):
            try:
                spec = get_task(task)
            except ConfigError as exc:
                fail(f"{p}.tasks[{i}]", str(exc))
            if not spec.task_format.has_head:
                fail(f"{p}.tasks[{i}]", f"'{task}' is a retrieval task: it has no training data")
        _check_choice(phase.sampler, "phase.sampler", f"{p}.sampler", source)
        for key, rule in RANGES.items():
            if key.startswith("phase."):
                sub = key[len("phase."):]
                _check_range(_get(phase, sub), rule, f"{p}.{sub}", source)
        if phase.batch_size % phase.micro_batch_size:
            fail(f"{p}.batch_size", f"{phase.batch_size} is not a multiple of micro_batch_size {phase.micro_batch_size}")
        for key, problem in phase.adversarial.problems():
            fail(f"{p}.adversarial.{key}", problem)
    ev = cfg.evaluation
    _check_choice(ev.split, "evaluation.split", "evaluation.split", source)
    _check_choice(ev.pooling, "evaluation.pooling", "evaluation.pooling", source)
    for i, task in enumerate(ev.tasks or []):
        try:
            get_task(task)
        except ConfigError as exc:
            fail(f"evaluation.tasks[{i}]", str(exc))
    _check_choice(cfg.tracking.mode, "tracking.mode", "tracking.mode", source)
    from ..data.loading import source_problems

    for task, src in cfg.data.sources.items():
        try:
            get_task(task)
        except ConfigError as exc:
            fail(f"data.sources.{task}", str(exc))
        for key, problem in source_problems(task, src):
            fail(key, problem)


def normalize_config(data: dict, source: str) -> dict:
    """A config mapping with every default filled in (not validated): recorded configs of older
    runs compare with today's."""
    return to_dict(_build(ExperimentConfig, _expand_task_groups(copy.deepcopy(data)), "", source))


def config_from_dict(data: dict, source: str = "<config>") -> ExperimentConfig:
    cfg = _build(ExperimentConfig, _expand_task_groups(copy.deepcopy(data)), "", source)
    validate(cfg, source)
    return cfg


def load_config(name_or_path: str, overrides: list[str] | None = None) -> ExperimentConfig:
    path = resolve_config_path(name_or_path)
    data = apply_overrides(_load_raw(path), overrides or [])
    source = str(path) + (" (with --set overrides)" if overrides else "")
    return config_from_dict(data, source)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def dump_yaml(cfg) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)
