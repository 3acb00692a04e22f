"""Robustness curves (embedding noise, embedding-space PGD) and the generalized cross-lingual matrix.

A tiny run directory is built by hand: a small demo world, a 2-layer XLM-R encoder trained for a
few steps on English demo_xnli, an untrained demo_xqa head, saved in the layout phases export
(HF encoder + heads.pt/heads.json + tokenizer), plus config.yaml and models.json.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

WORLD_SIZES = {"train": 400, "dev": 40, "test": 40, "tatoeba": 20, "corpus_mono": 150, "corpus_parallel": 150,
               "corpus_codeswitch": 150, "vocab_size": 500}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _train_toy(model, tokenizer, spec, examples, steps: int, batch_size: int = 32, seed: int = 0) -> None:
    from xrobust.data.collate import Collator
    from xrobust.data.featurize import featurize

    feats = featurize(examples, spec, tokenizer, max_length=64, train=True)
    collate = Collator(tokenizer, head=spec.name)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randperm(len(feats), generator=g)[:batch_size].tolist()
        loss = model(**collate([feats[i] for i in idx])).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # tensors here are tiny: a second OpenMP thread only spins, and on a busy 2-core machine that
    # made the module ~10x slower
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def toy_run(one_thread, tmp_path_factory):
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from xrobust.data.loading import load_examples
    from xrobust.demo.world import build_world
    from xrobust.modeling import save_heads
    from xrobust.modeling.model import XRobustModel, head_spec_for
    from xrobust.tasks import get_task

    root = tmp_path_factory.mktemp("robustness")
    world = build_world(root / "world", seed=0, sizes=WORLD_SIZES)
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(world["model_config_dir"])
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    encoder = AutoModel.from_config(config, add_pooling_layer=False)
    xnli, xqa = get_task("demo_xnli"), get_task("demo_xqa")
    model = XRobustModel(encoder, [head_spec_for(xnli), head_spec_for(xqa)], dropout=0.0)
    tokenizer = AutoTokenizer.from_pretrained(world["tokenizer_dir"])
    train = load_examples(xnli, "train", "en", root=world["data_root"])
    _train_toy(model, tokenizer, xnli, train, steps=60)
    model_dir = root / "run" / "target"
    model_dir.mkdir(parents=True)
    model.encoder.save_pretrained(model_dir, safe_serialization=True)
    save_heads(model, model_dir)
    tokenizer.save_pretrained(model_dir)
    run = root / "run"
    cfg = {
        "base": "demo", "name": "run", "output_dir": str(root),
        "model": {"name_or_path": str(model_dir), "dropout": 0.0},
        "tracking": {"mode": "disabled"},
        "data": {"root": str(world["data_root"]), "cache_dir": str(root / "cache")},
        "evaluation": {"tasks": ["demo_xnli"], "split": "test", "batch_size": 16},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    models = {"demo_xnli": str(model_dir), "demo_xqa": str(model_dir), "phase:target": str(model_dir)}
    (run / "models.json").write_text(json.dumps(models))
    return {"root": root, "run": run, "world": world, "model_dir": model_dir}


def _assert_png(path: Path) -> None:
    """A decodable PNG with a real picture in it (not a blank canvas)."""
    from matplotlib.image import imread

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert np.unique(img.reshape(-1, img.shape[-1]), axis=0).shape[0] > 10


def _cfg(toy_run, *overrides):
    from xrobust.config import load_config

    return load_config(str(toy_run["run"] / "config.yaml"), list(overrides))


def _task_data(toy_run, task: str, lang: str, split: str = "test"):
    from transformers import AutoTokenizer

    from xrobust.evaluation.finished_run import phase_for
    from xrobust.tasks import get_task
    from xrobust.training.data import featurize_cached, load_split
    from xrobust.training.trainer import load_trained

    cfg = _cfg(toy_run)
    spec = get_task(task)
    model = load_trained(toy_run["model_dir"])
    tokenizer = AutoTokenizer.from_pretrained(toy_run["model_dir"])
    examples = load_split(cfg, spec, split, lang)
    features = featurize_cached(cfg, spec, examples, tokenizer, phase_for(cfg, task), train=False)
    return cfg, spec, model, tokenizer, examples, features


# -- noise at eps = 0 and the clean evaluation --------------------------------------------------------

@pytest.mark.parametrize("task,noise,norm", [("demo_xnli", "uniform", "l2"), ("demo_xnli", "normal", "linf"),
                                             ("demo_xqa", "normal", "l2")])
def test_zero_noise_equals_clean_metric_exactly(toy_run, task, noise, norm):
    from xrobust.evaluation.predict import forward_outputs, predict, score
    from xrobust.evaluation.robustness import Attack, attack_metric, perturbation

    cfg, spec, model, tokenizer, examples, features = _task_data(toy_run, task, "xb")
    clean = score(spec, examples, predict(model, spec, examples, features, tokenizer, 16), "xb")
    attack = Attack("noise", noise=noise, norm=norm, backend="eager")
    assert attack_metric(model, spec, examples, features, tokenizer, 16, attack, 0.0, "xb") == clean
    # not only the metric: the logits themselves are bit-identical to the evaluation path's
    ref = forward_outputs(model, features, tokenizer, spec.head, 16)
    got = forward_outputs(model, features, tokenizer, spec.head, 16, perturbation=perturbation(attack, 0.0))
    assert all(np.array_equal(a, b) for a, b in zip(ref, got))
    # and noise of a visible size does change them (the perturbation is really injected)
    moved = forward_outputs(model, features, tokenizer, spec.head, 16, perturbation=perturbation(attack, 1.0))
    assert any(not np.array_equal(a, b) for a, b in zip(ref, moved))


def test_noise_size_matches_its_definition():
    from xrobust.evaluation.robustness import Attack, noise_delta

    mask = torch.ones(4, 10, dtype=torch.long)
    mask[1, 6:] = 0
    g = torch.Generator().manual_seed(0)
    for noise, norm in (("uniform", "l2"), ("normal", "l2"), ("uniform", "linf"), ("normal", "linf")):
        d = noise_delta((4, 10, 32), mask, 0.5, Attack("noise", noise=noise, norm=norm, backend="eager"), g)
        assert d.dtype == torch.float32 and torch.all(d[1, 6:] == 0)
        if norm == "linf":
            assert d.abs().max() <= 0.5
        else:
            n = d.flatten(1).norm(dim=1)
            # uniform (FreeLB init): E||d||^2 = eps^2 / 3; normal: E||d||^2 = eps^2
            expect = 0.5 / 3 ** 0.5 if noise == "uniform" else 0.5
            assert torch.allclose(n, torch.full_like(n, expect), rtol=0.15), (noise, n)


# -- PGD -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_pgd_raises_the_loss_and_stays_in_the_eps_ball(toy_run, norm):
    from xrobust.modeling.model import DeltaInjector, embedding_mask
    from xrobust.data.collate import Collator
    from xrobust.evaluation.robustness import Attack, pgd_delta

    _, spec, model, tokenizer, examples, features = _task_data(toy_run, "demo_xnli", "en")
    batch = Collator(tokenizer, head=spec.head)([features[i] for i in range(24)])
    injector = DeltaInjector(model.word_embeddings())
    eps = 0.5 if norm == "l2" else 0.02
    try:
        delta = pgd_delta(model, batch, injector, eps, Attack("pgd", norm=norm, steps=4, backend="eager"))
        with torch.no_grad():
            clean = model(**batch).loss.item()
            with injector.active(delta):
                attacked = model(**batch).loss.item()
    finally:
        injector.remove()
    assert attacked > clean + 1e-3, (clean, attacked)
    mask = embedding_mask(batch)
    assert torch.all(delta[mask == 0] == 0)
    size = delta.flatten(1).norm(dim=1) if norm == "l2" else delta.flatten(1).abs().amax(dim=1)
    assert torch.all(size <= eps * (1 + 1e-5)) and size.max() > 0.5 * eps
    assert all(p.grad is None for p in model.parameters()) and all(p.requires_grad for p in model.parameters())


def test_pgd_curve_does_not_beat_clean_and_writes_outputs(toy_run, tmp_path):
    from xrobust.evaluation.robustness import Attack, evaluate_robustness

    cfg = _cfg(toy_run)
    out = tmp_path / "rob"
    eps = [0.0, 0.1, 1.0, 4.0]
    result = evaluate_robustness(cfg, toy_run["run"], tasks=["demo_xnli"], languages=["en", "xa"], split="test",
                                 eps=eps, attacks=[Attack("noise", backend="eager"),
                                                   Attack("pgd", steps=3, backend="eager")], out_dir=out)
    on_disk = json.loads((out / "robustness.json").read_text())
    assert on_disk == json.loads(json.dumps(result))
    curves = on_disk["tasks"]["demo_xnli"]
    assert set(curves) == {"noise", "pgd"} and set(curves["pgd"]) == {"en", "xa"}
    for lang in ("en", "xa"):
        pgd = dict(map(tuple, curves["pgd"][lang]))
        noise = dict(map(tuple, curves["noise"][lang]))
        assert pgd[0.0] == noise[0.0]  # both are the clean model at eps 0
        assert all(pgd[e] <= pgd[0.0] for e in eps)
        assert pgd[4.0] < pgd[0.0]  # a large attack must hurt a model that is better than nothing
        assert pgd[4.0] <= noise[4.0]  # the worst case is worse than random noise of the same size
    assert on_disk["metrics"] == {"demo_xnli": "accuracy"}
    md = (out / "robustness.md").read_text()
    assert "## demo_xnli (accuracy)" in md and "| **avg** |" in md and "eps=4" in md
    _assert_png(out / "robustness_demo_xnli.png")


def test_pgd_on_span_qa_uses_gold_spans(toy_run):
    from xrobust.evaluation.predict import predict, score
    from xrobust.evaluation.robustness import Attack, attack_metric, with_qa_targets
    from xrobust.evaluation.finished_run import phase_for

    cfg, spec, model, tokenizer, examples, features = _task_data(toy_run, "demo_xqa", "en")
    kept, feats, skipped = with_qa_targets(cfg, spec, examples, features, tokenizer, phase_for(cfg, "demo_xqa"))
    assert skipped == 0 and len(kept) == len(examples) and len(feats) == len(features)
    assert any(s > 0 for s in feats["start_positions"])  # answers found inside windows
    clean = score(spec, examples, predict(model, spec, examples, features, tokenizer, 16), "en")
    pgd = Attack("pgd", steps=2, backend="eager")
    assert attack_metric(model, spec, examples, feats, tokenizer, 16, pgd, 0.0, "en") == clean
    assert set(attack_metric(model, spec, examples, feats, tokenizer, 16, pgd, 2.0, "en")) == set(clean)
    # PGD ascends the loss of the gold spans, so under its delta that loss is higher than on the clean
    # input. (Not F1: the toy QA head is untrained, near chance, where an attack may as well raise F1.)
    from xrobust.data.collate import Collator
    from xrobust.evaluation.robustness import perturbation
    from xrobust.modeling.model import DeltaInjector

    batch = Collator(tokenizer, head=spec.head_name)([feats[i] for i in range(16)])
    injector = DeltaInjector(model.word_embeddings())
    try:
        delta = perturbation(pgd, 2.0)(model, batch, 0, injector)
        with torch.no_grad():
            clean_loss = model(**batch).loss
            with injector.active(delta):
                attacked_loss = model(**batch).loss
    finally:
        injector.remove()
    assert torch.isfinite(attacked_loss) and attacked_loss > clean_loss, (attacked_loss, clean_loss)


def test_pgd_on_span_qa_drops_and_reports_answers_not_in_their_context(toy_run, tmp_path, capsys):
    """An answer not found near its answer_start (google/xtreme's QA sets have some) has no gold span
    for PGD's loss: the example is left out of every curve of the task and counted in the settings."""
    from xrobust.cli import main
    from xrobust.evaluation.predict import predict, score
    from xrobust.evaluation.finished_run import phase_for
    from xrobust.training.data import featurize_cached, load_split

    data = tmp_path / "data"
    shutil.copytree(toy_run["world"]["data_root"] / "demo_xqa", data / "demo_xqa")
    path = data / "demo_xqa" / "test-xb.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for i in (0, 3):  # far from its text (more than MAX_ANSWER_SHIFT characters): not realigned
        context, text, start = rows[i]["context"], rows[i]["answers"]["text"][0], rows[i]["answers"]["answer_start"][0]
        moved = 0 if start > len(context) // 2 else len(context) - len(text)
        assert text not in context[max(0, moved - 10):moved + 10 + len(text)]
        rows[i]["answers"]["answer_start"] = [moved]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "rob"
    rc = main(["robustness", "--run", str(toy_run["run"]), "--set", f"data.root={data}", "--tasks", "demo_xqa",
               "--languages", "xb", "--attack", "noise", "pgd", "--eps", "0", "1", "--pgd-steps", "1",
               "--max-examples", "16", "--kernel-backend", "eager", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    result = json.loads((out / "robustness.json").read_text())
    report = result["settings"]["data"]["demo_xqa"]["xb"]
    assert report["examples"] == 16 and report["unaligned"] == 2 and report["skipped"] == 2
    assert "data demo_xqa test xb: 16 examples" in err and "skipped 2" in err
    curves = result["tasks"]["demo_xqa"]
    assert curves["noise"]["xb"][0] == curves["pgd"]["xb"][0]  # one example set for every curve
    # eps = 0 is the clean F1 of the 14 attacked examples
    _, spec, model, tokenizer, *_ = _task_data(toy_run, "demo_xqa", "xb")
    cfg = _cfg(toy_run, f"data.root={data}")
    examples = load_split(cfg, spec, "test", "xb").select([i for i in range(16) if i not in (0, 3)])
    features = featurize_cached(cfg, spec, examples, tokenizer, phase_for(cfg, "demo_xqa"), train=False)
    clean = score(spec, examples, predict(model, spec, examples, features, tokenizer, 16), "xb")
    assert curves["pgd"]["xb"][0] == [0.0, clean["f1"]]


def test_bad_arguments_are_clear_errors(toy_run):
    from xrobust.errors import ConfigError, XRobustError
    from xrobust.evaluation.robustness import Attack, check_eps, evaluate_robustness

    with pytest.raises(ConfigError, match="--norm: 'l3'"):
        Attack("noise", norm="l3")
    with pytest.raises(ConfigError, match="--pgd-steps"):
        Attack("pgd", steps=0)
    with pytest.raises(ConfigError, match="--eps: -0.1"):
        check_eps([0.0, -0.1])
    with pytest.raises(XRobustError, match="task 'demo_pos' was not trained"):
        evaluate_robustness(_cfg(toy_run), toy_run["run"], tasks=["demo_pos"], eps=[0.0])


# -- the generalized cross-lingual matrix ----------------------------------------------------------

def test_crosslingual_diagonal_equals_normal_evaluation(toy_run, tmp_path):
    from xrobust.evaluation.crosslingual import evaluate_crosslingual
    from xrobust.evaluation.run import evaluate_run

    cfg = _cfg(toy_run)
    langs = toy_run["world"]["languages"]
    normal = evaluate_run(cfg, toy_run["run"], tasks=["demo_xnli"], split="test")
    out = tmp_path / "xl"
    result = evaluate_crosslingual(cfg, toy_run["run"], split="test", out_dir=out)
    body = result["tasks"]["demo_xnli"]
    assert body["languages"] == langs and len(body["matrix"]) == len(langs)
    per_lang = normal["tasks"]["demo_xnli"]["languages"]
    assert body["diagonal"] == [per_lang[lang]["accuracy"] for lang in langs]
    grid = np.asarray(body["matrix"])
    off = grid[~np.eye(len(langs), dtype=bool)]
    assert body["off_diagonal_avg"] == pytest.approx(off.mean())
    assert body["diagonal_avg"] == pytest.approx(np.diag(grid).mean())
    assert not np.allclose(grid, grid.T) or np.ptp(grid) == 0  # cells are really mixed pairs
    assert json.loads((out / "crosslingual.json").read_text())["tasks"]["demo_xnli"]["matrix"] == body["matrix"]
    assert "Diagonal average" in (out / "crosslingual.md").read_text()
    _assert_png(out / "crosslingual_demo_xnli.png")


def test_crosslingual_cell_pairs_premise_and_hypothesis_languages(toy_run):
    from xrobust.evaluation.crosslingual import cross_examples

    cfg, spec, *_ = _task_data(toy_run, "demo_xnli", "en")
    from xrobust.training.data import load_split

    en, xb = load_split(cfg, spec, "test", "en"), load_split(cfg, spec, "test", "xb")
    mixed = cross_examples(en, xb)
    assert mixed["text_a"] == en["text_a"] and mixed["text_b"] == xb["text_b"]
    assert mixed["label"] == en["label"] and mixed["id"] == en["id"]


def _broken_world(toy_run, tmp_path, edit) -> str:
    data = tmp_path / "data"
    shutil.copytree(toy_run["world"]["data_root"] / "demo_xnli", data / "demo_xnli")
    path = data / "demo_xnli" / "test-xb.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(r) + "\n" for r in edit(rows)))
    return str(data)


@pytest.mark.parametrize("edit,match", [
    (lambda rows: rows[:-1], r"has 39 examples, .*test-en\.jsonl \(en\) has 40"),
    (lambda rows: [rows[1], rows[0]] + rows[2:], r"example 0 has id 'demo_xnli-test-00001'"),
    (lambda rows: [{**r, "label": "contradiction" if r["label"] != "contradiction" else "neutral"} if i == 3 else r
                   for i, r in enumerate(rows)], r"1 of 40 gold labels differ .*first at example 3"),
])
def test_non_parallel_sets_are_a_clear_error(toy_run, tmp_path, edit, match):
    from xrobust.errors import DataError
    from xrobust.evaluation.crosslingual import evaluate_crosslingual

    cfg = _cfg(toy_run, f"data.root={_broken_world(toy_run, tmp_path, edit)}")
    with pytest.raises(DataError, match=match) as info:
        evaluate_crosslingual(cfg, toy_run["run"], split="test", out_dir=tmp_path / "xl")
    assert "test-xb.jsonl (xb)" in str(info.value)
    assert not (tmp_path / "xl").exists()


def test_non_parallel_hub_sets_point_to_xtreme_dir(toy_run, tmp_path, capsys, hub):
    """PAWS-X from the hub is not parallel in every language (rows lost to quote handling): the error
    names the hub sets and says how to get XTREME's parallel ones; sets read from data.xtreme_dir
    are named by their files."""
    from hub_replicas import pawsx_lost_rows
    from xrobust.cli import main

    pawsx_lost_rows(hub.store, "pawsx-lost-rows")
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(toy_run["run"] / "config.yaml", run / "config.yaml")
    (run / "models.json").write_text(json.dumps({"pawsx": str(toy_run["model_dir"]),
                                                 "phase:target": str(toy_run["model_dir"])}))

    def matrix(split, *settings):
        args = ["robustness", "--run", str(run), "--crosslingual-only", "--tasks", "pawsx", "--languages", "en", "es",
                "--split", split, "--out", str(tmp_path / "xl")]
        for setting in settings:
            args += ["--set", setting]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return err.strip().splitlines()[-1]

    hub_sets = "data.sources.pawsx.revision=pawsx-lost-rows"
    err = matrix("dev", hub_sets)
    assert err.startswith("error: task pawsx split dev: hub dataset google/xtreme (config PAWS-X.es, split validation, "
                          "revision pawsx-lost-rows) (es) has 3 examples, hub dataset google/xtreme (config PAWS-X.en, "
                          "split validation, revision pawsx-lost-rows) (en) has 4"), err
    assert err.endswith("XTREME's pawsx sets are parallel: set data.xtreme_dir (the folder XTREME's "
                        "scripts/download_data.sh writes; docs/TASKS.md)"), err
    # on test, XTREME's folder has no labels: evaluate on its dev sets, or give labeled test files
    err = matrix("test", hub_sets)
    assert "(config PAWS-X.es, split test, revision pawsx-lost-rows) (es) has 3 examples" in err, err
    assert err.endswith("set data.xtreme_dir (the folder XTREME's scripts/download_data.sh writes; docs/TASKS.md) "
                        "and evaluate on dev (--split dev; its test sets have no labels), or give labeled parallel "
                        "test files in data.sources.pawsx.path"), err
    xtreme = tmp_path / "xtreme"
    (xtreme / "pawsx").mkdir(parents=True)
    for lang, n in (("en", 3), ("es", 2)):
        (xtreme / "pawsx" / f"dev-{lang}.tsv").write_text("".join(f"s{i}\tt{i}\t{i % 2}\n" for i in range(n)))
    # sets that are not the hub's: named by file, no advice about the hub
    err = matrix("dev", f"data.xtreme_dir={xtreme}")
    assert err == (f"error: task pawsx split dev: {xtreme / 'pawsx' / 'dev-es.tsv'} (es) has 2 examples, "
                   f"{xtreme / 'pawsx' / 'dev-en.tsv'} (en) has 3; the generalized cross-lingual matrix needs "
                   "parallel sets (translations in the same order)"), err


def test_crosslingual_rejects_tasks_without_the_setting(toy_run):
    from xrobust.errors import ConfigError
    from xrobust.evaluation.crosslingual import evaluate_crosslingual

    with pytest.raises(ConfigError, match="demo_xqa has no generalized cross-lingual setting"):
        evaluate_crosslingual(_cfg(toy_run), toy_run["run"], tasks=["demo_xqa"])


# -- the command ----------------------------------------------------------------------------------------

def test_robustness_command(toy_run, tmp_path, capsys):
    from xrobust.cli import main

    out = tmp_path / "cli"
    rc = main(["robustness", "--run", str(toy_run["run"]), "--tasks", "demo_xnli", "--languages", "en", "xc",
               "--eps", "0", "0.5", "--attack", "pgd", "--pgd-steps", "1", "--norm", "linf", "--max-examples", "16",
               "--kernel-backend", "eager", "--crosslingual", "--out", str(out)])
    assert rc == 0
    rob = json.loads((out / "robustness.json").read_text())
    assert set(rob["tasks"]["demo_xnli"]) == {"pgd"} and rob["settings"]["attacks"]["pgd"]["norm"] == "linf"
    xl = json.loads((out / "crosslingual.json").read_text())["tasks"]["demo_xnli"]
    assert xl["languages"] == ["en", "xc"] and xl["n_examples"] == 16
    assert rob["tasks"]["demo_xnli"]["pgd"]["en"][0][1] == xl["diagonal"][0]
    rc = main(["robustness", "--run", str(toy_run["run"]), "--eps", "-1"])
    assert rc == 2 and "--eps: -1.0" in capsys.readouterr().err


# -- the padding benchmark --------------------------------------------------------------------------

def test_padding_benchmark_compares_like_with_like(toy_run):
    from argparse import Namespace

    from xrobust.errors import DataError
    from xrobust.bench.evaluation import bench_padding

    args = Namespace(padding_world=str(toy_run["world"]["root"]), padding_task="demo_xnli", padding_batch_size=16,
                     padding_max_length=128, padding_repeats=1, seed=0, no_padding=False)
    r = bench_padding(args)
    assert r["features"] == 4 * 40 and r["languages"] == toy_run["world"]["languages"]
    assert r["same_outputs"] is True  # both paddings give the same logits per feature
    assert r["fixed"]["padded_tokens"] == 10 * 16 * 128
    assert r["dynamic"]["padded_tokens"] < r["fixed"]["padded_tokens"] / 2
    assert r["pass"] == (r["speedup"] >= 2.0)
    assert bench_padding(Namespace(**{**vars(args), "no_padding": True})) is None
    with pytest.raises(DataError, match="no world.json"):
        bench_padding(Namespace(**{**vars(args), "padding_world": str(toy_run["root"])}))
