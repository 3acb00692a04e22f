"""Short multilingual masked-LM pretraining of the demo world's tiny XLM-R encoder.

Plain single-process torch (no DeepSpeed): it runs once before the X-STILTs phases and takes
well under a minute on two CPU cores. Parallel pairs from the corpus are fed as one XLM-R pair
input (<s> a </s></s> b </s>), so predicting a masked word can use its translation: that, and
the code-switched sentences, are what align the four lexicons in the encoder.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from pathlib import Path

import torch

from xrobust.errors import DataError
from xrobust.io import atomic_directory, atomic_write_json
from xrobust.tasks.featurizers import IGNORE_INDEX


def _load_corpus(path: Path, tokenizer, max_length: int) -> list[list[int]]:
    if not path.exists():
        raise DataError(f"pretrain_mlm: corpus {path} not found; expected the file build_world writes")
    a, b = [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            try:
                row = json.loads(line)
                a.append(row["text"])
                b.append(row.get("text_pair"))
            except (ValueError, KeyError) as e:
                raise DataError(f"{path}:{lineno}: expected a JSON object with 'text' ({e})") from None
    singles = [i for i, t in enumerate(b) if not t]
    pairs = [i for i, t in enumerate(b) if t]
    ids: list[list[int] | None] = [None] * len(a)
    if singles:
        enc = tokenizer([a[i] for i in singles], truncation=True, max_length=max_length)["input_ids"]
        for i, e in zip(singles, enc):
            ids[i] = e
    if pairs:
        enc = tokenizer([a[i] for i in pairs], [b[i] for i in pairs], truncation=True, max_length=max_length)["input_ids"]
        for i, e in zip(pairs, enc):
            ids[i] = e
    return ids  # type: ignore[return-value]


def mask_tokens(input_ids: torch.Tensor, special: torch.Tensor, mask_id: int, vocab_size: int,
                generator: torch.Generator, prob: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: `prob` of the non-special tokens are targets; of those 80% -> <mask>,
    10% -> a random token, 10% unchanged. Returns (inputs, labels IGNORE_INDEX elsewhere)."""
    labels = input_ids.clone()
    chosen = (torch.rand(input_ids.shape, generator=generator) < prob) & ~special
    labels[~chosen] = IGNORE_INDEX
    inputs = input_ids.clone()
    r = torch.rand(input_ids.shape, generator=generator)
    inputs[chosen & (r < 0.8)] = mask_id
    rand_pos = chosen & (r >= 0.8) & (r < 0.9)
    inputs[rand_pos] = torch.randint(vocab_size, input_ids.shape, generator=generator)[rand_pos]
    return inputs, labels


def pretrain_mlm(world: dict, out_dir, *, steps: int = 1100, batch_size: int = 32, lr: float = 3e-3,
                 seed: int = 0, log_every: int = 50) -> Path:
    """Masked-LM pretraining on `world["corpus"]`; saves the base encoder and tokenizer at `out_dir`.

    `AutoModel.from_pretrained(out_dir)` and `AutoTokenizer.from_pretrained(out_dir)` load the
    result. Deterministic for a given seed (CPU). Also writes `pretrain_log.json` (losses, time).
    Runs on one intra-op thread: the model is so small that a second thread mostly adds
    synchronisation, about doubling CPU time (and it is far slower on a loaded machine).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _pretrain(world, out_dir, steps=steps, batch_size=batch_size, lr=lr, seed=seed, log_every=log_every)
    finally:
        torch.set_num_threads(threads)


def _pretrain(world: dict, out_dir, *, steps: int, batch_size: int, lr: float, seed: int, log_every: int) -> Path:
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaForMaskedLM, XLMRobertaModel

    if steps < 1 or batch_size < 1 or not lr > 0:
        raise DataError(f"pretrain_mlm: steps={steps}, batch_size={batch_size}, lr={lr}; expected positive values")
    tok_dir, cfg_dir = Path(world["tokenizer_dir"]), Path(world["model_config_dir"])
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    config = XLMRobertaConfig.from_pretrained(str(cfg_dir))
    max_length = config.max_position_embeddings - config.pad_token_id - 1
    data = _load_corpus(Path(world["corpus"]), tokenizer, max_length)

    random.seed(seed)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = XLMRobertaForMaskedLM(config)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embeddings" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embeddings" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.98), eps=1e-6)
    warmup = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    pad_id, mask_id = config.pad_token_id, tokenizer.mask_token_id

    order: list[int] = []
    losses, t0, c0 = [], time.perf_counter(), time.process_time()
    bar = tqdm(range(steps), desc="mlm pretrain", unit="step", mininterval=1.0)
    running = None
    for step in bar:
        if len(order) < batch_size:  # reshuffle once the epoch is used up
            order += torch.randperm(len(data), generator=gen).tolist()
        idx, order = order[:batch_size], order[batch_size:]
        seqs = [data[i] for i in idx]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = torch.tensor(s)
        attn = (ids != pad_id).long()
        inputs, labels = mask_tokens(ids, torch.isin(ids, special_ids), mask_id, config.vocab_size, gen)
        loss = model(input_ids=inputs, attention_mask=attn, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        value = loss.item()
        if math.isfinite(value):
            running = value if running is None else 0.95 * running + 0.05 * value
        else:
            raise DataError(f"pretrain_mlm: loss became {value} at step {step}; lower lr (now {lr})")
        if step % log_every == 0 or step == steps - 1:
            losses.append({"step": step, "loss": round(running, 4)})
            bar.set_postfix(loss=f"{running:.3f}")
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0

    # Save the base encoder (with XLM-R's pooler, seeded, so AutoModel loads without missing
    # weights) and the tokenizer; files appear in out_dir only once complete.
    torch.manual_seed(seed)
    base = XLMRobertaModel(config)
    missing, unexpected = base.load_state_dict(model.roberta.state_dict(), strict=False)
    if unexpected or any(not k.startswith("pooler.") for k in missing):
        raise DataError(f"pretrain_mlm: encoder weights do not match the config: missing={missing} unexpected={unexpected}")
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:  # complete or absent: `xrobust demo` reuses it when present
        base.save_pretrained(str(tmp))
        for f in sorted(tok_dir.iterdir()):
            if f.is_file():
                (tmp / f.name).write_bytes(f.read_bytes())
        atomic_write_json(tmp / "pretrain_log.json", {
            "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu_seconds, 2), "threads": torch.get_num_threads(),
            "final_loss": losses[-1]["loss"], "losses": losses, "corpus_rows": len(data),
            "corpus_sha256": hashlib.sha256(Path(world["corpus"]).read_bytes()).hexdigest(),
        })
    return out_dir
