"""Symmetric KL between two predictions of the same batch, for every head format.

classification / multiple_choice: logits (B, C): KL over classes, mean over examples.
span_qa: logits (B, L, 2): KL over the start distribution and over the end distribution, each
    over the attended positions only, averaged, mean over examples.
tagging: logits (B, L, C): KL over classes per token, mean over the tokens that carry a label
    (labels != -100) or, without labels, over the attended tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_MASKED = -1e9  # exp underflows to exactly 0 in fp32: masked positions carry no probability


def _kl(p_logits: torch.Tensor, q_logits: torch.Tensor, dim: int) -> torch.Tensor:
    """KL(p || q) summed over `dim` (elementwise shape otherwise)."""
    logp = F.log_softmax(p_logits, dim=dim)
    logq = F.log_softmax(q_logits, dim=dim)
    return (logp.exp() * (logp - logq)).sum(dim=dim)


def symmetric_kl(fmt: str, a: torch.Tensor, b: torch.Tensor, *, attention_mask=None, labels=None,
                 detach_targets: bool = False) -> torch.Tensor:
    """KL(a || b) + KL(b || a), reduced to a scalar as described above.

    detach_targets=True uses the SMART form: in each direction the distribution that plays the
    target is detached (KL(sg(a) || b) + KL(sg(b) || a)); False lets gradients flow through both
    sides of both terms (R3F)."""
    a = a.float()
    b = b.float()
    a_t, b_t = (a.detach(), b.detach()) if detach_targets else (a, b)

    def both(dim):
        return _kl(a_t, b, dim) + _kl(b_t, a, dim)

    if fmt in ("classification", "multiple_choice"):
        return both(-1).mean()
    if fmt == "span_qa":
        if attention_mask is not None:
            pad = (attention_mask == 0).unsqueeze(-1)  # (B, L, 1)
            a = a.masked_fill(pad, _MASKED)
            b = b.masked_fill(pad, _MASKED)
            a_t, b_t = (a.detach(), b.detach()) if detach_targets else (a, b)
        per = both(1)  # (B, 2): start, end
        return per.mean()
    if fmt == "tagging":
        per_token = both(-1)  # (B, L)
        if labels is not None:
            keep = labels != -100
        elif attention_mask is not None:
            keep = attention_mask != 0
        else:
            keep = torch.ones_like(per_token, dtype=torch.bool)
        keep = keep.to(per_token.dtype)
        return (per_token * keep).sum() / keep.sum().clamp(min=1)
    raise ValueError(f"symmetric_kl: unknown head format {fmt!r}")
