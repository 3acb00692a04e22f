"""Feature dicts -> padded torch tensors for one micro-batch.

Dynamic padding (to the longest sequence in the batch) is the default; `padding="max_length"`
pads every batch to a fixed length, which is the baseline of the padding benchmark.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from xrobust.errors import ConfigError, DataError
from xrobust.tasks.featurizers import IGNORE_INDEX  # owned by the featurizers, which write it
from xrobust.tasks.formats import TARGET_KEYS  # owned by the task formats

# Per-token fields and their pad values; "input_ids" uses the tokenizer's pad id.
TOKEN_FIELDS = {"input_ids": None, "attention_mask": 0, "token_type_ids": 0, "labels": IGNORE_INDEX}
# Prediction metadata: never sent to the model, returned only with keep_meta=True.
META_FIELDS = ("example_id", "offset_mapping", "word_ids", "n_words")


class Collator:
    """`Collator(tokenizer, head="xnli")(features) -> {"head", "input_ids", "attention_mask", "labels", ...}`.

    - input_ids padded with the tokenizer's pad id, attention_mask and token_type_ids (segment ids,
      present when the tokenizer makes them) with 0, token labels with -100;
    - multiple choice ([n_choices][len] per feature; token_type_ids likewise) is padded across all
      choices of the batch and returned as (B, n_choices, L);
    - `padding="max_length"` pads to `max_length` (a longer feature is an error, not truncated);
    - `pad_to_multiple_of` rounds the padded length up (tensor-core friendly shapes);
    - unknown non-tensor fields are dropped; META_FIELDS come back as lists with `keep_meta=True`.
    """

    def __init__(self, tokenizer=None, *, pad_token_id: int | None = None, head: str | None = None,
                 padding: str = "longest", max_length: int | None = None, pad_to_multiple_of: int | None = None,
                 keep_meta: bool = False):
        if pad_token_id is None:
            pad_token_id = getattr(tokenizer, "pad_token_id", None)
        if pad_token_id is None:
            raise ConfigError("Collator: no pad id; pass a tokenizer with pad_token_id or pad_token_id=")
        if padding not in ("longest", "max_length"):
            raise ConfigError(f"Collator: padding={padding!r}; expected 'longest' or 'max_length'")
        if padding == "max_length" and not max_length:
            raise ConfigError("Collator: padding='max_length' needs max_length=<int>")
        if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
            raise ConfigError(f"Collator: pad_to_multiple_of={pad_to_multiple_of}; expected an int >= 1")
        self.pad_token_id = int(pad_token_id)
        self.head = head
        self.padding = padding
        self.max_length = max_length
        self.pad_to_multiple_of = pad_to_multiple_of
        self.keep_meta = keep_meta

    def _target_len(self, longest: int) -> int:
        if self.padding == "max_length":
            if longest > self.max_length:
                raise DataError(f"Collator: a feature has {longest} tokens, more than max_length={self.max_length}; "
                                "featurize with the same max_length")
            n = self.max_length
        else:
            n = longest
        m = self.pad_to_multiple_of
        return n if not m else -(-n // m) * m

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not features:
            raise DataError("Collator: empty batch")
        first = features[0]
        if "input_ids" not in first:
            raise DataError(f"Collator: features lack 'input_ids'; got keys {sorted(first)}")
        multiple_choice = bool(first["input_ids"]) and isinstance(first["input_ids"][0], (list, tuple))
        if multiple_choice:
            n_choices = {len(f["input_ids"]) for f in features}
            if len(n_choices) != 1:
                raise DataError(f"Collator: multiple-choice batch mixes choice counts {sorted(n_choices)}; expected one")
            longest = max(len(c) for f in features for c in f["input_ids"])
        else:
            longest = max(len(f["input_ids"]) for f in features)
        length = self._target_len(longest)

        batch: dict[str, Any] = {}
        if self.head is not None:
            batch["head"] = self.head
        for key in first:
            if key in META_FIELDS:
                if self.keep_meta:
                    batch[key] = [f[key] for f in features]
                continue
            values = [f[key] for f in features]
            if key in TARGET_KEYS and not isinstance(values[0], (list, tuple)):
                batch[key] = torch.tensor(values, dtype=torch.long)
            elif key in TOKEN_FIELDS:
                pad = self.pad_token_id if key == "input_ids" else TOKEN_FIELDS[key]
                if multiple_choice and key != "labels":
                    batch[key] = torch.tensor([[_pad(c, length, pad) for c in v] for v in values], dtype=torch.long)
                else:
                    batch[key] = torch.tensor([_pad(v, length, pad) for v in values], dtype=torch.long)
            # anything else (strings, nested metadata of other formats) is not a model input
        return batch


def _pad(seq, length: int, value: int) -> list:
    return list(seq) + [value] * (length - len(seq))
