"""Retrieval evaluation: Tatoeba nearest neighbour and BUCC margin-based bitext mining.

Similarity is cosine (rows are L2-normalised, then inner product). Search runs blockwise over
both the queries and the database, keeping a running top-k, so memory is bounded by
query_block x db_block floats whatever the corpus size. faiss (IndexFlatIP) is used when
installed and backend="auto"; the torch path is the reference and gives the same neighbours
(up to ties between exactly equal similarities).

BUCC follows the LASER/XTREME mining recipe: k=4 nearest neighbours in each direction, ratio
margin cos(x, y) / ((mean_knn(x) + mean_knn(y)) / 2), the best forward and backward candidate of
every sentence pooled and paired 1-to-1 by descending score. The score threshold is tuned for
F1 on dev gold only and applied unchanged to test (tuning on test is optimistic).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from xrobust.errors import ConfigError, DataError, XRobustError
from xrobust.io import atomic_write_text

from . import metrics as M

DEFAULT_QUERY_BLOCK = 2048
DEFAULT_DB_BLOCK = 8192

# X-STILTs and XTREME pool hidden layer 14 of XLM-R Large's 24: with evaluation.layer unset, an
# encoder of any depth is pooled at the same fraction of it
REFERENCE_LAYER, REFERENCE_DEPTH = 14, 24


class RetrievalError(XRobustError):
    pass


def default_layer(num_layers: int) -> int:
    """14/24 of the encoder's depth, rounded half up: 14 of 24 layers, 7 of 12, 4 of 6, 1 of 1."""
    return (num_layers * REFERENCE_LAYER + REFERENCE_DEPTH // 2) // REFERENCE_DEPTH


def retrieval_layer(setting: int | None, num_layers: int, encoder: str) -> int:
    """The hidden state to pool (0 = embeddings .. num_layers): `evaluation.layer` when it is set,
    else default_layer. A layer beyond the encoder's depth is an error naming the key and the depth."""
    if setting is None:
        return default_layer(num_layers)
    if not 0 <= setting <= num_layers:
        raise ConfigError(f"key 'evaluation.layer': {setting} is out of range; the encoder {encoder} has "
                          f"{num_layers} layers (hidden states 0..{num_layers}, 0 = embeddings); unset, the "
                          f"layer is {default_layer(num_layers)} (14/24 of the depth)")
    return setting


def check_retrieval_layer(cfg, encoder: str) -> int | None:
    """The retrieval layer for this encoder (evaluation.layer, or its default from the depth); a layer
    beyond the encoder's depth stops here, before training or evaluation. None when the encoder's
    config cannot be read: its own load then names the problem."""
    from transformers import AutoConfig

    try:
        depth = int(AutoConfig.from_pretrained(str(encoder)).num_hidden_layers)
    except (OSError, ValueError, AttributeError):
        return None
    return retrieval_layer(cfg.evaluation.layer, depth, str(encoder))


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def l2_normalize(x) -> torch.Tensor:
    """float32 tensor with unit-norm rows (zero rows stay zero)."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).to(torch.float32)
    if t.ndim != 2:
        raise RetrievalError(f"embeddings must be 2-D (n, dim), got shape {tuple(t.shape)}")
    return torch.nn.functional.normalize(t, p=2, dim=1)


def _knn_torch(q: torch.Tensor, db: torch.Tensor, k: int, query_block: int, db_block: int):
    n, m = q.shape[0], db.shape[0]
    sims = torch.empty(n, k, dtype=torch.float32)
    inds = torch.empty(n, k, dtype=torch.int64)
    with torch.no_grad():
        for qs in range(0, n, query_block):
            qb = q[qs:qs + query_block]
            best_s = best_i = None
            for ds in range(0, m, db_block):
                s = qb @ db[ds:ds + db_block].T
                ts, ti = s.topk(min(k, s.shape[1]), dim=1)
                ti += ds
                if best_s is None:
                    best_s, best_i = ts, ti
                else:
                    cs, ci = torch.cat([best_s, ts], 1), torch.cat([best_i, ti], 1)
                    best_s, pos = cs.topk(k, dim=1)
                    best_i = ci.gather(1, pos)
                del s
            sims[qs:qs + query_block] = best_s
            inds[qs:qs + query_block] = best_i
    return sims.numpy(), inds.numpy()


def _knn_faiss(q: torch.Tensor, db: torch.Tensor, k: int):
    import faiss

    index = faiss.IndexFlatIP(db.shape[1])
    index.add(np.ascontiguousarray(db.numpy()))
    sims, inds = index.search(np.ascontiguousarray(q.numpy()), k)
    return sims.astype(np.float32), inds.astype(np.int64)


def knn(queries, database, k: int, *, backend: str = "auto", query_block: int = DEFAULT_QUERY_BLOCK,
        db_block: int = DEFAULT_DB_BLOCK, normalized: bool = False):
    """Cosine k nearest neighbours of each query row in `database`.

    Returns (sims float32 [n, k'], inds int64 [n, k']) sorted by descending similarity, with
    k' = min(k, len(database)). backend: "auto" (faiss if installed), "torch" or "faiss".
    """
    q = queries if normalized else l2_normalize(queries)
    db = database if normalized else l2_normalize(database)
    if q.shape[1] != db.shape[1]:
        raise RetrievalError(f"embedding widths differ: queries {q.shape[1]}, database {db.shape[1]}")
    if db.shape[0] == 0 or q.shape[0] == 0:
        raise RetrievalError("knn needs at least one query and one database row")
    k = min(k, db.shape[0])
    if backend == "auto":
        backend = "faiss" if faiss_available() else "torch"
    if backend == "faiss":
        return _knn_faiss(q, db, k)
    if backend == "torch":
        return _knn_torch(q, db, k, query_block, db_block)
    raise RetrievalError(f"unknown knn backend '{backend}' (expected auto, torch or faiss)")


# ------------------------------------------------------------------------------- Tatoeba


def tatoeba_retrieve(query_emb, db_emb, **knn_kwargs) -> np.ndarray:
    """Index in db_emb of the cosine nearest neighbour of every query row.

    The XTREME reference queries with the English side and searches the other language; pass
    the sides in that order to reproduce it (the direction is a recorded setting)."""
    _, inds = knn(query_emb, db_emb, 1, **knn_kwargs)
    return inds[:, 0]


def tatoeba_score(query_emb, db_emb, gold: Sequence[int] | None = None, **knn_kwargs) -> dict:
    """Accuracy (%) of tatoeba_retrieve; gold defaults to the parallel order (row i <-> row i)."""
    pred = tatoeba_retrieve(query_emb, db_emb, **knn_kwargs)
    gold = np.arange(len(pred)) if gold is None else np.asarray(gold)
    return M.tatoeba_accuracy(gold.tolist(), pred.tolist())


def write_tatoeba_predictions(path: str | os.PathLike, predictions: Iterable[int]) -> None:
    """Official layout: predictions/tatoeba/test-<lang>.tsv, one retrieved index per line."""
    atomic_write_text(path, "".join(f"{int(p)}\n" for p in predictions))


# ---------------------------------------------------------------------------------- BUCC


def margin_candidates(src_emb, tgt_emb, src_ids: Sequence[str], tgt_ids: Sequence[str], *, k: int = 4,
                      **knn_kwargs) -> list[tuple[str, str, float]]:
    """Mined (src id, tgt id, ratio-margin score) candidates, 1-to-1, by descending score.

    Callers should pass unique sentences (the reference de-duplicates texts before mining)."""
    x, y = l2_normalize(src_emb), l2_normalize(tgt_emb)
    if len(src_ids) != x.shape[0] or len(tgt_ids) != y.shape[0]:
        raise RetrievalError(f"ids/embeddings mismatch: {len(src_ids)} src ids for {x.shape[0]} rows, "
                             f"{len(tgt_ids)} tgt ids for {y.shape[0]} rows")
    fwd_sim, fwd_ind = knn(x, y, k, normalized=True, **knn_kwargs)
    bwd_sim, bwd_ind = knn(y, x, k, normalized=True, **knn_kwargs)
    fwd_sim, bwd_sim = fwd_sim.astype(np.float64), bwd_sim.astype(np.float64)
    x_mean, y_mean = fwd_sim.mean(axis=1), bwd_sim.mean(axis=1)
    # Margin of each neighbour candidate: cos / average of the two neighbourhood means.
    fwd_scores = fwd_sim / ((x_mean[:, None] + y_mean[fwd_ind]) / 2)
    bwd_scores = bwd_sim / ((y_mean[:, None] + x_mean[bwd_ind]) / 2)
    fwd_arg, bwd_arg = fwd_scores.argmax(axis=1), bwd_scores.argmax(axis=1)
    nx, ny = x.shape[0], y.shape[0]
    src_idx = np.concatenate([np.arange(nx), bwd_ind[np.arange(ny), bwd_arg]])
    tgt_idx = np.concatenate([fwd_ind[np.arange(nx), fwd_arg], np.arange(ny)])
    scores = np.concatenate([fwd_scores[np.arange(nx), fwd_arg], bwd_scores[np.arange(ny), bwd_arg]])
    order = np.argsort(-scores, kind="stable")
    seen_src, seen_tgt = set(), set()
    out = []
    for i in order:
        s, t = int(src_idx[i]), int(tgt_idx[i])
        if s in seen_src or t in seen_tgt:
            continue
        seen_src.add(s)
        seen_tgt.add(t)
        out.append((src_ids[s], tgt_ids[t], float(scores[i])))
    return out


def _sorted(candidates) -> list[tuple[str, str, float]]:
    return sorted(candidates, key=lambda c: -c[2])


def tune_threshold(candidates: Iterable[tuple[str, str, float]], gold_pairs: Iterable) -> tuple[float, float]:
    """Threshold maximising F1 of {c : score >= threshold} against gold; returns (threshold, F1 %).

    Cuts only between distinct scores (the reference may cut between ties, then extract more
    than it scored); the threshold is the midpoint to the next lower score. With no correct
    candidate the threshold lies above every score (nothing extracted)."""
    items = _sorted(candidates)
    gold = {M._pair(g) for g in gold_pairs}
    if not gold:
        raise RetrievalError("cannot tune the BUCC threshold: dev gold is empty")
    if not items:
        return 0.0, 0.0
    best_f1, threshold = 0.0, items[0][2] + 1.0
    ncorrect = 0
    for i, (src, tgt, score) in enumerate(items):
        ncorrect += (src, tgt) in gold
        if i + 1 < len(items) and items[i + 1][2] == score:
            continue
        if ncorrect == 0:
            continue
        precision, recall = ncorrect / (i + 1), ncorrect / len(gold)
        f1 = 2 * precision * recall / (precision + recall)
        if f1 > best_f1:
            best_f1 = f1
            threshold = (score + items[i + 1][2]) / 2 if i + 1 < len(items) else score
    return float(threshold), best_f1 * 100


def extract_pairs(candidates: Iterable[tuple[str, str, float]], threshold: float) -> list[tuple[str, str]]:
    return [(s, t) for s, t, score in _sorted(candidates) if score >= threshold]


def bucc_evaluate(dev_candidates, dev_gold, test_candidates, test_gold=None) -> dict:
    """Tune on dev, apply to test. test_gold is only read after the threshold is fixed; None
    (test labels are not public) yields a "skipped" reason instead of test scores."""
    dev_candidates, test_candidates = list(dev_candidates), list(test_candidates)
    threshold, dev_f1 = tune_threshold(dev_candidates, dev_gold)
    dev = M.bucc_prf(dev_gold, extract_pairs(dev_candidates, threshold))
    test_pairs = extract_pairs(test_candidates, threshold)
    if test_gold is None:
        test = {"skipped": "no test gold given: write the predictions with write_bucc_predictions "
                           "and score them with the official labels"}
    else:
        test = M.bucc_prf(test_gold, test_pairs)
    return {"threshold": threshold, "dev": dev, "test": test, "test_pairs": test_pairs}


def write_bucc_predictions(path: str | os.PathLike, pairs: Iterable[tuple[str, str]]) -> None:
    """Official layout: predictions/bucc2018/test-<lang>.tsv, "src_id<TAB>tgt_id" per line."""
    lines = []
    for src, tgt in pairs:
        if "\t" in src or "\t" in tgt or "\n" in src or "\n" in tgt:
            raise RetrievalError(f"BUCC id with a tab or newline: {src!r} / {tgt!r}")
        lines.append(f"{src}\t{tgt}\n")
    atomic_write_text(path, "".join(lines))


def score_bucc_file(prediction_file: str | os.PathLike, gold_file: str | os.PathLike | None) -> dict:
    """BUCC P/R/F1 of a prediction file, or {"skipped": why} when the gold file is absent."""
    pred_path = Path(prediction_file)
    if not pred_path.is_file():
        raise DataError(f"{pred_path}: BUCC prediction file not found")
    if gold_file is None or not Path(gold_file).is_file():
        where = "no gold file given" if gold_file is None else f"{gold_file} does not exist"
        return {"skipped": f"{where}; BUCC test gold is not public, submit {pred_path} in the official layout"}
    from .scorer import read_label_file

    return M.bucc_prf(read_label_file(gold_file), read_label_file(pred_path))
