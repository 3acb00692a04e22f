"""Tiny XLM-R with one head per format and random batches, shared by the adversarial tests."""

from __future__ import annotations

import os

import torch

FORMATS = ("classification", "multiple_choice", "span_qa", "tagging")
HEAD_OF = {"classification": "cls", "multiple_choice": "mc", "span_qa": "qa", "tagging": "tag"}


def join_process_group() -> None:
    """The process group as every xrobust entry joins it (a 1-rank file-store group when no launcher set
    one up; DeepSpeed's CPU comm op built under the stale-lock guard)."""
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from xrobust.distributed import init_distributed

    init_distributed()


def tiny_model(seed: int = 0, dropout: float = 0.0, attention_dropout: float = 0.0):
    from transformers import AutoModel, XLMRobertaConfig

    from xrobust.modeling.model import HeadSpec, XRobustModel

    torch.manual_seed(seed)
    cfg = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=40, hidden_dropout_prob=dropout,
                           attention_probs_dropout_prob=attention_dropout)
    encoder = AutoModel.from_config(cfg, add_pooling_layer=False)
    heads = [HeadSpec("cls", "classification", 3), HeadSpec("mc", "multiple_choice", 3),
             HeadSpec("qa", "span_qa", 2), HeadSpec("tag", "tagging", 5)]
    return XRobustModel(encoder, heads, dropout=dropout)


def make_batch(fmt: str, seed: int, B: int = 3, L: int = 12, n: int = 3) -> dict:
    """Random batch with per-row lengths (right padding, pad id 1, <s> = 0)."""
    g = torch.Generator().manual_seed(seed)
    rows = B * n if fmt == "multiple_choice" else B
    lengths = torch.randint(4, L + 1, (rows,), generator=g)
    lengths[0] = L  # at least one full row, so L is the padded length
    ids = torch.randint(3, 100, (rows, L), generator=g)
    ids[:, 0] = 0
    pos = torch.arange(L).unsqueeze(0)
    mask = (pos < lengths.unsqueeze(1)).long()
    ids = torch.where(mask.bool(), ids, torch.ones_like(ids))
    batch = {"head": HEAD_OF[fmt]}
    if fmt == "multiple_choice":
        batch["input_ids"] = ids.view(B, n, L)
        batch["attention_mask"] = mask.view(B, n, L)
        batch["labels"] = torch.randint(0, n, (B,), generator=g)
    else:
        batch["input_ids"], batch["attention_mask"] = ids, mask
    if fmt == "classification":
        batch["labels"] = torch.randint(0, 3, (B,), generator=g)
    elif fmt == "span_qa":
        start = torch.stack([torch.randint(1, int(l), (1,), generator=g)[0] for l in lengths])
        batch["start_positions"] = start
        batch["end_positions"] = torch.minimum(start + torch.randint(0, 3, (B,), generator=g), lengths - 1)
    elif fmt == "tagging":
        labels = torch.randint(0, 5, (B, L), generator=g)
        keep = mask.bool() & (torch.rand(B, L, generator=g) < 0.7)
        keep[:, 0] = False  # <s> carries no tag
        keep[:, 1] = True
        batch["labels"] = torch.where(keep, labels, torch.full_like(labels, -100))
    return batch
