"""Typed, validated experiment configs from YAML, with dotted --set overrides and shipped presets."""

from .loader import add_overrides, apply_overrides, config_from_dict, dump_yaml, load_config, preset_names, resolve_config_path, to_dict
from .schema import (
    DataConfig,
    EvaluationConfig,
    ExperimentConfig,
    ModelConfig,
    PhaseConfig,
    SourceConfig,
    TrackingConfig,
)

__all__ = [
    "DataConfig", "EvaluationConfig", "ExperimentConfig", "ModelConfig", "PhaseConfig",
    "SourceConfig", "TrackingConfig", "add_overrides", "apply_overrides", "config_from_dict", "dump_yaml", "load_config",
    "preset_names", "resolve_config_path", "to_dict",
]
