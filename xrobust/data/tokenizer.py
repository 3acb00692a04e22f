"""Tokenizer identity: what decides token ids, hashed into the feature cache's key."""

from __future__ import annotations

import hashlib
import json


def tokenizer_fingerprint(tokenizer) -> str:
    """Stable hash of what decides token ids: the class and the full backend (vocab, normalizer, specials)."""
    h = hashlib.sha256()
    h.update(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        # truncation/padding are per-call settings the tokenizer leaves on its backend: not identity
        state.pop("truncation", None)
        state.pop("padding", None)
        h.update(json.dumps(state, sort_keys=True).encode("utf-8"))
    else:  # a slow tokenizer: fall back to its vocabulary
        for tok, idx in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]):
            h.update(f"{idx}\t{tok}\n".encode("utf-8"))
    h.update(repr(sorted((k, str(v)) for k, v in tokenizer.special_tokens_map.items())).encode("utf-8"))
    return h.hexdigest()[:16]
