"""The experiment schema: every key a run can set, its type and its default.

A run is fully described by its resolved config (saved as config.yaml in every run dir).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ..adversarial.strategies import METHODS, MethodConfig


@dataclass
class ModelConfig:
    name_or_path: str = "xlm-roberta-large"  # hub id or local HF directory
    tokenizer: Optional[str] = None  # defaults to name_or_path
    dtype: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16
    dropout: Optional[float] = None  # when set, every dropout probability of the encoder's config
    # (hidden and attention for BERT and XLM-R; xrobust.modeling.encoder.dropout_keys)
    random_init: bool = False  # true: build the encoder from name_or_path's config.json with random
    # (seeded) weights; otherwise a directory without weights is an error


@dataclass
class FlatAdversarialConfig:
    """The old flat form of `phases.<phase>.adversarial`, whose knobs changed meaning per method.
    Still read (config files and recorded run configs with step_size, init_mag, max_norm, weight or
    another name the method renamed) and mapped to the method's own config by its `LEGACY` table
    (xrobust.config.loader, docs/ADVERSARIAL.md "The old flat form"). Never written."""

    method: str = "none"  # none | fgm | pgd | freelb | smart | r3f | rs-rp | rs-da
    steps: int = 2  # K ascent steps where the method has them
    step_size: float = 0.1
    init_mag: float = 0.1
    max_norm: float = 0.3  # projection radius; 0 = none
    norm: str = "l2"  # l2 | linf
    start_step: int = 0  # plain training before this optimizer step
    weight: float = 1.0  # lambda for smart / r3f
    noise: str = "uniform"  # r3f / rs-rp noise: uniform | normal
    neighbours: Optional[str] = None  # rs-da: synonym neighbours file
    copies: int = 1  # rs-da: augmented copies per example
    backend: str = "auto"  # perturbation kernels: auto | eager | compiled | triton
    ascent_divergence: str = "symmetric"  # smart ascent objective: symmetric | one_sided | stable_kl
    reuse_dropout_masks: bool = True  # freelb: the same dropout masks in all K passes (reference code)
    coalesce: bool = True  # one gradient reduction for a micro-step's K backwards; under ZeRO-3 each
    # rank then holds the full (unpartitioned) gradients until the last backward: false saves that memory


@dataclass
class NonFiniteConfig:
    """How many non-finite optimizer steps (a NaN/inf loss or gradient, or a step DeepSpeed skips)
    a phase tolerates before it stops with an error."""
    max_consecutive: int = 5  # in a row; 0 = no limit
    max_fraction: float = 0.05  # of the phase's optimizer steps, in total; 1 = no limit


@dataclass
class PhaseConfig:
    tasks: list[str] = field(default_factory=list)
    multitask: bool = True  # false: one run per task (X-STILTs target phase)
    init_encoder: Optional[str] = None  # HF dir; default: previous phase's encoder, else model
    sampler: str = "proportional"  # uniform | proportional | capped_proportional | temperature
    temperature: float = 2.0
    cap: int = 100000
    lr: float = 1e-5
    weight_decay: float = 0.01
    adam_eps: float = 1e-8
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    batch_size: int = 32  # effective batch per optimizer step, all ranks together
    micro_batch_size: int = 8  # per rank per forward
    epochs: float = 3.0
    max_steps: Optional[int] = None  # overrides epochs when set
    max_length: Optional[int] = None  # default: the task's (128 classification/tagging, 384 QA)
    doc_stride: int = 128
    max_query_length: int = 64
    eval_every: int = 0  # optimizer steps between English dev evaluations; 0 = end of phase only
    patience: int = 0  # evaluations without improvement before stopping; 0 = never stop early
    save_every: int = 200  # optimizer steps between checkpoints
    keep_checkpoints: int = 2
    max_dev_examples: Optional[int] = None  # cap on English dev examples per task for selection
    freeze_embeddings: bool = False  # keep the word embeddings fixed: English-only updates would pull
    # English vectors away from their translations
    # the method's own config (xrobust.adversarial.strategies: FreeLBConfig, SMARTConfig, ...), chosen by
    # its `method` key; docs/ADVERSARIAL.md lists every method's keys
    adversarial: MethodConfig = field(default_factory=MethodConfig)
    nonfinite: NonFiniteConfig = field(default_factory=NonFiniteConfig)


@dataclass
class EvaluationConfig:
    tasks: Optional[list[str]] = None  # default: the last phase's tasks
    split: str = "test"  # dev | test
    languages: Optional[list[str]] = None  # default: every language of each task
    batch_size: int = 32
    # retrieval: hidden state to pool (0 = embeddings); unset: 14/24 of the encoder's depth, i.e.
    # layer 14 of XLM-R Large as X-STILTs and XTREME pool (xrobust.evaluation.retrieval.default_layer)
    layer: Optional[int] = None
    pooling: str = "mean"  # retrieval: mean (special tokens included) | cls
    max_examples: Optional[int] = None  # per language, for quick runs


@dataclass
class SourceConfig:
    """data.sources.<task>: local files instead of the hub (docs/TASKS.md), or a hub revision.
    Checked by xrobust.data.loading.source_problems."""

    # file template ({split}, {lang}, {task}, {root}), or a mapping split -> template
    path: Any = None
    format: Optional[str] = None  # json | jsonl | parquet | tsv | csv | conll | conllu | squad | text
    columns: dict[str, str] = field(default_factory=dict)  # canonical field -> file column
    adapter: Optional[str] = None  # read a hub layout: "hub" (the task's adapter) or an adapter name
    header: bool = True  # csv/tsv: the first row names the columns (else "0", "1", ...)
    field: Optional[str] = None  # json: the records are under this top-level key
    target_path: Any = None  # retrieval: the English side (template or split -> template)
    gold_path: Any = None  # retrieval: "src_id<TAB>tgt_id" gold pairs (template or split -> template)
    revision: Optional[str] = None  # no path: load the hub source at this commit, branch or ref


@dataclass
class DataConfig:
    root: Optional[str] = None  # local root for the demo tasks
    cache_dir: str = "~/.cache/xrobust/features"
    sources: dict[str, SourceConfig] = field(default_factory=dict)
    # the download/ folder of XTREME's scripts/download_data.sh: every split it holds is read from it
    xtreme_dir: Optional[str] = None


@dataclass
class TrackingConfig:
    mode: str = "disabled"  # online | offline | disabled
    project: str = "xrobust"
    entity: Optional[str] = None
    group: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    run_id: Optional[str] = None  # default: derived from the Slurm job, stable across requeues
    log_artifact: bool = False
    init_timeout: float = 30.0


@dataclass
class ExperimentConfig:
    name: str = ""
    output_dir: str = "runs"
    seed: int = 42
    deepspeed: str = "zero3"  # a name in ds_configs/ or a path to a DeepSpeed JSON
    model: ModelConfig = field(default_factory=ModelConfig)
    phases: dict[str, PhaseConfig] = field(default_factory=dict)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


CHOICES = {
    "model.dtype": ("auto", "fp32", "bf16", "fp16"),
    # owned by the strategy classes; each method's own keys are checked by its config (MethodConfig)
    "adversarial.method": METHODS,
    "phase.sampler": ("uniform", "proportional", "capped_proportional", "temperature"),
    "evaluation.split": ("dev", "test"),
    "evaluation.pooling": ("mean", "cls"),
    "tracking.mode": ("online", "offline", "disabled"),
}

# Numeric ranges, checked at load after every value was found finite. "(" / ")" exclude the bound,
# "[" / "]" include it. Keys are dotted paths from the top level; "phase." stands for every phase.
RANGES = {
    "seed": "[0, 4294967295]",  # numpy's seed range
    "model.dropout": "[0, 1)",
    "phase.lr": "(0, inf)",
    "phase.weight_decay": "[0, inf)",
    "phase.adam_eps": "(0, inf)",
    "phase.warmup_ratio": "[0, 1)",
    "phase.max_grad_norm": "[0, inf)",  # 0 = no clipping
    "phase.temperature": "(0, inf)",
    "phase.cap": "[1, inf)",
    "phase.batch_size": "[1, inf)",
    "phase.micro_batch_size": "[1, inf)",
    "phase.epochs": "(0, inf)",
    "phase.max_steps": "[1, inf)",
    "phase.max_length": "[4, inf)",
    "phase.doc_stride": "[1, inf)",
    "phase.max_query_length": "[1, inf)",
    "phase.eval_every": "[0, inf)",
    "phase.patience": "[0, inf)",
    "phase.save_every": "[0, inf)",
    "phase.keep_checkpoints": "[0, inf)",  # 0 = keep every checkpoint
    "phase.max_dev_examples": "[1, inf)",
    "phase.nonfinite.max_consecutive": "[0, inf)",
    "phase.nonfinite.max_fraction": "[0, 1]",
    # phase.adversarial: each method's config checks its own values (MethodConfig.problems)
    "evaluation.batch_size": "[1, inf)",
    "evaluation.layer": "[0, inf)",  # the encoder's depth is checked before training
    "evaluation.max_examples": "[1, inf)",
    "tracking.init_timeout": "(0, inf)",
}
