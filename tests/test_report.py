"""results.json, markdown tables, PNG plots and `xrobust compare`."""

import json

import pytest

from xrobust.cli import main
from xrobust.errors import DataError
from xrobust.evaluation import metrics as M
from xrobust.evaluation.plots import delta_png, heatmap_png
from xrobust.evaluation.report import compare_markdown, write_report, xtreme_markdown
from xrobust.evaluation.results import build_results, language_deltas, load_results, write_results

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


def _demo_results():
    langs = ["en", "xa", "xb", "xc"]
    return build_results({"demo_xnli": {l: {"accuracy": v} for l, v in zip(langs, [78.5, 32.0, 53.5, 43.5])},
                          "demo_tatoeba": {l: {"accuracy": v} for l, v in zip(langs[1:], [30.5, 19.5, 23.5])}})


def test_xtreme_column_explains_a_missing_score():
    demo = xtreme_markdown(_demo_results(), "Zero-shot results: demo")
    assert "| score | 24.5 | 51.9 | not defined (no XTREME task evaluated) |" in demo
    assert "none of them was evaluated" in demo and " - |" not in demo.split("## Scores per language")[0]
    partial = xtreme_markdown(build_results(_scores(tasks=["xnli", "mlqa"])))
    assert "not defined (2 of 9 XTREME tasks)" in partial and "this run lacks pawsx, panx" in partial
    assert "| score | 80.0 | 50.0 | not defined" in partial
    full = xtreme_markdown(build_results(_scores()))
    assert "| 67.0 |" in full and "not defined" not in full


def _write_labels(root):
    (root / "xnli").mkdir(parents=True)
    (root / "xnli" / "test-de.tsv").write_text("entailment\nneutral\ncontradiction\nneutral\n")
    (root / "tatoeba").mkdir()
    (root / "tatoeba" / "test-de.tsv").write_text("".join(f"{i}\n" for i in range(200)))
    (root / "panx").mkdir()
    (root / "panx" / "test-de.tsv").write_text("B-PER\nI-PER\nO\nO\n\nO\nB-LOC\n\n")
    (root / "udpos").mkdir()
    (root / "udpos" / "test-de.tsv").write_text("NOUN\n\nNOUN\n\nVERB\n\n")
    (root / "xquad").mkdir()
    articles = [{"paragraphs": [{"qas": [{"id": str(i), "answers": [{"text": t}]}]}]}
                for i, t in enumerate(["Anna Berg", "Kaldur", "Anna Berg", "the red cup"])]
    (root / "xquad" / "test-de.json").write_text(json.dumps({"data": articles}))
    (root / "unknown_task").mkdir()
    (root / "unknown_task" / "test-de.tsv").write_text("x\n")


def test_chance_levels_from_gold_files(tmp_path):
    from xrobust.evaluation.report import chance_levels

    _write_labels(tmp_path / "labels")
    chance = chance_levels(tmp_path / "labels")
    assert chance["xnli"]["de"] == pytest.approx(50.0)  # majority label: neutral, 2 of 4
    assert chance["tatoeba"]["de"] == pytest.approx(0.5)  # 1 of 200 candidates
    assert chance["panx"]["de"] == 0.0  # all "O": no entity found
    # every word NOUN: 2 of the 3 one-word chunks found, 2 of 3 predicted right
    assert chance["udpos"]["de"] == pytest.approx(200 / 3)
    # "Anna Berg" for every question: 2 of 4 exact; (EM 50 + F1 50) / 2
    assert chance["xquad"]["de"] == pytest.approx(50.0)
    assert "unknown_task" not in chance
    assert chance_levels(tmp_path / "missing") == {}


def test_heatmap_prints_values_chance_and_a_fitting_title(tmp_path):
    from xrobust.evaluation.plots import heatmap_figure, heatmap_title

    chance = {"demo_xnli": {l: 100 / 3 for l in ("en", "xa", "xb", "xc")},
              "demo_tatoeba": {l: 0.5 for l in ("xa", "xb", "xc")}}
    fig = heatmap_figure(_demo_results(), chance)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert {"78.5", "32.0", "53.5", "43.5", "30.5", "19.5", "23.5", "-"} == set(texts)  # "-": tatoeba has no en
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert rows == ["demo_tatoeba\n(chance 0.5)", "demo_xnli\n(chance 33.3)"]
    assert ax.get_title() == "Zero-shot scores per language"
    # the colour is the score relative to chance: xa's 32.0 (below chance) is red, xb's 53.5 blue
    image = ax.images[0].get_array()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["en", "xa", "xb", "xc"]
    assert image[1, 1] < 0 < image[1, 2] and image[0, 1] > 0 and image.mask[0, 0]
    assert heatmap_title(build_results(_scores())) == "XTREME zero-shot scores per language (XTREME score 67.0)"
    assert heatmap_title(build_results(_scores(tasks=["xnli"]))) == "XTREME zero-shot scores per language"
    # write_report finds the chance levels in the run's labels/ folder
    run = tmp_path / "run"
    _write_labels(run / "labels")
    write_report(build_results(_scores(tasks=["xnli", "tatoeba"])), run)
    md = (run / "report.md").read_text()
    assert "| xnli | 50.0 |" in md and "| tatoeba | 0.5 |" in md
    _assert_png(run / "heatmap.png")
