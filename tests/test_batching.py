"""Collator padding and the length-grouped, resumable batch sampler."""

from __future__ import annotations

import random

import pytest
import torch

from xrobust.data.batching import LengthGroupedBatchSampler, padding_stats
from xrobust.data.collate import Collator
from xrobust.errors import CheckpointError, DataError

PAD = 1


def test_collator_pads_dynamically_with_head():
    feats = [
        {"input_ids": [0, 5, 6, 2], "attention_mask": [1, 1, 1, 1], "labels": [-100, 3, 4, -100],
         "example_id": "a", "word_ids": [-1, 0, 1, -1], "n_words": 2},
        {"input_ids": [0, 7, 2], "attention_mask": [1, 1, 1], "labels": [-100, 1, -100],
         "example_id": "b", "word_ids": [-1, 0, -1], "n_words": 1},
    ]
    b = Collator(pad_token_id=PAD, head="udpos")(feats)
    assert b["head"] == "udpos"
    assert set(b) == {"head", "input_ids", "attention_mask", "labels"}  # metadata is not a model input
    assert b["input_ids"].tolist() == [[0, 5, 6, 2], [0, 7, 2, PAD]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert b["labels"].tolist() == [[-100, 3, 4, -100], [-100, 1, -100, -100]]
    assert b["input_ids"].dtype == torch.long
    meta = Collator(pad_token_id=PAD, keep_meta=True)(feats)
    assert meta["example_id"] == ["a", "b"] and "head" not in meta


def test_collator_scalar_labels_qa_positions_and_fixed_length():
    feats = [{"input_ids": [0, 5, 2], "attention_mask": [1, 1, 1], "start_positions": 1, "end_positions": 1},
             {"input_ids": [0, 2], "attention_mask": [1, 1], "start_positions": 0, "end_positions": 0}]
    b = Collator(pad_token_id=PAD, padding="max_length", max_length=6)(feats)
    assert b["input_ids"].shape == (2, 6) and b["start_positions"].tolist() == [1, 0]
    assert b["attention_mask"].sum().item() == 5
    b8 = Collator(pad_token_id=PAD, pad_to_multiple_of=8)(feats)
    assert b8["input_ids"].shape == (2, 8)
    with pytest.raises(DataError, match="max_length=2"):
        Collator(pad_token_id=PAD, padding="max_length", max_length=2)(feats)


def test_collator_multiple_choice_pads_across_choices():
    feats = [{"input_ids": [[0, 5, 2], [0, 5, 6, 7, 2]], "attention_mask": [[1] * 3, [1] * 5], "labels": 1},
             {"input_ids": [[0, 2], [0, 9, 2]], "attention_mask": [[1] * 2, [1] * 3], "labels": 0}]
    b = Collator(pad_token_id=PAD, head="copa")(feats)
    assert b["input_ids"].shape == (2, 2, 5) and b["attention_mask"].shape == (2, 2, 5)
    assert b["input_ids"][1, 0].tolist() == [0, 2, PAD, PAD, PAD]
    assert b["attention_mask"][1, 0].tolist() == [1, 1, 0, 0, 0]
    assert b["labels"].tolist() == [1, 0]
    with pytest.raises(DataError, match="mixes choice counts"):
        Collator(pad_token_id=PAD)([feats[0], {"input_ids": [[0, 2]], "attention_mask": [[1, 1]], "labels": 0}])


def test_collator_uses_tokenizer_pad_id():
    class Tok:
        pad_token_id = 42

    b = Collator(Tok())([{"input_ids": [3, 4], "attention_mask": [1, 1]}, {"input_ids": [3], "attention_mask": [1]}])
    assert b["input_ids"][1].tolist() == [3, 42]


def lengths(n=1000, seed=0):
    rng = random.Random(seed)
    return [rng.randint(5, 300) for _ in range(n)]


def test_sampler_covers_each_index_once_and_groups_by_length():
    ls = lengths()
    s = LengthGroupedBatchSampler(ls, 16, seed=3, mega_batch_mult=10)
    batches = list(s)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(ls)))
    assert max(ls[i] for i in batches[0]) == max(ls)  # longest batch first
    grouped = padding_stats(batches, ls)["efficiency"]
    plain = padding_stats(list(LengthGroupedBatchSampler(ls, 16, seed=3, group_by_length=False)), ls)["efficiency"]
    fixed = padding_stats(batches, ls, max_length=300)["efficiency"]
    assert grouped > 0.9 and grouped > plain > fixed


def test_sampler_deterministic_per_seed_and_epoch():
    ls = lengths()
    a, b = LengthGroupedBatchSampler(ls, 8, seed=1), LengthGroupedBatchSampler(ls, 8, seed=1)
    assert list(a) == list(b)
    assert a.epoch == 1  # a finished epoch rolls over
    e1 = list(a)
    assert e1 != list(LengthGroupedBatchSampler(ls, 8, seed=1))  # a new epoch reshuffles
    assert list(LengthGroupedBatchSampler(ls, 8, seed=2)) != list(LengthGroupedBatchSampler(ls, 8, seed=1))


def test_sampler_resume_mid_epoch_sees_same_order():
    ls = lengths()
    ref = LengthGroupedBatchSampler(ls, 8, seed=5)
    ref.set_epoch(2)
    full = list(ref)
    run = LengthGroupedBatchSampler(ls, 8, seed=5)
    run.set_epoch(2)
    it = iter(run)
    seen = [next(it) for _ in range(17)]
    state = run.state_dict()
    resumed = LengthGroupedBatchSampler(ls, 8, seed=5)
    resumed.load_state_dict(state)
    assert seen + list(resumed) == full
    with pytest.raises(CheckpointError, match="batch_size"):
        LengthGroupedBatchSampler(ls, 4, seed=5).load_state_dict(state)


def test_sampler_shards_across_ranks():
    ls = lengths(101)
    shards = [list(LengthGroupedBatchSampler(ls, 4, seed=0, num_replicas=2, rank=r)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 13  # 26 batches of 4 (+1 leftover) -> 13 each
    assert not set(i for b in shards[0] for i in b) & set(i for b in shards[1] for i in b)


def test_collator_with_real_features(tokenizer):
    from datasets import Dataset
    from types import SimpleNamespace

    from xrobust.data.featurize import feature_lengths, featurize

    ex = Dataset.from_list([{"id": f"x{k}", "tokens": ["kabe"] * (k + 1), "tags": [0] * (k + 1)} for k in range(12)])
    feats = featurize(ex, SimpleNamespace(name="t", format="tagging", labels=["O"], pair=False), tokenizer,
                      train=True, max_length=64)
    s = LengthGroupedBatchSampler(feature_lengths(feats), 4, seed=0)
    coll = Collator(tokenizer, head="t")
    for idx in s:
        b = coll([feats[i] for i in idx])
        assert b["input_ids"].shape == b["labels"].shape
        assert (b["input_ids"][b["attention_mask"] == 0] == tokenizer.pad_token_id).all()
        assert ((b["labels"] != -100).sum(1) == torch.tensor([feats[i]["n_words"] for i in idx])).all()


from fixtures_tokenizer import tokenizer  # noqa: E402,F401  (pytest fixture)
