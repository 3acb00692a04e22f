"""Divergences between two predictions of the same batch, for every head format.

Each format reduces a divergence to a scalar (`TaskFormat.reduce_divergence`, xrobust.tasks.formats):
classification / multiple_choice: logits (B, C): divergence over classes, mean over examples.
span_qa: logits (B, L, 2): divergence over the start distribution and over the end distribution,
    each over the attended positions only, averaged, mean over examples.
tagging: logits (B, L, C): divergence over classes per token, mean over the tokens that carry a
    label (labels != -100) or, without labels, over the attended tokens.
The model applies them to a batch (`XRobustModel.divergence`, `symmetric_kl`).

Kinds (`divergence(kind, ...)`; a is the perturbed prediction, b the clean one):
- "symmetric": KL(a || b) + KL(b || a) (SMART's and R3F's regularizer; SMART's ascent default).
- "one_sided": KL(sg(b) || a), the virtual-adversarial-training direction (what an ascent on the
  symmetric KL against a constant target differentiates when the a-side target is detached).
- "stable_kl": mt-dnn's surrogate (mt_dnn/loss.py stable_kl): 2 sum p (logit(p) - logit(q)) with
  p = softmax(a), q = softmax(b) and the log-odds logit(x) = -log(1/(x + 1e-6) - 1 + 1e-6) detached.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..tasks.formats import get_format, wide

KINDS = ("symmetric", "one_sided", "stable_kl")
_STABLE_EPS = 1e-6  # mt-dnn's epsilon in stable_kl


def _kl(p_logits: torch.Tensor, q_logits: torch.Tensor, dim: int) -> torch.Tensor:
    """KL(p || q) summed over `dim` (elementwise shape otherwise)."""
    logp = F.log_softmax(p_logits, dim=dim)
    logq = F.log_softmax(q_logits, dim=dim)
    return (logp.exp() * (logp - logq)).sum(dim=dim)


def _log_odds(prob: torch.Tensor) -> torch.Tensor:
    return -(1.0 / (prob + _STABLE_EPS) - 1 + _STABLE_EPS).detach().log()


def _per_unit(kind: str, a, b, dim: int, detach_targets: bool) -> torch.Tensor:
    if kind == "symmetric":
        a_t, b_t = (a.detach(), b.detach()) if detach_targets else (a, b)
        return _kl(a_t, b, dim) + _kl(b_t, a, dim)
    if kind == "one_sided":
        return _kl(b.detach(), a, dim)
    if kind == "stable_kl":
        p = F.softmax(a, dim=dim)
        q = F.softmax(b, dim=dim)
        return (p * (_log_odds(p) - _log_odds(q)) * 2).sum(dim=dim)
    raise ValueError(f"divergence: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")


def divergence(kind: str, fmt, a: torch.Tensor, b: torch.Tensor, *, attention_mask=None, labels=None,
               detach_targets: bool = False) -> torch.Tensor:
    """The divergence `kind` between predictions a and b, reduced to a scalar as the format `fmt`
    (a name or a TaskFormat) does (above).

    detach_targets (symmetric only): True uses the SMART form, in each direction the distribution
    that plays the target is detached (KL(sg(a) || b) + KL(sg(b) || a)); False lets gradients flow
    through both sides of both terms (R3F)."""
    reduce = get_format(fmt).reduce_divergence
    return reduce(lambda x, y, dim: _per_unit(kind, x, y, dim, detach_targets), wide(a), wide(b),
                  attention_mask=attention_mask, labels=labels)


def symmetric_kl(fmt, a: torch.Tensor, b: torch.Tensor, *, attention_mask=None, labels=None,
                 detach_targets: bool = False) -> torch.Tensor:
    """KL(a || b) + KL(b || a) reduced per format: `divergence("symmetric", ...)`."""
    return divergence("symmetric", fmt, a, b, attention_mask=attention_mask, labels=labels,
                      detach_targets=detach_targets)
