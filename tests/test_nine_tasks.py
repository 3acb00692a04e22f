"""The shipped `multitask` preset end to end against the replica hub, on 2 ranks under ZeRO-3:
all nine intermediate tasks (CCG from a local CoNLL file) in one multi-task phase, then one target
run per format (XNLI, PAN-X, XQuAD) and zero-shot evaluation of XNLI, PAN-X, XQuAD and Tatoeba,
through `xrobust pipeline` as a user runs it. Tiny encoder, few steps: this proves the data path
of every default source, not accuracy."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from fixtures_tokenizer import tokenizer  # noqa: F401  (session fixture)
from world import REPO, cli_command
from world import env as world_env
from xrobust.tasks import INTERMEDIATE_TASKS

pytestmark = [pytest.mark.multirank, pytest.mark.slow, pytest.mark.usefixtures("hub")]

SMALL = {"batch_size": 2, "micro_batch_size": 1, "max_length": 64, "eval_every": 0, "save_every": 0,
         "max_dev_examples": 4}
QA = {"doc_stride": 16, "max_query_length": 16}
LANGS = ["en", "de", "ru", "zh"]


def _encoder(path, tokenizer):
    import torch
    from transformers import AutoModel, XLMRobertaConfig

    torch.manual_seed(0)
    cfg = XLMRobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=130, pad_token_id=tokenizer.pad_token_id,
                           bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    AutoModel.from_config(cfg, add_pooling_layer=False).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _ccg(folder):
    folder.mkdir()
    tags = ["NP", "S\\NP", "(S\\NP)/NP", "NP/N", "N", "."]
    for split, n in (("train", 8), ("dev", 3), ("test", 3)):
        sentences = [[("the", "NP/N"), ("dog", "N"), (["runs", "sees"][i % 2], tags[1 + i % 2]), (".", ".")]
                     for i in range(n)]
        (folder / f"{split}.conll").write_text("".join("".join(f"{w}\t{t}\n" for w, t in s) + "\n" for s in sentences))
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory, tokenizer, e2e_world):
    tmp = tmp_path_factory.mktemp("nine")
    cfg = {
        "base": "multitask", "name": "nine", "output_dir": str(tmp / "runs"), "deepspeed": "cpu",
        "model": {"name_or_path": str(_encoder(tmp / "encoder", tokenizer)), "dtype": "fp32", "dropout": 0.0},
        "tracking": {"mode": "disabled"},
        "data": {"cache_dir": str(tmp / "features"),
                 "sources": {"ccg": {"path": str(_ccg(tmp / "ccg") / "{split}.conll"), "format": "conll"}}},
        "phases": {"intermediate": {**SMALL, **QA, "max_steps": 4},
                   "target_classification": {**SMALL, "tasks": ["xnli"], "max_steps": 2},
                   "target_tagging": {**SMALL, "tasks": ["panx"], "max_steps": 2},
                   "target_qa": {**SMALL, **QA, "tasks": ["xquad"], "max_steps": 2}},
        "evaluation": {"tasks": ["xnli", "panx", "xquad", "tatoeba"], "languages": LANGS, "layer": 2,
                       "batch_size": 8},
    }
    path = tmp / "nine.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    # DeepSpeed's CPU comm op, built once per session before any rank starts (tests/e2e_world.py)
    env = {**world_env(), "TORCH_EXTENSIONS_DIR": str(e2e_world.torch_extensions)}
    proc = subprocess.run(cli_command(["pipeline", "--config", str(path)], ranks=2), env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return tmp / "runs" / "nine", proc


def test_multitask_preset_trains_all_nine_intermediate_tasks(run):
    root, _ = run
    config = yaml.safe_load((root / "config.yaml").read_text())
    assert config["phases"]["intermediate"]["tasks"] == list(INTERMEDIATE_TASKS)
    env = json.loads((root / "environment.json").read_text())
    assert env["world_size"] == 2
    report = json.loads((root / "intermediate" / "data_report.json").read_text())
    assert list(report) == list(INTERMEDIATE_TASKS)
    assert report["anli_plus"]["examples"] == 3 * 8 + 8 + 7  # ANLI r1-r3, MNLI, SNLI without its -1 row
    assert report["ccg"]["examples"] == 8 and report["cosmosqa"]["examples"] == 8
    steps = [json.loads(line) for line in (root / "intermediate" / "metrics.jsonl").read_text().splitlines()]
    assert len([r for r in steps if "loss" in r]) == 4


def test_zero_shot_results_for_one_task_per_format(run):
    root, proc = run
    results = json.loads((root / "results.json").read_text())
    assert set(results["tasks"]) == {"xnli", "panx", "xquad", "tatoeba"}
    for task in ("xnli", "panx", "xquad"):
        assert set(results["tasks"][task]["languages"]) == set(LANGS)
    assert set(results["tasks"]["tatoeba"]["languages"]) == {"de", "ru", "zh"}
    # what each language was evaluated on, in the results' settings: XQuAD's shifted answers were moved
    data = results["settings"]["data"]
    assert data["xquad"]["de"]["realigned"] == 1 and data["xquad"]["de"]["unaligned"] == 0
    assert data["xnli"]["zh"]["examples"] == 4
    for name in ("xnli", "panx", "xquad"):
        assert (root / "predictions" / name / "test-de.tsv").exists() or \
            (root / "predictions" / name / "test-de.json").exists()
    report = (root / "report.md").read_text()  # the results table
    assert all(name in report for name in ("xnli", "panx", "xquad", "tatoeba"))
