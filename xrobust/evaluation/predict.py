"""Model forward over featurized data, sharded across ranks, and scoring per task format.

The one evaluation path: English dev selection during training, `xrobust eval`, the cross-lingual
matrix and the robustness attacks (through forward_outputs' perturbation hook) all use it.
Under ZeRO-3 every rank must run the same number of forwards (parameters are gathered
collectively), so shards are padded with repeats of a batch whose outputs are dropped.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch

from ..data.collate import TARGET_KEYS, Collator
from ..data.featurize import feature_lengths
from ..errors import ConfigError, DataError
from .. import distributed as dist



@torch.no_grad()
def forward_outputs(model, features, tokenizer, head: str | None, batch_size: int, *,
                    hidden_layer: int | None = None, pooling: str = "mean", perturbation=None) -> list[np.ndarray]:
    """Per feature: logits cut to the feature's length (token-level formats), or a pooled
    sentence embedding of `hidden_layer` when it is given (retrieval).

    perturbation(model, batch, index, injector) -> delta or None: added to the word-embedding output
    of the forward of global batch `index` (the same index at any world size) through `injector`
    (an xrobust.modeling.model.DeltaInjector, which the hook may use for forwards of its
    own, e.g. PGD's); `batch` still holds its gold targets.
    """
    n = len(features)
    lengths = feature_lengths(features)
    order = np.argsort(-np.asarray(lengths), kind="stable")  # similar lengths together: little padding
    batches = [order[i:i + batch_size].tolist() for i in range(0, n, batch_size)]
    rank, world = dist.rank(), dist.world_size()
    rounds = -(-len(batches) // world) if batches else 0
    collate = Collator(tokenizer, head=head)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    injector = None
    if perturbation is not None:
        from ..modeling.model import DeltaInjector

        injector = DeltaInjector(model.word_embeddings())
    results: dict[int, np.ndarray] = {}
    try:
        for r in range(rounds):
            b = rank + r * world  # this rank's batches: rank, rank + world, ...
            real = b < len(batches)
            idx = batches[b if real else 0]
            batch = collate([features[i] for i in idx])
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            delta = perturbation(model, batch, b if real else 0, injector) if perturbation is not None else None
            inputs = {k: v for k, v in batch.items() if k not in TARGET_KEYS}
            with injector.active(delta) if injector is not None else nullcontext():
                if hidden_layer is None:
                    out = model(**inputs).logits.float().cpu().numpy()
                else:
                    out = _embed(model, inputs, hidden_layer, pooling)
            if not real:
                continue
            for j, i in enumerate(idx):
                row = out[j]
                if hidden_layer is None and row.ndim == 2:  # (L, C) token logits: drop padding
                    row = row[:lengths[i]]
                results[i] = row
    finally:
        if injector is not None:
            injector.remove()
        if was_training:
            model.train()
    merged: dict[int, np.ndarray] = {}
    for part in dist.gather_objects(results):
        merged.update(part)
    return [merged[i] for i in range(n)]


def _embed(model, batch, layer: int, pooling: str) -> np.ndarray:
    encoder = model.encoder if hasattr(model, "encoder") else model
    segments = {k: batch[k] for k in ("token_type_ids",) if k in batch}  # when the tokenizer makes them
    out = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **segments,
                  output_hidden_states=True, return_dict=True)
    states = out.hidden_states
    if not 0 <= layer < len(states):
        raise ConfigError(f"key 'evaluation.layer': {layer} is out of range; this encoder has hidden states "
                          f"0..{len(states) - 1}")
    return pool_embeddings(states[layer].float(), batch["attention_mask"], pooling=pooling).cpu().numpy()


def pool_embeddings(hidden_states, attention_mask, *, pooling: str = "mean", layer: int | None = None):
    """One embedding per sequence from (B, L, d) hidden states (retrieval).

    mean: attention-mask weighted mean over every real token, special tokens included (the
    reference retrieval recipe); cls: the first token (<s>). `hidden_states` may also be the
    tuple of per-layer states from output_hidden_states (index 0 = embeddings), with `layer`.
    """
    if isinstance(hidden_states, (tuple, list)):
        if layer is None or not -len(hidden_states) <= layer < len(hidden_states):
            raise ConfigError(f"pool_embeddings: layer={layer} out of range for {len(hidden_states)} hidden states")
        hidden_states = hidden_states[layer]
    h = hidden_states if torch.is_tensor(hidden_states) else torch.as_tensor(hidden_states)
    if h.dim() != 3:
        raise DataError(f"pool_embeddings: hidden states of shape {tuple(h.shape)}; expected (B, L, d)")
    if pooling == "cls":
        return h[:, 0]
    if pooling != "mean":
        raise ConfigError(f"pool_embeddings: pooling={pooling!r}; expected 'mean' or 'cls'")
    m = torch.as_tensor(attention_mask, device=h.device).to(h.dtype).unsqueeze(-1)
    # clamp: an all-padding row would divide by zero
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


# -- per-format predictions and scores --------------------------------------------------------------

def predict(model, spec, examples, features, tokenizer, batch_size: int, *, perturbation=None):
    """Example-level predictions in the official file's terms: label names, tag lists, answer texts
    (perturbation: see forward_outputs)."""
    logits = forward_outputs(model, features, tokenizer, spec.head_name, batch_size,
                             perturbation=perturbation)
    return predictions_from_logits(spec, examples, features, logits)


def predictions_from_logits(spec, examples, features, logits):
    """The format's step from logits (one row per feature) to example-level predictions
    (TaskFormat.postprocess, xrobust.tasks.postprocessors)."""
    step = spec.task_format.postprocess
    if step is None:
        raise ConfigError(f"task {spec.name}: {spec.format} has no head predictions (retrieval is scored by "
                          "similarity)")
    return step(spec, examples, features, logits)


def gold(spec, examples):
    """Example-level gold answers in the official file's terms (TaskFormat.gold)."""
    return spec.task_format.gold(spec, examples)


def score(spec, examples, predictions, lang: str) -> dict[str, float]:
    from .metrics import accuracy, mlqa_scores, seqeval_prf, squad_scores

    golds = gold(spec, examples)
    kind = spec.task_format.score_kind
    if kind == "accuracy":
        return accuracy(golds, predictions)
    if kind == "seqeval":
        return seqeval_prf(golds, predictions)
    if spec.metric == "mlqa_em_f1":
        return mlqa_scores(golds, predictions, lang)
    return squad_scores(golds, predictions)


def evaluate_dev(model, data, batch_size: int) -> dict[str, dict[str, float]]:
    """English dev scores of every task of a training phase (data: training.data.PhaseData); model
    selection maximises their "selection" (results.metrics_score)."""
    from .results import metrics_score

    out = {}
    for name, spec, examples, features in data.dev_sets():
        preds = predict(model, spec, examples, features, data.tokenizer, batch_size)
        metrics = score(spec, examples, preds, "en")
        out[name] = {**metrics, "selection": metrics_score(metrics, qa=spec.task_format.score_kind == "qa")}
    return out
