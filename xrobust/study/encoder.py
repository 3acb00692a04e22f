"""The base encoder as a run of its own: the retrieval scores of intermediate `none`.

X-STILTs scores BUCC and Tatoeba on the encoder without target training; for the `none` row that is
the pretrained encoder itself. It is written once in the layout of a phase's `model/` (HF encoder,
tokenizer, and an empty head set), then evaluated by the ordinary evaluation, so the run directory
holds predictions/, labels/ and results.json like any other and `xrobust eval --run` works on it.
"""

from __future__ import annotations

from pathlib import Path

ENCODER_DIR = "encoder"
PHASE = "pretrained"  # models.json: the phase model that retrieval tasks use


def export_encoder(name_or_path: str, tokenizer: str, out: Path, dtype: str = "fp32") -> None:
    import torch
    from transformers import AutoTokenizer

    from ..io import atomic_directory
    from ..modeling import XRobustModel, save_heads
    from ..training.engine import load_encoder

    encoder = load_encoder(name_or_path, torch.float32 if dtype in ("auto", "fp32") else getattr(torch, {
        "bf16": "bfloat16", "fp16": "float16"}[dtype]), None)
    model = XRobustModel(encoder, [], dropout=0.0)
    with atomic_directory(out) as tmp:
        encoder.save_pretrained(tmp, safe_serialization=True)
        save_heads(model, tmp)
        AutoTokenizer.from_pretrained(tokenizer).save_pretrained(tmp)


def evaluate_base_encoder(cfg) -> Path:
    """Export cfg.model.name_or_path (once) and evaluate cfg.evaluation.tasks on it; every rank takes part."""
    from .. import distributed as dist
    from ..config import dump_yaml
    from ..evaluation.run import evaluate_run
    from ..pipeline import run_root
    from ..training.rundir import RunModels, locked_run, write_description, write_models

    root = run_root(cfg)
    dist.init_distributed()
    model_dir = root / ENCODER_DIR
    models = RunModels(phases={PHASE: model_dir})
    if dist.is_main():
        root.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    with locked_run(root):  # one writer, as for `xrobust eval`
        if dist.is_main():
            write_description(root, dump_yaml(cfg), dist.world_size())
            if not (model_dir / "heads.json").is_file():
                export_encoder(cfg.model.name_or_path, cfg.model.tokenizer or cfg.model.name_or_path, model_dir,
                               cfg.model.dtype)
            write_models(root, models)
        dist.barrier()
        evaluate_run(cfg, root, tasks=cfg.evaluation.tasks, models=models)
    return root
