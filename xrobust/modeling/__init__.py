"""Encoder + per-task heads, and the embedding hook perturbations enter through."""

from .model import (
    DeltaInjector,
    HeadSpec,
    ModelOutput,
    XRobustModel,
    delta_shape,
    embedding_mask,
    head_spec_for,
    load_head_specs,
    load_heads_state,
    save_heads,
)

__all__ = ["DeltaInjector", "HeadSpec", "ModelOutput", "XRobustModel", "delta_shape", "embedding_mask",
           "head_spec_for", "load_head_specs", "load_heads_state", "save_heads"]
