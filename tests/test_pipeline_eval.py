"""The pipeline end to end on 2 ranks (intermediate -> target -> zero-shot evaluation), then the run is
re-scored by the official-layout scorer, re-evaluated, compared with a second run, and plotted."""

from __future__ import annotations

import json

import pytest

from world import build_small_world, run_cli, write_config

pytestmark = [pytest.mark.multirank, pytest.mark.slow]

TARGETS = ["demo_xnli", "demo_pos", "demo_ner", "demo_xqa"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    world = build_small_world(tmp)
    small = {"batch_size": 16, "micro_batch_size": 8, "max_steps": 4, "eval_every": 0, "max_dev_examples": 20}
    paths = []
    for name, seed in (("a", 1), ("b", 2)):
        cfg = write_config(world, tmp / f"{name}.yaml", name, tmp / "runs", seed=seed,
                           phases={"intermediate": {"tasks": ["demo_nli", "demo_tag"], **small},
                                   "target": {"tasks": TARGETS, "multitask": False, **small}},
                           evaluation={"tasks": TARGETS + ["demo_tatoeba"], "max_examples": 30, "layer": 2})
        run_cli(["pipeline", "--config", str(cfg)], ranks=2 if name == "a" else 1)
        paths.append(tmp / "runs" / name)
    return paths


def test_run_is_self_describing(runs):
    run = runs[0]
    for name in ("config.yaml", "environment.json", "models.json", "results.json", "report.md", "heatmap.png"):
        assert (run / name).is_file(), name
    env = json.loads((run / "environment.json").read_text())
    assert env["world_size"] == 2 and env["deepspeed"]
    models = json.loads((run / "models.json").read_text())["tasks"]
    for task in TARGETS:  # X-STILTs: one target run per task, each from the intermediate encoder
        assert (run / "target" / task / "model" / "heads.json").is_file()
        assert models[task].endswith(f"target/{task}/model")
    results = json.loads((run / "results.json").read_text())
    assert set(results["tasks"]) == set(TARGETS) | {"demo_tatoeba"}
    assert set(results["tasks"]["demo_xnli"]["languages"]) == {"en", "xa", "xb", "xc"}
    assert set(results["tasks"]["demo_tatoeba"]["languages"]) == {"xa", "xb", "xc"}
    assert results["settings"]["retrieval_layer"] == 2 and results["settings"]["retrieval_pooling"] == "mean"


def test_official_scorer_reproduces_results(runs, tmp_path):
    run = runs[0]
    out = tmp_path / "scores.json"
    run_cli(["score", "--prediction-folder", str(run / "predictions"), "--label-folder", str(run / "labels"),
             "--output-file", str(out)])
    official = json.loads(out.read_text())
    results = json.loads((run / "results.json").read_text())
    for task, entry in results["tasks"].items():
        for lang, metrics in entry["languages"].items():
            for metric, value in metrics.items():
                assert official[task][metric][lang] == pytest.approx(value, abs=1e-9), (task, lang, metric)


def test_eval_command_on_english_dev(runs):
    run = runs[0]
    proc = run_cli(["eval", "--run", str(run), "--split", "dev", "--languages", "en", "--tasks", "demo_xnli"])
    assert "demo_xnli" in proc.stdout
    results = json.loads((run / "eval-dev" / "results.json").read_text())
    assert list(results["tasks"]) == ["demo_xnli"] and list(results["tasks"]["demo_xnli"]["languages"]) == ["en"]
    assert results["settings"]["split"] == "dev"
    assert (run / "eval-dev" / "report.md").is_file()
    # more languages add to the split's results; the test-split benchmark file is untouched
    before = (run / "results.json").read_bytes()
    run_cli(["eval", "--run", str(run), "--split", "dev", "--languages", "xa", "--tasks", "demo_xnli"])
    results = json.loads((run / "eval-dev" / "results.json").read_text())
    assert set(results["tasks"]["demo_xnli"]["languages"]) == {"en", "xa"}
    assert (run / "results.json").read_bytes() == before


def test_compare_two_runs_writes_valid_png(runs, tmp_path):
    from PIL import Image

    proc = run_cli(["compare", str(runs[1]), str(runs[0]), "--out", str(tmp_path / "cmp")])
    assert "demo_pos" in proc.stdout
    pngs = sorted((tmp_path / "cmp").glob("*.png")) + [runs[0] / "heatmap.png"]
    assert len(pngs) >= 2
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(png) as im:
            im.verify()
