"""A task defined outside xrobust (docs/EXTENDING.md, "A new task"): this module defines a
classification task over local JSONL files and `xrobust train` trains it by reference,
`test_user_task:SENTIMENT`, with no edit to xrobust. The encoder is test_encoders' tiny BERT."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from test_encoders import WORDS, bert_dir  # noqa: F401  (the tiny BERT fixture)
from xrobust.cli import main
from xrobust.config import load_config
from xrobust.errors import ConfigError
from xrobust.tasks import INTERMEDIATE_TASKS, Adapter, HubSource, TaskSpec, all_tasks, get_task
from xrobust.tasks.adapters import label_name

REFERENCE = f"{__name__}:SENTIMENT"

# An existing format (classification) read from local files in the canonical layout
# (id, text_a, label): no adapter, no hub source.
SENTIMENT = TaskSpec(
    "toy_sentiment", "Toy sentiment", "classification", "intermediate", labels=("negative", "positive"),
    pair=False, languages=("en",), metric="accuracy", train_task="toy_sentiment", head=None, max_length=24,
    local_template="{root}/toy_sentiment/{split}.jsonl")

NOT_A_SPEC = {"name": "toy"}


def _sst2_columns(batch, rows, ctx):
    return {"id": [str(i) for i in batch["idx"]], "text_a": batch["sentence"], "text_b": [None] * len(rows),
            "label": [label_name(v, ctx.class_names.get("label")) for v in batch["label"]]}


# The hub route: a dataset of the replica hub (GLUE SST-2) through an Adapter of this module's own.
_ADAPTER = Adapter("my_sst2", "classification", required=("sentence", "label"), convert=_sst2_columns,
                   keep=lambda batch, ctx: [v != -1 for v in batch["label"]])
MY_SST2 = TaskSpec(
    "my_sst2", "My SST-2", "classification", "intermediate", labels=("negative", "positive"), pair=False,
    languages=("en",), metric="accuracy", train_task="my_sst2", head=None, max_length=64,
    sources={"dev": (HubSource("nyu-mll/glue", "sst2", "validation", _ADAPTER),)})


@pytest.fixture(scope="module", autouse=True)
def _restore_environment(restore_environment):
    yield


def _write_rows(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", 16, 1), ("dev", 8, 2)):
        rng = random.Random(seed)
        rows = [{"id": f"{split}-{i}", "text_a": " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))),
                 "label": SENTIMENT.labels[i % 2]} for i in range(n)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _config(tmp_path: Path, bert_dir: Path) -> Path:
    _write_rows(tmp_path / "data" / "toy_sentiment")
    cfg = {"name": "mine", "output_dir": str(tmp_path / "runs"), "seed": 3, "deepspeed": "cpu",
           "model": {"name_or_path": str(bert_dir), "dtype": "fp32", "dropout": 0.0},
           "tracking": {"mode": "disabled"},
           "data": {"root": str(tmp_path / "data"), "cache_dir": str(tmp_path / "cache")},
           "phases": {"intermediate": {"tasks": [REFERENCE], "batch_size": 4, "micro_batch_size": 4,
                                       "max_steps": 2, "lr": 1e-3, "eval_every": 0, "save_every": 0}}}
    path = tmp_path / "mine.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def test_a_task_of_ones_own_trains_by_reference(bert_dir, tmp_path):  # noqa: F811
    config = _config(tmp_path, bert_dir)
    assert main(["train", "--config", str(config), "--phase", "intermediate"]) == 0
    run = tmp_path / "runs" / "mine"
    records = [json.loads(line) for line in (run / "intermediate" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses), records
    assert {r["task"] for r in records if "loss" in r} == {REFERENCE}
    evals = [r["eval"] for r in records if "eval" in r]
    assert evals and set(evals[-1]) == {REFERENCE}  # English dev scored under the reference
    heads = json.loads((run / "intermediate" / "model" / "heads.json").read_text())
    assert [h["name"] for h in heads] == ["toy_sentiment"]  # the head is named after the spec (no '.' or ':')
    assert json.loads((run / "models.json").read_text())["tasks"] == {REFERENCE: "intermediate/model"}
    recorded = load_config(str(run / "config.yaml"))  # the recorded config names the task the same way
    assert recorded.phases["intermediate"].tasks == [REFERENCE]


def test_reference_resolution_and_its_errors():
    task = get_task(REFERENCE)
    assert (task.name, task.head_name, task.train_task, task.format) == \
        (REFERENCE, "toy_sentiment", REFERENCE, "classification")
    assert get_task(REFERENCE) is task  # imported once
    assert REFERENCE not in {t.name for t in all_tasks()} and REFERENCE not in INTERMEDIATE_TASKS
    with pytest.raises(ConfigError, match=r"task 'no_such_module:X': cannot import module 'no_such_module'"):
        get_task("no_such_module:X")
    with pytest.raises(ConfigError, match=rf"task '{__name__}:NOT_A_SPEC': expected a xrobust.tasks.TaskSpec "
                                          rf"at {__name__}.NOT_A_SPEC, got dict"):
        get_task(f"{__name__}:NOT_A_SPEC")
    with pytest.raises(ConfigError, match=r"unknown task 'nope'.*or a task of your own as 'module.path:ATTRIBUTE'"):
        get_task("nope")


def test_a_task_of_ones_own_loads_from_the_hub_with_its_own_adapter(hub):
    from xrobust.data.loading import load_examples

    mine = load_examples(f"{__name__}:MY_SST2", "dev")
    shipped = load_examples("sst2", "dev")  # the registry's SST-2 (adapter glue_sst2), the same rows
    assert len(mine) == len(shipped) > 0
    for key in ("id", "text_a", "label"):
        assert mine[key] == shipped[key], key
    assert get_task(f"{__name__}:MY_SST2").sources["dev"][0].to_dict()["adapter"] == "my_sst2"
