"""Zero-shot transfer check for the demo world, independent of the training stack.

    python -m xrobust.data.synthetic_check --root /tmp/demo-world

Builds the world, runs `pretrain_mlm`, fine-tunes a RoBERTa-style classification head (dense +
tanh on <s>) and the encoder on English demo_xnli train with plain torch, and prints dev accuracy
per language. Chance is 1/3; a language near chance means the encoder did not align it.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path


def _read(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def finetune_zero_shot(encoder_dir, world: dict, *, task: str = "demo_xnli", epochs: int = 3, lr: float = 1e-3,
                       batch_size: int = 32, seed: int = 0, split: str = "dev") -> dict:
    """Fine-tune on English `task` train; return {"accuracy": {lang: acc}, "seconds", "cpu_seconds", "steps"}."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(str(encoder_dir))
    enc = AutoModel.from_pretrained(str(encoder_dir))
    labels = world["tasks"][task]["labels"]
    d = enc.config.hidden_size
    head = torch.nn.Sequential(torch.nn.Linear(d, d), torch.nn.Tanh(), torch.nn.Linear(d, len(labels)))

    def batch(rows):
        pair = [r["text_b"] for r in rows] if rows[0]["text_b"] is not None else None
        x = tok([r["text_a"] for r in rows], pair, padding=True, truncation=True, return_tensors="pt")
        return x, torch.tensor([labels.index(r["label"]) for r in rows])

    train = _read(Path(world["data_root"]) / task / "train-en.jsonl")
    opt = torch.optim.AdamW(list(enc.parameters()) + list(head.parameters()), lr=lr)
    total = epochs * ((len(train) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / total))
    order, rng, steps = list(range(len(train))), random.Random(seed), 0
    t0, c0 = time.perf_counter(), time.process_time()
    enc.train()
    for _ in range(epochs):
        rng.shuffle(order)
        for i in range(0, len(order), batch_size):
            x, y = batch([train[j] for j in order[i:i + batch_size]])
            loss = torch.nn.functional.cross_entropy(head(enc(**x).last_hidden_state[:, 0]), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            steps += 1
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    enc.eval()
    acc = {}
    with torch.no_grad():
        for lang in world["tasks"][task]["splits"][split]:
            x, y = batch(_read(Path(world["data_root"]) / task / f"{split}-{lang}.jsonl"))
            acc[lang] = round((head(enc(**x).last_hidden_state[:, 0]).argmax(-1) == y).float().mean().item(), 3)
    return {"accuracy": acc, "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "steps": steps}


def main(argv=None) -> None:
    from xrobust.data.synthetic import build_world
    from xrobust.modeling.pretrain import pretrain_mlm

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-3)
    args = p.parse_args(argv)
    world = build_world(args.root, seed=args.seed)
    enc = pretrain_mlm(world, args.root / "mlm-check", seed=args.seed)
    log = json.loads((enc / "pretrain_log.json").read_text(encoding="utf-8"))
    print(f"mlm: {log['steps']} steps, {log['seconds']} s wall, {log['cpu_seconds']} s cpu, loss {log['final_loss']}")
    print(json.dumps(finetune_zero_shot(enc, world, epochs=args.epochs, lr=args.lr, seed=args.seed)))


if __name__ == "__main__":
    main()
