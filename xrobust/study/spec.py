"""A study config: a base experiment config plus a `study:` section that names the axes.

    base: multitask                  # any experiment config (preset or file); keys here override it
    study:
      name: advxlt-v1
      intermediate: [none, mnli, squad, multitask]   # none: no intermediate phase; multitask: the
                                                     # base config's intermediate tasks together
      method: [none, freelb, smart]                  # adversarial methods (methods.py: method -> config)
      seeds: [1, 2, 3]
      targets: [xnli, pawsx, udpos, panx, xquad, mlqa, tydiqa, bucc, tatoeba]
      baseline: {intermediate: none, method: none}
      method_phases: [intermediate]                  # phases a method applies to (default: all)
      method_settings: {freelb: {start_step: 0}}     # adversarial keys over the method's defaults
      throughput: {tokens_per_s: 30000, gpus: 8}     # for the cost estimate (or a bench train JSON)
      train_examples: {mytask: 12000}                # training-set sizes the estimate does not know
      slurm: {PARTITION: gpu, GPUS_PER_NODE: 8}      # sbatch template variables of every job
      bootstrap: {samples: 10000, seed: 0, confidence: 0.95}
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..config import load_config
from ..config.loader import resolve_config_path, study_names, study_path
from ..config.schema import CHOICES, ExperimentConfig
from ..errors import ConfigError

NONE = "none"  # no intermediate phase / plain training
MULTITASK = "multitask"  # the base config's intermediate tasks, trained together
KEYS = ("name", "intermediate", "method", "seeds", "targets", "baseline", "method_phases", "method_settings",
        "intermediate_phase", "throughput", "train_examples", "slurm", "bootstrap")
BOOTSTRAP_DEFAULTS = {"samples": 10000, "seed": 0, "confidence": 0.95}


@dataclass
class Study:
    name: str
    source: Path  # the study file
    base: ExperimentConfig  # the study file without its `study:` section, resolved
    intermediate: list[str]
    methods: list[str]
    seeds: list[int]
    targets: list[str]
    baseline: tuple[str, str]  # (intermediate, method)
    intermediate_phase: str
    method_phases: list[str]
    method_settings: dict[str, dict] = field(default_factory=dict)
    throughput: dict | str | None = None
    train_examples: dict[str, int] = field(default_factory=dict)
    slurm: dict[str, str] = field(default_factory=dict)
    bootstrap: dict = field(default_factory=lambda: dict(BOOTSTRAP_DEFAULTS))

    @property
    def root(self) -> Path:
        """The study directory: every run, config, job script and log of the study lies under it."""
        return Path(self.base.output_dir).resolve() / self.name

    @property
    def cells(self) -> list[tuple[str, str]]:
        return [(i, m) for i in self.intermediate for m in self.methods]

    @property
    def target_phases(self) -> list[str]:
        return [p for p in self.base.phases if p != self.intermediate_phase]


def _absolute_base(base, folder: Path):
    """`base:` entries relative to the study file, made absolute (preset names stay names)."""
    if isinstance(base, list):
        return [_absolute_base(b, folder) for b in base]
    if isinstance(base, str) and (folder / base).is_file():
        return str((folder / base).resolve())
    return base


def _load_base(path: Path, raw: dict, overrides: list[str]) -> ExperimentConfig:
    """The experiment part of the study file through the ordinary loader (so `base:` works as in any config)."""
    raw = dict(raw)
    if "base" in raw:
        raw["base"] = _absolute_base(raw["base"], path.parent)
    raw.setdefault("name", "study")
    with tempfile.TemporaryDirectory(prefix="xrobust-study-") as tmp:
        staged = Path(tmp) / path.name
        staged.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        try:
            return load_config(str(staged), overrides)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(str(staged), str(path))) from None


def _fail(path: Path, key: str, msg: str):
    raise ConfigError(f"{path}: key 'study.{key}': {msg}")


def _str_list(section: dict, key: str, path: Path, default=None) -> list[str]:
    value = section.get(key, default)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        _fail(path, key, f"expected a non-empty list of names, got {value!r}")
    if len(set(value)) != len(value):
        _fail(path, key, f"repeated values in {value}")
    return list(value)


def load_study(name_or_path: str, overrides: list[str] | None = None) -> Study:
    """Read and check a study config (a file, or a shipped study such as `demo_study`)."""
    from ..tasks import get_task

    path = study_path(name_or_path) if name_or_path in study_names() else resolve_config_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("study"), dict):
        raise ConfigError(f"{path}: a study config needs a `study:` section (name, intermediate, method, "
                          "seeds, ...) beside its `base:` experiment config")
    section = raw.pop("study")
    unknown = sorted(set(section) - set(KEYS))
    if unknown:
        _fail(path, unknown[0], f"unknown key; expected one of: {', '.join(KEYS)}")
    base = _load_base(path, raw, overrides or [])

    name = section.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name or ""):
        _fail(path, "name", f"expected a name of letters, digits, '_', '.' or '-', got {name!r}")
    inter_phase = section.get("intermediate_phase") or ("intermediate" if "intermediate" in base.phases
                                                       else next(iter(base.phases)))
    if inter_phase not in base.phases:
        _fail(path, "intermediate_phase", f"'{inter_phase}' is not a phase of the base config "
                                          f"({', '.join(base.phases)})")
    intermediate = _str_list(section, "intermediate", path)
    for value in intermediate:
        if value == MULTITASK and not base.phases[inter_phase].tasks:
            _fail(path, "intermediate", f"'multitask' trains the base config's phases.{inter_phase}.tasks, "
                                        "which is empty")
        if value not in (NONE, MULTITASK):
            try:
                spec = get_task(value)
            except ConfigError as exc:
                _fail(path, "intermediate", f"{exc} (or 'none' / 'multitask')")
            if not spec.task_format.has_head:
                _fail(path, "intermediate", f"'{value}' is a retrieval task: it has no training data")
    methods = _str_list(section, "method", path, default=[NONE])
    for value in methods:
        if value not in CHOICES["adversarial.method"]:
            _fail(path, "method", f"{value!r} is not one of: {', '.join(CHOICES['adversarial.method'])}")
    seeds = section.get("seeds")
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           for s in seeds) or len(set(seeds)) != len(seeds):
        _fail(path, "seeds", f"expected a non-empty list of distinct integers, got {seeds!r}")
    default_targets = base.evaluation.tasks or list(base.phases[list(base.phases)[-1]].tasks)
    targets = _str_list(section, "targets", path, default=default_targets)
    for value in targets:
        try:
            get_task(value)
        except ConfigError as exc:
            _fail(path, "targets", str(exc))
    baseline = section.get("baseline") or {}
    if not isinstance(baseline, dict) or set(baseline) - {"intermediate", "method"}:
        _fail(path, "baseline", f"expected {{intermediate: ..., method: ...}}, got {baseline!r}")
    pair = (baseline.get("intermediate", NONE if NONE in intermediate else intermediate[0]),
            baseline.get("method", NONE if NONE in methods else methods[0]))
    if pair[0] not in intermediate or pair[1] not in methods:
        _fail(path, "baseline", f"{{intermediate: {pair[0]}, method: {pair[1]}}} is not a cell of the grid "
                                f"(intermediate {intermediate}, method {methods})")
    method_phases = section.get("method_phases", list(base.phases))
    if not isinstance(method_phases, list) or not all(p in base.phases for p in method_phases):
        _fail(path, "method_phases", f"expected a list of phases of the base config ({', '.join(base.phases)}), "
                                     f"got {method_phases!r}")
    settings = section.get("method_settings") or {}
    if not isinstance(settings, dict) or not all(isinstance(v, dict) for v in settings.values()):
        _fail(path, "method_settings", f"expected {{method: {{adversarial key: value}}}}, got {settings!r}")
    for method in settings:
        if method not in methods:
            _fail(path, "method_settings", f"'{method}' is not on the method axis {methods}")
    throughput = section.get("throughput")
    if throughput is not None and not isinstance(throughput, (dict, str)):
        _fail(path, "throughput", "expected {tokens_per_s: N, gpus: N} or the path of a `xrobust bench train "
                                  f"--json` file, got {throughput!r}")
    train_examples = section.get("train_examples") or {}
    if not isinstance(train_examples, dict) or not all(isinstance(v, int) and v > 0 for v in train_examples.values()):
        _fail(path, "train_examples", f"expected {{task: number of English training examples}}, got {train_examples!r}")
    slurm = section.get("slurm") or {}
    if not isinstance(slurm, dict):
        _fail(path, "slurm", f"expected {{VARIABLE: value}}, got {slurm!r}")
    bootstrap = {**BOOTSTRAP_DEFAULTS, **(section.get("bootstrap") or {})}
    if set(bootstrap) != set(BOOTSTRAP_DEFAULTS) or not isinstance(bootstrap["samples"], int) \
            or bootstrap["samples"] < 100 or not 0 < float(bootstrap["confidence"]) < 1:
        _fail(path, "bootstrap", f"expected samples (>= 100), seed and confidence (0..1), got {bootstrap!r}")
    return Study(name=name, source=path, base=base, intermediate=intermediate, methods=methods,
                 seeds=list(seeds), targets=targets, baseline=pair, intermediate_phase=inter_phase,
                 method_phases=list(method_phases), method_settings=settings, throughput=throughput,
                 train_examples=train_examples, slurm={str(k): str(v) for k, v in slurm.items()}, bootstrap=bootstrap)
