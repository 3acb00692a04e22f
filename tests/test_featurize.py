"""Tests for the offline tokenizer builder and the per-format featurizers."""

from __future__ import annotations

from fixtures_tokenizer import SYLLABLES, build_tokenizer, tokenizer  # noqa: F401  (pytest fixture)


def test_tokenizer_is_fast_xlmr_layout_and_reloads(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    assert tokenizer.is_fast
    # XLM-R (fairseq) special ids, which the model code and the collator rely on
    assert (tokenizer.cls_token_id, tokenizer.pad_token_id, tokenizer.sep_token_id, tokenizer.unk_token_id) == (0, 1, 2, 3)
    assert tokenizer.mask_token_id == len(tokenizer) - 1
    assert 100 < len(tokenizer) <= 502
    reloaded = AutoTokenizer.from_pretrained(str(tokenizer.name_or_path))
    text = "北京是首都 бакоте kabeto 123"
    assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    ids = enc["input_ids"]
    assert tokenizer.unk_token_id not in ids  # every script in the corpus is covered
    # offsets point back into the original text; a bare "▁" piece shares the next piece's span
    spans = sorted(set(map(tuple, enc["offset_mapping"])))
    covered = "".join(text[a:b] for a, b in spans)
    assert covered.replace(" ", "") == text.replace(" ", "")


def test_tokenizer_training_is_deterministic(tokenizer, tmp_path):
    from xrobust.data.tokenizer import tokenizer_fingerprint

    again = build_tokenizer(tmp_path / "again")
    assert tokenizer_fingerprint(again) == tokenizer_fingerprint(tokenizer)
    other = build_tokenizer(tmp_path / "other", vocab_size=300)
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(tokenizer)


def test_tokenizer_rejects_empty_corpus(tmp_path):
    import pytest

    from xrobust.data.tokenizer import train_sentencepiece_tokenizer
    from xrobust.errors import DataError

    with pytest.raises(DataError, match="no non-empty sentences"):
        train_sentencepiece_tokenizer(["", "  "], tmp_path / "t", 100)
