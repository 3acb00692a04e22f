"""The DeepSpeed engine every run uses: config resolution, model construction, optimizer, schedule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..errors import CheckpointError, ConfigError
from ..modeling.encoder import encoder_kwargs, set_dropout
from ..shipped import shipped_folder
from .. import distributed as dist
from ..host_memory import configure_for as configure_host_memory


def resolve_dtype(name: str) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def ds_config_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".json":
        if not path.is_file():
            raise ConfigError(f"key 'deepspeed': {path} not found")
        return path
    folder = shipped_folder("ds_configs")
    path = folder / f"{name_or_path}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.json")))
        raise ConfigError(f"key 'deepspeed': no DeepSpeed config named '{name_or_path}' in {folder} (known: {known})")
    return path


def gradient_accumulation(phase, world: int, phase_key: str = "phase") -> int:
    per_step = phase.micro_batch_size * world
    if phase.batch_size % per_step:
        raise ConfigError(f"key 'phases.{phase_key}.batch_size': {phase.batch_size} is not a multiple of "
                          f"micro_batch_size x world size = {phase.micro_batch_size} x {world}")
    return phase.batch_size // per_step


def resolve_ds_config(name_or_path: str, phase, world: int, dtype: torch.dtype, phase_key: str = "phase") -> dict:
    """Fill the JSON's "auto" values from the phase config: one source of truth for batch sizes."""
    path = ds_config_path(name_or_path)
    try:
        cfg = json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{path}: invalid JSON ({exc})") from None
    filled = {
        "train_batch_size": phase.batch_size,
        "train_micro_batch_size_per_gpu": phase.micro_batch_size,
        "gradient_accumulation_steps": gradient_accumulation(phase, world, phase_key),
        "gradient_clipping": phase.max_grad_norm,
    }
    for key, value in filled.items():
        if cfg.get(key, "auto") == "auto":
            cfg[key] = value
    for key, wanted in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        section = cfg.setdefault(key, {})
        if section.get("enabled", "auto") == "auto" or dtype == torch.float32:
            section["enabled"] = dtype == wanted  # the run's dtype decides; fp32 forces both off
    return cfg


def zero_stage(ds_config: dict) -> int:
    return int(ds_config.get("zero_optimization", {}).get("stage", 0))


class ZeroInitContext:
    """While alive, from_pretrained/from_config partition weights at load under ZeRO-3."""

    def __init__(self, ds_config: dict):
        self._hf = None
        if zero_stage(ds_config) == 3:
            from transformers.integrations import HfDeepSpeedConfig

            self._hf = HfDeepSpeedConfig(ds_config)

    def close(self) -> None:
        if self._hf is not None:
            from transformers.integrations.deepspeed import unset_hf_deepspeed_config

            unset_hf_deepspeed_config()
            self._hf = None


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def load_encoder(path: str, dtype: torch.dtype, dropout: float | None, *, random_init: bool = False,
                 missing_hint: str = "set model.random_init: true to build an encoder with random weights from "
                                     "its config.json on purpose"):
    """An HF encoder (any AutoModel architecture) from a local directory or a hub id. A directory
    without weights is an error unless random_init asks for an encoder with random (caller-seeded)
    weights from its config. `dropout` sets every dropout probability the config names."""
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the phase's own bar shows progress
    # also for library callers that did not start through xrobust.cli (idempotent)
    configure_host_memory(dist.device().type)
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model '{path}': cannot load its config ({str(exc).strip().splitlines()[0]}); "
                          "give a local HF directory or a cached hub id") from None
    if dropout is not None:
        set_dropout(config, dropout)  # every dropout probability the architecture names
    kwargs = encoder_kwargs(config)  # only what this architecture's constructor takes
    if Path(path).is_dir() and not any((Path(path) / f).exists() for f in WEIGHT_FILES):
        if random_init:
            return AutoModel.from_config(config, dtype=dtype, **kwargs)
        raise CheckpointError(f"{path}: no encoder weights (none of {', '.join(WEIGHT_FILES)}); a model directory "
                              f"without weights is never used as a random initialisation ({missing_hint})")
    try:
        return AutoModel.from_pretrained(path, config=config, dtype=dtype, **kwargs)
    except (OSError, ValueError, RuntimeError) as exc:  # a truncated or foreign weights file
        first = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(f"{path}: cannot load the encoder weights ({type(exc).__name__}: {first})") from None


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and LayerNorm weights."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lname = name.lower()
        (no_decay if lname.endswith("bias") or "layernorm" in lname or "layer_norm" in lname else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def linear_schedule(optimizer, warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_engine(model, phase, ds_config: dict, total_steps: int):
    import deepspeed

    optimizer = torch.optim.AdamW(param_groups(model, phase.weight_decay), lr=phase.lr, eps=phase.adam_eps,
                                  betas=(0.9, 0.999))
    warmup = int(math.ceil(phase.warmup_ratio * total_steps))
    scheduler = linear_schedule(optimizer, warmup, total_steps)
    engine, optimizer, _, scheduler = deepspeed.initialize(model=model, optimizer=optimizer,
                                                           lr_scheduler=scheduler, config=ds_config)
    share_fp32_master(optimizer)
    return engine, optimizer, scheduler


def share_fp32_master(optimizer) -> int:
    """Under ZeRO-3 with fp32 parameters, let the optimizer update the parameter partitions in place
    instead of a second fp32 copy of them; returns the bytes freed.

    DeepSpeed 0.19.8 means to alias the fp32 master partition to the parameter partition when both
    are fp32 on the same device, but it compares a torch.device with a device-name string, which is
    never equal, and clones instead: one more copy of the parameters per rank (2.2 GB for XLM-R
    Large on one rank). DeepSpeed's own step and checkpoint code handle the aliased case (its copy
    from master to parameters becomes a no-op). bf16/fp16 training and optimizer offload keep their
    separate fp32 master, as they must.
    """
    lp_groups = getattr(optimizer, "fp16_partitioned_groups_flat", None)
    master_groups = getattr(optimizer, "fp32_partitioned_groups_flat", None)
    if not lp_groups or not master_groups or getattr(optimizer, "offload_optimizer", False):
        return 0
    freed = 0
    for lp, master in zip(lp_groups, master_groups):
        if lp is None or lp.dtype != master.dtype or lp.device != master.device or lp.shape != master.shape:
            continue
        if master.untyped_storage().data_ptr() == lp.untyped_storage().data_ptr():
            continue
        freed += master.numel() * master.element_size()
        master.data = lp.data  # same tensor object: the optimizer's state and groups still refer to it
    return freed


def consolidated_state_dict(engine) -> dict | None:
    """Full fp32/16-bit weights on rank 0 (None elsewhere); every rank must call it under ZeRO-3."""
    if zero_stage(engine.config if isinstance(engine.config, dict) else engine._config._param_dict) == 3:
        state = engine._zero3_consolidated_16bit_state_dict()
        return state if dist.is_main() else None
    return {k: v.detach().cpu().clone() for k, v in engine.module.state_dict().items()} if dist.is_main() else None
