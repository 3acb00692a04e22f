"""Encoder + per-task heads."""

from .model import HeadSpec, ModelOutput, XRobustModel, head_spec_for, load_head_specs, load_heads_state, save_heads

__all__ = ["HeadSpec", "ModelOutput", "XRobustModel", "head_spec_for", "load_head_specs", "load_heads_state", "save_heads"]
