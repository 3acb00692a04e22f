"""results.json, markdown tables, PNG plots and `xrobust compare`."""

import json

import pytest

from xrobust.cli import main
from xrobust.errors import DataError
from xrobust.evaluation import metrics as M
from xrobust.evaluation.plots import delta_png, heatmap_png
from xrobust.evaluation.report import (build_results, compare_markdown, language_deltas, load_results,
                                       write_report, write_results, xtreme_markdown)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _scores(shift=0.0, tasks=None):
    out = {}
    for task in tasks or M.TASK2LANGS:
        langs = M.TASK2LANGS[task][:3]
        if task in M.QA_TASKS:
            out[task] = {l: {"exact_match": 40.0 + shift, "f1": 60.0 + shift} for l in langs}
        elif task in ("panx", "udpos", "bucc2018"):
            out[task] = {l: {"f1": 70.0 + i + shift, "precision": 75.0, "recall": 65.0} for i, l in enumerate(langs)}
        else:
            out[task] = {l: {"accuracy": 80.0 + shift} for l in langs}
    return out


def test_build_results_schema_and_score():
    r = build_results(_scores(), {"layer": 14})
    assert r["tasks"]["xquad"]["avg"] == {"exact_match": 40.0, "f1": 60.0, "metric": 50.0}
    assert r["tasks"]["panx"]["avg"]["metric"] == 71.0  # mean of 70, 71, 72
    # 2 accuracy tasks + tatoeba at 80, 3 f1 tasks at 71, 3 QA tasks at 50
    assert r["score"] == pytest.approx((3 * 80 + 3 * 71 + 3 * 50) / 9)
    assert r["groups"]["qa"] == 50.0 and r["settings"] == {"layer": 14}
    partial = build_results(_scores(tasks=["xnli"]))
    assert partial["score"] is None and partial["groups"] == {}


def test_xtreme_markdown_tables():
    md = xtreme_markdown(build_results(_scores(), {"pooling": "mean"}))
    assert "| score | 80.0 | 80.0 | 71.0 | 71.0 | 71.0 | 80.0 | 50.0 | 50.0 | 50.0 | 67.0 |" in md
    assert "## xquad" in md and "| lang | exact_match | f1 |" in md and "| **avg** | 40.0 | 60.0 |" in md
    assert "| vi | 72.0 | 75.0 | 65.0 |" in md  # panx third language (ar, he, vi)
    assert "- pooling: `\"mean\"`" in md


def test_results_roundtrip_and_validation(tmp_path):
    r = build_results(_scores())
    write_results(tmp_path / "run" / "results.json", r)
    assert load_results(tmp_path / "run") == r
    (tmp_path / "bad.json").write_text(json.dumps({"tasks": {"xnli": {"languages": {"en": {"accuracy": "high"}}, "avg": {}}}}))
    with pytest.raises(DataError, match=r"bad\.json: tasks\.xnli\.languages\.en must map metric names to numbers"):
        load_results(tmp_path / "bad.json")
    with pytest.raises(DataError, match="results file not found"):
        load_results(tmp_path / "missing")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(DataError, match="not valid JSON"):
        load_results(tmp_path / "broken.json")


def test_compare_markdown_and_deltas():
    a, b = build_results(_scores()), build_results(_scores(shift=2.0, tasks=["xnli", "mlqa"]))
    md = compare_markdown({"base": a, "adv": b})
    assert "| task | lang | base | adv | Δ adv |" in md
    assert "| xnli | ar | 80.0 | 82.0 | +2.0 |" in md
    assert "| mlqa | en | 50.0 | 52.0 | +2.0 |" in md
    assert "| pawsx | de | 80.0 | - | - |" in md  # task missing from the second run
    assert "| XTREME |  | 67.0 | - | - |" in md
    d = language_deltas(a, b)
    assert set(d) == {"xnli", "mlqa"} and d["mlqa"]["en"] == pytest.approx(2.0)


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    import matplotlib.image as mpimg
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50


def test_plots_are_valid_pngs(tmp_path):
    a, b = build_results(_scores()), build_results(_scores(shift=-1.5))
    heatmap_png(a, tmp_path / "h.png")
    delta_png(a, b, tmp_path / "d.png", "a", "b")
    delta_png(a, build_results(_scores(tasks=["xnli"]))
              | {"tasks": {"other": {"languages": {"en": {"accuracy": 1.0}}, "avg": {}}}}, tmp_path / "e.png")
    for name in ("h.png", "d.png", "e.png"):
        _assert_png(tmp_path / name)
    written = write_report(a, tmp_path / "report")
    assert [p.name for p in written] == ["report.md", "heatmap.png"]
    assert "heatmap.png" in (tmp_path / "report" / "report.md").read_text()
    _assert_png(tmp_path / "report" / "heatmap.png")


def test_compare_cli(tmp_path, capsys):
    write_results(tmp_path / "base" / "results.json", build_results(_scores()))
    write_results(tmp_path / "adv run" / "results.json", build_results(_scores(shift=1.0)))
    rc = main(["compare", str(tmp_path / "base"), str(tmp_path / "adv run" / "results.json"), "--out", str(tmp_path / "cmp")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "| task | lang | base | adv run | Δ adv run |" in out and "| XTREME |  | 67.0 | 68.0 | +1.0 |" in out
    _assert_png(tmp_path / "cmp" / "delta_adv_run.png")
    assert (tmp_path / "cmp" / "compare.md").read_text().startswith("| task |")
    assert main(["compare", str(tmp_path / "base")]) == 2
    assert main(["compare", str(tmp_path / "base"), str(tmp_path / "nope")]) == 2
