"""Restore a finished run's last checkpoint into a fresh ZeRO-3 engine, built as the trainer builds it,
and report what tests/test_xlmr_large.py compares: the engine module's logits on fixed inputs, the
checkpoint load time, the consolidated export (time and files) and each rank's peak resident memory.

    torchrun --nproc_per_node 2 tests/scripts/large_engine_check.py --config C.yaml --phase P --run-dir R --out O
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--config", required=True)
parser.add_argument("--phase", required=True)
parser.add_argument("--run-dir", required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--local_rank", "--local-rank", type=int, default=None)
args = parser.parse_args()

from xrobust import distributed as dist  # noqa: E402
from xrobust.config import load_config  # noqa: E402
from xrobust.modeling import XRobustModel, load_head_specs, save_heads  # noqa: E402
from xrobust.training import checkpoint  # noqa: E402
from xrobust.training.engine import (ZeroInitContext, build_engine, consolidated_state_dict, load_encoder,  # noqa: E402
                                     resolve_ds_config, resolve_dtype)


def peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def timed(fn):
    dist.barrier()
    t0 = time.perf_counter()
    result = fn()
    dist.barrier()
    return result, time.perf_counter() - t0


dist.init_distributed()
cfg = load_config(args.config, [])
phase = cfg.phases[args.phase]
run_dir, out = Path(args.run_dir), Path(args.out)
dtype = resolve_dtype(cfg.model.dtype)
ds_config = resolve_ds_config(cfg.deepspeed, phase, dist.world_size(), dtype, args.phase)
zero_ctx = ZeroInitContext(ds_config)
torch.manual_seed(cfg.seed)
encoder = load_encoder(cfg.model.name_or_path, dtype, cfg.model.dropout, random_init=cfg.model.random_init)
specs = load_head_specs(run_dir / "model")
model = XRobustModel(encoder, specs, dropout=0.0)
engine, _, _ = build_engine(model, phase, ds_config, total_steps=phase.max_steps)

ckpt_root = run_dir / "checkpoints"
tag = checkpoint.latest(ckpt_root)
loop_state, load_s = timed(lambda: checkpoint.load(engine, ckpt_root, tag))

# fixed inputs: ids of the run's tokenizer range, one row padded (XLM-R pad id 1)
gen = torch.Generator().manual_seed(7)
input_ids = torch.randint(5, 400, (2, 12), generator=gen)
input_ids[:, 0] = 0
attention_mask = torch.ones_like(input_ids)
input_ids[1, 9:] = 1
attention_mask[1, 9:] = 0
engine.eval()
with torch.no_grad():
    logits = engine.module(head=specs[0].name, input_ids=input_ids, attention_mask=attention_mask).logits


def export():
    state = consolidated_state_dict(engine)
    if dist.is_main():
        enc = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
        heads = {k[len("heads."):]: v for k, v in state.items() if k.startswith("heads.")}
        (out / "export").mkdir(parents=True, exist_ok=True)
        engine.module.encoder.save_pretrained(out / "export", state_dict=enc, safe_serialization=True)
        save_heads(engine.module, out / "export", heads)


_, export_s = timed(export)
peaks = dist.gather_objects(peak_rss_bytes())
if dist.is_main():
    torch.save({"input_ids": input_ids, "attention_mask": attention_mask, "logits": logits,
                "head": specs[0].name}, out / "engine_logits.pt")
    (out / "engine_check.json").write_text(json.dumps({
        "tag": tag, "step": loop_state["step"], "load_s": load_s, "export_s": export_s,
        "peak_rss_bytes_per_rank": peaks}))
zero_ctx.close()
