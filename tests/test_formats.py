"""The task-format registry (xrobust.tasks.formats) and the model's losses built on it."""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "scripts"))

from adv_common import FORMATS as HEAD_FORMATS, make_batch, tiny_model  # noqa: E402

from xrobust.tasks.featurizers import IGNORE_INDEX  # noqa: E402
from xrobust.tasks.formats import FORMATS, TARGET_KEYS, get_format  # noqa: E402

PACKAGE = Path(__file__).resolve().parents[1] / "xrobust"


def test_every_format_has_its_featurizer_and_post_processing():
    from xrobust.tasks import featurizers, postprocessors

    for name, fmt in FORMATS.items():
        assert fmt.featurizer is getattr(featurizers, name), name
        # a format with a head turns logits into predictions; retrieval is scored by similarity
        assert (fmt.postprocess is getattr(postprocessors, name, None)) and (fmt.postprocess is None) != fmt.has_head


def test_one_owner_for_target_keys_and_ignore_index():
    import xrobust.data.collate as collate

    assert TARGET_KEYS == ("labels", "start_positions", "end_positions")
    assert collate.TARGET_KEYS is TARGET_KEYS and collate.IGNORE_INDEX == IGNORE_INDEX == -100


def test_unknown_format_names_the_known_ones():
    from xrobust.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown task format 'ner'.*classification, multiple_choice"):
        get_format("ner")
    assert get_format(FORMATS["tagging"]) is FORMATS["tagging"]


def test_raw_schema_keeps_labels_as_strings():
    """Adapters emit the raw schema, loading casts to the canonical one: only label types and
    retrieval's other side differ."""
    for fmt in FORMATS.values():
        raw, canonical = fmt.features(raw=True), fmt.features()
        extra = [c for c in raw if c not in canonical]
        assert extra == (["target_id", "target_text"] if fmt.name == "retrieval" else []), fmt.name
        for column, kind in fmt.columns.items():
            if kind in ("label", "labels"):
                assert "string" in str(raw[column]) and "int64" in str(canonical[column])
            else:
                assert str(raw[column]) == str(canonical[column])


def _format_name_comparisons(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                values = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
                if any(isinstance(v, ast.Constant) and v.value in FORMATS for v in values):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return found


def test_no_code_outside_the_registry_compares_format_names():
    """Code asks the format object; format names only key the registry (the demo world and the
    benchmarks, tools on top, write and read their own data by name)."""
    skip = {PACKAGE / "tasks" / "formats.py"}
    hits = [hit for path in sorted(PACKAGE.rglob("*.py"))
            if path not in skip and path.parent.name not in ("demo", "bench")
            for hit in _format_name_comparisons(path)]
    assert hits == []


@pytest.mark.parametrize("fmt", HEAD_FORMATS)
@torch.no_grad()
def test_model_loss_inputs_and_divergence(fmt):
    from xrobust.modeling.divergence import symmetric_kl

    model = tiny_model(seed=3)
    model.eval()
    batch = make_batch(fmt, seed=11)
    out = model(**batch)
    inputs = model.inputs(batch)
    assert not set(inputs) & set(TARGET_KEYS) and set(batch) - set(inputs) <= set(TARGET_KEYS)
    logits = model(**inputs).logits
    assert model(**inputs).loss is None
    torch.testing.assert_close(model.loss(batch, logits), out.loss, rtol=0, atol=0)

    other = logits + 0.1 * torch.randn(logits.shape, generator=torch.Generator().manual_seed(5))
    mask = batch["attention_mask"]
    mask = mask.flatten(0, 1) if mask.dim() == 3 else mask
    labels = batch.get("labels") if fmt == "tagging" else None  # what SMART and R3F passed before
    want = symmetric_kl(fmt, other, logits, attention_mask=mask, labels=labels)
    torch.testing.assert_close(model.symmetric_kl(batch, other, logits), want, rtol=0, atol=0)
    assert float(want) > 0
    one_sided = model.divergence("one_sided", batch, other, logits)
    assert float(one_sided) > 0 and not torch.equal(one_sided, want)


def test_rs_da_rewrites_only_the_augmentable_fields():
    fmt = get_format("span_qa")
    ex = {"id": "q1", "question": "Who came", "context": "Ann came", "answers": {"text": ["Ann"], "answer_start": [0]}}
    out = fmt.augment(ex, str.upper, str.upper)
    assert out == {**ex, "question": "WHO CAME"} and ex["question"] == "Who came"
    tagged = get_format("tagging").augment({"id": "t", "tokens": ["a", "b"], "tags": [0, 1]}, str.upper, str.title)
    assert tagged["tokens"] == ["A", "B"] and tagged["tags"] == [0, 1]
    from xrobust.errors import DataError

    with pytest.raises(DataError, match="retrieval.*no training text"):
        get_format("retrieval").augment({"id": "r", "text": "x"}, str.upper, str.upper)
