"""Zero-shot transfer check for the demo world, independent of the training stack.

    python -m xrobust.demo.transfer_check --root /tmp/demo-world

Builds the world, runs `pretrain_mlm`, fine-tunes a RoBERTa-style classification head (dense +
tanh on <s>) and the encoder on English demo_xnli train with plain torch, and prints dev accuracy
per language. Chance is 1/3; a language near chance means the encoder did not align it.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections import Counter
from pathlib import Path


def _read(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def finetune_zero_shot(encoder_dir, world: dict, *, task: str = "demo_xnli", epochs: float = 1.6, lr: float = 2e-3,
                       batch_size: int = 32, seed: int = 0, split: str = "dev", freeze_embeddings: bool = True,
                       view: str = "pair", only_labels=None) -> dict:
    """Fine-tune on English `task` train; return {"accuracy": {lang: acc}, "confusion": {lang: rows gold x
    columns predicted}, "seconds", "cpu_seconds", "steps"}. `view` "hypothesis" or "premise" trains and
    evaluates on that side of each pair alone; `only_labels` keeps only the examples with those labels
    (e.g. entailment and contradiction: is the polarity relation learned without the neutral pairs?)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(str(encoder_dir))
    enc = AutoModel.from_pretrained(str(encoder_dir))
    # English fine-tuning moves only English (and shared) token embeddings; freezing the embedding
    # table keeps every language's words where MLM aligned them, the usual zero-shot recipe
    enc.embeddings.requires_grad_(not freeze_embeddings)
    labels = world["tasks"][task]["labels"]
    d = enc.config.hidden_size
    head = torch.nn.Sequential(torch.nn.Linear(d, d), torch.nn.Tanh(), torch.nn.Linear(d, len(labels)))

    def batch(rows):
        pair = [r["text_b"] for r in rows] if rows[0]["text_b"] is not None else None
        first = [r["text_a"] for r in rows]
        if view != "pair":
            first, pair = (pair if view == "hypothesis" else first), None
        x = tok(first, pair, padding=True, truncation=True, return_tensors="pt")
        return x, torch.tensor([labels.index(r["label"]) for r in rows])

    def rows(split_name, lang):
        return [r for r in _read(Path(world["data_root"]) / task / f"{split_name}-{lang}.jsonl")
                if only_labels is None or r["label"] in only_labels]

    train = rows("train", "en")
    opt = torch.optim.AdamW([p for p in enc.parameters() if p.requires_grad] + list(head.parameters()), lr=lr)
    total = round(epochs * len(train) / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / total))
    rng, steps, order = random.Random(seed), 0, []
    t0, c0 = time.perf_counter(), time.process_time()
    enc.train()
    while steps < total:
        if len(order) < batch_size:  # reshuffle once an epoch is used up
            order += rng.sample(range(len(train)), len(train))
        idx, order = order[:batch_size], order[batch_size:]
        x, y = batch([train[j] for j in idx])
        loss = torch.nn.functional.cross_entropy(head(enc(**x).last_hidden_state[:, 0]), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        steps += 1
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    enc.eval()
    acc, confusion = {}, {}
    with torch.no_grad():
        for lang in world["tasks"][task]["splits"][split]:
            x, y = batch(rows(split, lang))
            pred = head(enc(**x).last_hidden_state[:, 0]).argmax(-1)
            acc[lang] = round((pred == y).float().mean().item(), 3)
            confusion[lang] = [[int(((y == g) & (pred == q)).sum()) for q in range(len(labels))] for g in range(len(labels))]
    return {"accuracy": acc, "confusion": confusion, "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "steps": steps}


def finetune_tagging(encoder_dir, world: dict, *, task: str = "demo_pos", epochs: int = 2, lr: float = 1e-3,
                     batch_size: int = 32, seed: int = 0, split: str = "dev", freeze_embeddings: bool = True) -> dict:
    """Token classification on the first sub-word of each word, fine-tuned on English `task`
    train; returns {"f1": {lang: seqeval micro F1}, "cpu_seconds", "steps"}."""
    import torch
    from seqeval.metrics import f1_score
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(str(encoder_dir))
    enc = AutoModel.from_pretrained(str(encoder_dir))
    # English fine-tuning moves only English (and shared) token embeddings; freezing the embedding
    # table keeps every language's words where MLM aligned them, the usual zero-shot recipe
    enc.embeddings.requires_grad_(not freeze_embeddings)
    labels = world["tasks"][task]["labels"]
    head = torch.nn.Linear(enc.config.hidden_size, len(labels))

    def batch(rows):
        x = tok([r["tokens"] for r in rows], is_split_into_words=True, padding=True, truncation=True,
                return_tensors="pt")
        y = torch.full(x["input_ids"].shape, -100, dtype=torch.long)
        for b, r in enumerate(rows):
            prev = None
            for t, w in enumerate(x.word_ids(b)):
                if w is not None and w != prev:
                    y[b, t] = labels.index(r["tags"][w])
                prev = w
        return x, y

    train = _read(Path(world["data_root"]) / task / "train-en.jsonl")
    opt = torch.optim.AdamW([p for p in enc.parameters() if p.requires_grad] + list(head.parameters()), lr=lr)
    total = epochs * ((len(train) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / total))
    order, rng, steps, c0 = list(range(len(train))), random.Random(seed), 0, time.process_time()
    enc.train()
    for _ in range(epochs):
        rng.shuffle(order)
        for i in range(0, len(order), batch_size):
            x, y = batch([train[j] for j in order[i:i + batch_size]])
            logits = head(enc(**x).last_hidden_state)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, len(labels)), y.reshape(-1), ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            steps += 1
    cpu = time.process_time() - c0
    enc.eval()
    f1 = {}
    with torch.no_grad():
        for lang in world["tasks"][task]["splits"][split]:
            rows = _read(Path(world["data_root"]) / task / f"{split}-{lang}.jsonl")
            x, y = batch(rows)
            pred = head(enc(**x).last_hidden_state).argmax(-1)
            gold_seqs, pred_seqs = [], []
            for b in range(len(rows)):
                keep = y[b] != -100
                gold_seqs.append([labels[i] for i in y[b][keep].tolist()])
                pred_seqs.append([labels[i] for i in pred[b][keep].tolist()])
            if task == "demo_pos":  # seqeval needs chunk tags: score each POS tag as a one-token chunk
                gold_seqs = [["B-" + t for t in s] for s in gold_seqs]
                pred_seqs = [["B-" + t for t in s] for s in pred_seqs]
            f1[lang] = round(float(f1_score(gold_seqs, pred_seqs)), 3)
    return {"f1": f1, "cpu_seconds": round(cpu, 1), "steps": steps}


def retrieval_accuracy(encoder_dir, world: dict, *, task: str = "demo_tatoeba", split: str = "dev",
                       layer: int = -1) -> dict:
    """Zero-shot bitext retrieval with mean-pooled hidden states of `layer` (no fine-tuning):
    top-1 accuracy of finding each sentence's English translation by cosine similarity."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(encoder_dir))
    enc = AutoModel.from_pretrained(str(encoder_dir)).eval()

    def embed(texts):
        x = tok(texts, padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            h = enc(**x, output_hidden_states=True).hidden_states[layer]
        m = x["attention_mask"].unsqueeze(-1).float()
        v = (h * m).sum(1) / m.sum(1)
        v = v - v.mean(0, keepdim=True)  # centre each language's embeddings
        return torch.nn.functional.normalize(v, dim=-1)

    acc = {}
    for lang in world["tasks"][task]["splits"][split]:
        rows = _read(Path(world["data_root"]) / task / f"{split}-{lang}.jsonl")
        sim = embed([r["source"] for r in rows]) @ embed([r["target"] for r in rows]).T
        acc[lang] = round((sim.argmax(-1) == torch.arange(len(rows))).float().mean().item(), 3)
    return {"accuracy": acc}


def _words(text: str) -> list[str]:
    return text.lower().replace(".", " .").split()


def _nli_features(row: dict, view: str) -> list[str]:
    """Bag of words and word bigrams of the hypothesis, of the premise, or of both ("pair") plus
    which words of each side the other lacks, with the lengths."""
    a, b = _words(row["text_a"]), _words(row["text_b"])
    out = []
    if view in ("hypothesis", "pair"):
        out += ["h:" + w for w in b] + ["h2:" + x + " " + y for x, y in zip(b, b[1:])] + [f"h#{len(b)}"]
    if view in ("premise", "pair"):
        out += ["p:" + w for w in a] + ["p2:" + x + " " + y for x, y in zip(a, a[1:])] + [f"p#{len(a)}"]
    if view == "pair":
        only_h, only_p = [w for w in b if w not in set(a)], [w for w in a if w not in set(b)]
        out += ["h-p:" + w for w in only_h] + ["p-h:" + w for w in only_p] + [f"h-p#{len(only_h)}", f"p-h#{len(only_p)}"]
    return out


def nli_bow_baseline(train: list[dict], evaluate: list[dict], labels, view: str = "hypothesis") -> dict:
    """Multinomial naive Bayes (add-one smoothing) on `_nli_features(row, view)`, fitted on
    `train` rows ({text_a, text_b, label}); returns {"train": accuracy, "eval": accuracy} in
    [0, 1]. With view "hypothesis" it measures how much of an NLI set is solvable without the
    premise (the hypothesis-only baseline of Poliak et al. 2018 and Gururangan et al. 2018)."""
    labels = list(labels)
    counts = [Counter() for _ in labels]
    prior = Counter()
    for row in train:
        k = labels.index(row["label"])
        prior[k] += 1
        counts[k].update(_nli_features(row, view))
    vocab = set().union(*counts)
    totals = [sum(c.values()) + len(vocab) for c in counts]

    def predict(row) -> str:
        feats = [f for f in _nli_features(row, view) if f in vocab]
        scores = [math.log(prior[k] + 1) + sum(math.log((counts[k][f] + 1) / totals[k]) for f in feats)
                  for k in range(len(labels))]
        return labels[max(range(len(labels)), key=scores.__getitem__)]

    return {name: round(sum(predict(r) == r["label"] for r in rows) / len(rows), 4)
            for name, rows in (("train", train), ("eval", evaluate))}


def main(argv=None) -> None:
    from xrobust.demo.pretrain import pretrain_mlm
    from xrobust.demo.world import build_world

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=float, default=1.6, help="over English train (1.6 x 8000 / 32 = 400 steps)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--xnli-only", action="store_true", help="skip the tagging and retrieval checks")
    p.add_argument("--encoder", type=Path, help="an MLM encoder of this world to use instead of pretraining one")
    p.add_argument("--train-seed", type=int, help="seed of the fine-tuning (default: --seed)")
    p.add_argument("--labels", help="comma-separated: train and evaluate demo_xnli on these labels only")
    p.add_argument("--views", action="store_true",
                   help="also fine-tune demo_xnli on the hypotheses alone and on the premises alone")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # as pretrain_mlm: a second thread mostly adds synchronisation for this model
    world = build_world(args.root, seed=args.seed)
    enc = args.encoder or pretrain_mlm(world, args.root / "mlm-check", seed=args.seed)
    log = json.loads((enc / "pretrain_log.json").read_text(encoding="utf-8"))
    print(f"mlm: {log['steps']} steps, {log['seconds']} s wall, {log['cpu_seconds']} s cpu, loss {log['final_loss']}")
    seed = args.seed if args.train_seed is None else args.train_seed
    only = tuple(args.labels.split(",")) if args.labels else None
    print("demo_xnli", json.dumps(finetune_zero_shot(enc, world, epochs=args.epochs, lr=args.lr, seed=seed,
                                                     only_labels=only)))
    if args.views:
        for view in ("hypothesis", "premise"):
            print(f"demo_xnli {view} only", json.dumps(finetune_zero_shot(enc, world, epochs=args.epochs, lr=args.lr,
                                                                           seed=seed, view=view)))
    if not args.xnli_only:
        for task in ("demo_pos", "demo_ner"):
            print(task, json.dumps(finetune_tagging(enc, world, task=task, seed=seed)))
        print("demo_tatoeba", json.dumps(retrieval_accuracy(enc, world)))


if __name__ == "__main__":
    main()
