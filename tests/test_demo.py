"""`xrobust demo` end to end, as a user runs it: every target task beats a chance baseline on the
English dev set, and zero-shot transfer is measurable in the other languages."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from world import run_cli

pytestmark = [pytest.mark.multirank, pytest.mark.slow]


def _baselines(data_root):
    """Scores of trivial predictors on English dev, with the project's own metric functions."""
    from xrobust.data.loading import load_examples
    from xrobust.evaluation import metrics as M
    from xrobust.tasks import get_task

    out = {}
    spec = get_task("demo_xnli")
    ex = load_examples(spec, "dev", "en", root=data_root)
    majority = Counter(ex["label"]).most_common(1)[0][0]
    out["demo_xnli"] = M.accuracy([spec.labels[i] for i in ex["label"]], [spec.labels[majority]] * len(ex))["accuracy"]
    for name in ("demo_pos", "demo_ner"):
        spec = get_task(name)
        ex = load_examples(spec, "dev", "en", root=data_root)
        golds = [[spec.labels[t] for t in tags] for tags in ex["tags"]]
        tag = Counter(t for g in golds for t in g).most_common(1)[0][0]
        out[name] = M.seqeval_prf(golds, [[tag] * len(g) for g in golds])["f1"]
    spec = get_task("demo_xqa")
    ex = load_examples(spec, "dev", "en", root=data_root)
    gold = [(i, list(a["text"])) for i, a in zip(ex["id"], ex["answers"])]
    first_word = {i: c.split()[0] for i, c in zip(ex["id"], ex["context"])}
    scores = M.squad_scores(gold, first_word)
    out["demo_xqa"] = (scores["exact_match"] + scores["f1"]) / 2
    return out


def _score(metrics):
    if "exact_match" in metrics:
        return (metrics["exact_match"] + metrics["f1"]) / 2
    return metrics.get("f1", metrics.get("accuracy"))


def test_demo_beats_chance(tmp_path):
    proc = run_cli(["demo", "--out", str(tmp_path)], timeout=1500)
    run = tmp_path / "demo"
    assert f"run directory: {run}" in proc.stdout
    assert "demo_xnli" in proc.stdout  # the task-by-language table
    results = json.loads((run / "results.json").read_text())
    assert set(results["tasks"]) == {"demo_xnli", "demo_pos", "demo_ner", "demo_xqa", "demo_tatoeba"}
    assert list((run / "wandb").glob("offline-run-*/run-*.wandb")), "no offline W&B run"

    run_cli(["eval", "--run", str(run), "--split", "dev", "--languages", "en"])
    dev = json.loads((run / "eval-dev" / "results.json").read_text())["tasks"]
    chance = _baselines(tmp_path / "demo-world" / "data")
    for task, floor in chance.items():
        assert _score(dev[task]["languages"]["en"]) > floor + 5, (task, dev[task]["languages"]["en"], floor)

    # zero-shot: retrieval of translations is far above 1/N, and the classifier transfers
    tatoeba = results["tasks"]["demo_tatoeba"]["languages"]
    n = sum(1 for _ in open(tmp_path / "demo-world" / "data" / "demo_tatoeba" / "test-xa.jsonl"))
    for lang, metrics in tatoeba.items():
        assert metrics["accuracy"] > 5 * 100 / n, (lang, metrics)
    xnli = results["tasks"]["demo_xnli"]["languages"]
    zero_shot = sum(xnli[lang]["accuracy"] for lang in ("xa", "xb", "xc")) / 3
    assert zero_shot > 100 / 3 + 5, xnli
