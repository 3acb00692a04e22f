"""The study report on run directories whose prediction and label files are written here with known
quality per cell: means over seeds, differences with intervals, identical and incomplete cells, files."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib

import numpy as np
import pytest
import yaml

from xrobust.evaluation.results import build_results, language_score
from xrobust.evaluation.scorer import score_language
from xrobust.study.execute import phase_dirs, unit_done
from xrobust.study.plan import build_plan
from xrobust.study.report import build_report, markdown, write_report
from xrobust.study.spec import load_study
from xrobust.tasks import get_task

LANGS = {t: list(get_task(t).split_languages("test")) for t in ("demo_xnli", "demo_pos", "demo_tatoeba")}
QUALITY = {("none", "none"): 0.5, ("multitask", "none"): 0.9, ("multitask", "freelb"): 0.9}  # P(right)


def _study(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({
        "base": "demo", "output_dir": str(tmp_path / "runs"),
        "phases": {"target": {"tasks": ["demo_xnli", "demo_pos"]}},
        "study": {"name": "s", "intermediate": ["none", "multitask"], "method": ["none", "freelb"],
                  "method_phases": ["intermediate"], "seeds": [1, 2],
                  "targets": ["demo_xnli", "demo_pos", "demo_tatoeba"], "bootstrap": {"samples": 2000}}}))
    return path


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _fabricate(unit, quality: float, seed: int):
    """What a finished run leaves: completion records, then predictions, labels and results.json."""
    for d in phase_dirs(unit):
        _write(d / "phase_complete.json", "{}")
    rng = np.random.default_rng(seed)
    scores = {}
    for task in unit.evaluates:
        spec = get_task(task)
        for lang in LANGS[task]:
            gold_rng = np.random.default_rng(zlib.crc32(f"{task}/{lang}".encode()))  # one test set per task/language
            pred, gold = unit.run_dir / "predictions" / task / f"test-{lang}.tsv", unit.run_dir / "labels" / task / f"test-{lang}.tsv"
            if spec.format == "tagging":
                golds = [[str(gold_rng.choice(spec.labels)) for _ in range(gold_rng.integers(1, 8))] for _ in range(120)]
                preds = [[t if rng.random() < quality else str(rng.choice(spec.labels)) for t in s] for s in golds]
                _write(gold, "".join("\n".join(s) + "\n\n" for s in golds))
                _write(pred, "".join("\n".join(s) + "\n\n" for s in preds))
            else:
                golds = [str(x) for x in gold_rng.integers(0, 3, size=150)]
                preds = [g if rng.random() < quality else str((int(g) + 1) % 3) for g in golds]
                _write(gold, "".join(f"{x}\n" for x in golds))
                _write(pred, "".join(f"{x}\n" for x in preds))
            scores.setdefault(task, {})[lang] = score_language(task, lang, pred, gold)
    _write(unit.run_dir / "results.json", json.dumps(build_results(scores)))


def _fabricate_study(plan, skip=()):
    for (inter, method, seed), run in plan.runs.items():
        for key in (run.cell, run.encoder):
            unit = plan.units[key]
            if key in skip or unit_done(unit):
                continue
            quality = 0.7 if unit.kind == "pretrained" else QUALITY[(inter, method)]
            _fabricate(unit, quality, seed=zlib.crc32(key.encode()))


def _values(plan, inter, method, task, lang):
    out = []
    for seed in plan.study.seeds:
        run = plan.runs[(inter, method, seed)]
        unit = plan.units[run.encoder if task == "demo_tatoeba" else run.cell]
        results = json.loads((unit.run_dir / "results.json").read_text())
        out.append(language_score(task, results["tasks"][task]["languages"][lang]))
    return np.array(out)


def test_report_numbers(tmp_path):
    plan = build_plan(load_study(str(_study(tmp_path))))
    _fabricate_study(plan)
    report = build_report(plan, samples=2000, seed=0, confidence=0.95)
    cells = {(c["intermediate"], c["method"]): c for c in report["cells"]}
    assert report["tasks"] == ["demo_xnli", "demo_pos", "demo_tatoeba"]
    assert report["languages"] == LANGS
    base = cells[("none", "none")]
    for task, langs in LANGS.items():
        for lang in langs:
            v = _values(plan, "none", "none", task, lang)
            assert base["scores"][task][lang]["mean"] == pytest.approx(v.mean())
            assert base["scores"][task][lang]["std"] == pytest.approx(v.std(ddof=1))
    task_avgs = [np.mean([_values(plan, "none", "none", t, l) for l in ls], axis=0) for t, ls in LANGS.items()]
    assert base["scores"]["avg"]["mean"] == pytest.approx(np.mean(task_avgs))

    by = {(c["kind"], *c["a"]): c["rows"] for c in report["comparisons"]}
    better = by[("baseline", "multitask", "none")]
    d = _values(plan, "multitask", "none", "demo_xnli", "xa") - _values(plan, "none", "none", "demo_xnli", "xa")
    assert better["demo_xnli"]["xa"]["diff"] == pytest.approx(d.mean())
    assert better["demo_xnli"]["avg"]["excludes_zero"] and better["avg"]["avg"]["low"] > 0  # 0.9 vs 0.5 right
    assert better["demo_tatoeba"]["avg"]["low"] < better["demo_tatoeba"]["avg"]["diff"] < better["demo_tatoeba"]["avg"]["high"]
    # method freelb applies to the intermediate phase only: with intermediate none it is the baseline's runs
    assert cells[("none", "freelb")]["same_runs_as"] == "none/none"
    same = by[("baseline", "none", "freelb")]
    assert all(r == {"diff": 0.0, "low": 0.0, "high": 0.0, "excludes_zero": False}
               for body in same.values() for r in body.values())
    effect = by[("method", "multitask", "freelb")]  # same quality: an interval around 0
    assert effect["avg"]["avg"]["low"] < effect["avg"]["avg"]["diff"] < effect["avg"]["avg"]["high"]

    text = markdown(report)
    assert "## Method `none`: score, Δ to the baseline" in text and "## Method effect: `freelb` minus `none`" in text
    assert "(baseline)" in text and "## demo_pos per language" in text

    written = write_report(report, tmp_path / "report")
    names = {p.name for p in written}
    assert {"report.md", "report.json", "cells.csv", "differences.csv", "delta.png", "effect.png",
            "languages_demo_xnli.png", "languages_demo_tatoeba.png"} <= names
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written if p.suffix == ".png")
    rows = (tmp_path / "report" / "differences.csv").read_text().splitlines()
    groups = sum(len(ls) for ls in LANGS.values())
    assert rows[0].startswith("comparison,intermediate,method") and len(rows) == 1 + 5 * (groups + 3 + 1)  # 3 vs
    # the baseline and 2 method effects, each per task/language, per task and overall


def test_missing_seed_is_reported_not_averaged(tmp_path):
    study = _study(tmp_path)
    plan = build_plan(load_study(str(study)))
    _fabricate_study(plan, skip={"cells/multitask-freelb-s2"})
    report = build_report(plan, samples=500, seed=0, confidence=0.95)
    cell = next(c for c in report["cells"] if (c["intermediate"], c["method"]) == ("multitask", "freelb"))
    assert cell["seeds"] == [1] and cell["missing_seeds"] == [2] and cell["scores"] is None
    assert not any(c["a"] == ["multitask", "freelb"] for c in report["comparisons"])
    text = markdown(report)
    assert "## Incomplete cells" in text and "| multitask/freelb | 1 | seeds 2 |" in text
    res = subprocess.run([sys.executable, "-m", "xrobust.cli", "study", "report", "--config", str(study),
                          "--no-wandb", "--samples", "500", "--workers", "1"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "incomplete" in res.stdout and (tmp_path / "runs" / "s" / "report" / "report.md").is_file()
    assert list((tmp_path / "runs" / "s" / "cache").glob("*.npz"))  # per-example scores cached per run
