"""Zero-shot evaluation of a finished run on every language of its XTREME (or demo) tasks.

Writes, under the run directory: predictions/<task>/test-<lang>.tsv|json (the official submission
layout), labels/ (gold in the same layout, so `xrobust score` reproduces every number),
results.json, report.md and heatmap.png.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tqdm import tqdm

from ..errors import ConfigError, XRobustError
from ..io import atomic_write_json, atomic_write_text
from ..tasks import get_task
from ..training import distributed as dist
from . import metrics as M
from .predict import forward_outputs, gold, predict, score

OFFICIAL_NAMES = {"bucc": "bucc2018"}  # the official scorer's task names


def official_name(task: str) -> str:
    return OFFICIAL_NAMES.get(task, task)


def _phase_for(cfg, task: str):
    for phase in cfg.phases.values():
        if task in phase.tasks:
            return phase
    return next(iter(cfg.phases.values()))


def _models(root: Path) -> dict:
    path = root / "models.json"
    if not path.is_file():
        raise XRobustError(f"{path}: missing; is {root} a finished training run?")
    return json.loads(path.read_text())


def _write_predictions(folder: Path, spec, lang: str, split: str, predictions, examples=None) -> Path:
    name = official_name(spec.name)
    if spec.format == "span_qa":
        path = folder / name / f"{split}-{lang}.json"
        atomic_write_json(path, predictions)
    elif spec.format == "tagging":
        path = folder / name / f"{split}-{lang}.tsv"
        atomic_write_text(path, "".join("\n".join(tags) + "\n\n" for tags in predictions))
    else:
        path = folder / name / f"{split}-{lang}.tsv"
        atomic_write_text(path, "".join(f"{p}\n" for p in predictions))
    return path


def _write_gold(folder: Path, spec, lang: str, split: str, golds) -> None:
    if spec.format == "span_qa":
        articles = [{"paragraphs": [{"qas": [{"id": qid, "answers": [{"text": t} for t in answers]}]}]}
                    for qid, answers in golds]
        _write_predictions(folder, spec, lang, split, {"data": articles})
    else:
        _write_predictions(folder, spec, lang, split, golds)


def _languages(spec, split: str, wanted) -> list[str]:
    available = list(spec.split_languages(split))
    return available if not wanted else [lang for lang in wanted if lang in available]


def _retrieval_scores(cfg, spec, model, tokenizer, split, lang, ev, out: Path):
    from ..data.loading import load_bitext
    from . import retrieval as R
    from ..training.data import featurize_cached

    def embed(bitext_side):
        phase = _phase_for(cfg, spec.name)
        feats = featurize_cached(cfg, spec, bitext_side, tokenizer, phase, train=False)
        return torch.tensor(forward_outputs(model, feats, tokenizer, None, ev.batch_size, hidden_layer=ev.layer,
                                            pooling=ev.pooling))

    def load(s):
        return load_bitext(spec, s, lang, source=cfg.data.sources.get(spec.name), root=cfg.data.root)

    bitext = load(split)
    src, tgt = embed(bitext.source), embed(bitext.target)
    if spec.metric == "tatoeba_accuracy":
        tgt_index = {t: i for i, t in enumerate(bitext.target["id"])}
        gold = {s: tgt_index[t] for s, t in bitext.gold}
        gold_idx = [gold[s] for s in bitext.source["id"]]
        pred = R.tatoeba_retrieve(src, tgt).tolist()
        if dist.is_main():
            R.write_tatoeba_predictions(out / "predictions" / official_name(spec.name) / f"{split}-{lang}.tsv", pred)
            atomic_write_text(out / "labels" / official_name(spec.name) / f"{split}-{lang}.tsv",
                              "".join(f"{i}\n" for i in gold_idx))
        return M.tatoeba_accuracy(gold_idx, pred), {}
    # BUCC: the threshold is tuned on dev gold only and applied unchanged to the evaluated split
    dev = load("dev") if split != "dev" else bitext
    dev_src, dev_tgt = (embed(dev.source), embed(dev.target)) if split != "dev" else (src, tgt)
    dev_c = R.margin_candidates(dev_src, dev_tgt, dev.source["id"], dev.target["id"])
    test_c = R.margin_candidates(src, tgt, bitext.source["id"], bitext.target["id"])
    result = R.bucc_evaluate(dev_c, dev.gold, test_c, bitext.gold or None)
    if dist.is_main():
        R.write_bucc_predictions(out / "predictions" / "bucc2018" / f"{split}-{lang}.tsv", result["test_pairs"])
        if bitext.gold:  # gold pairs beside the predictions, as for every other task
            R.write_bucc_predictions(out / "labels" / "bucc2018" / f"{split}-{lang}.tsv", bitext.gold)
    chosen = {"bucc_threshold": {lang: result["threshold"]}}
    if "skipped" in result["test"]:
        if dist.is_main():
            print(f"bucc {lang}: test scoring skipped: {result['test']['skipped']}")
        return None, chosen
    return result["test"], chosen


def results_dir(root: Path, split: str) -> Path:
    """Test results (the benchmark) sit in the run directory; other splits in eval-<split>/."""
    return Path(root) if split == "test" else Path(root) / f"eval-{split}"


def evaluate_run(cfg, root: Path, *, tasks=None, languages=None, split=None, tracker=None, models=None) -> dict:
    from transformers import AutoTokenizer

    from ..training.data import featurize_cached, load_split
    from ..training.trainer import load_trained
    from .report import build_results, write_report

    root = Path(root)
    ev = cfg.evaluation
    split = split or ev.split
    models = models if models is not None else _models(root)
    tasks = tasks or ev.tasks or list(cfg.phases[list(cfg.phases)[-1]].tasks)
    last = models.get(f"phase:{list(cfg.phases)[-1]}") or next(v for k, v in models.items() if k.startswith("phase:"))
    device = dist.device()
    plan = []
    for name in tasks:
        spec = get_task(name)
        if spec.format != "retrieval" and name not in models:
            raise XRobustError(f"task '{name}' was not trained in {root} (trained: "
                               f"{', '.join(k for k in models if not k.startswith('phase:'))})")
        plan += [(spec, lang) for lang in _languages(spec, split, languages)]
    unknown = [lang for lang in languages or [] if all(lang != l for _, l in plan)]
    if unknown:
        raise ConfigError(f"--languages: {', '.join(unknown)} in none of the tasks' {split} sets "
                          f"({', '.join(sorted({l for n in tasks for l in get_task(n).languages}))})")
    scores: dict = {}
    extra: dict = {}
    loaded: dict = {}
    bar = tqdm(plan, desc="evaluate", disable=not dist.is_main(), dynamic_ncols=True)
    for spec, lang in bar:
        bar.set_postfix(task=spec.name, lang=lang)
        model_dir = last if spec.format == "retrieval" else models[spec.name]
        if model_dir not in loaded:
            loaded.clear()  # one model in memory at a time
            loaded[model_dir] = (load_trained(Path(model_dir)).to(device),
                                 AutoTokenizer.from_pretrained(model_dir))
        model, tokenizer = loaded[model_dir]
        if spec.format == "retrieval":
            metrics, chosen = _retrieval_scores(cfg, spec, model, tokenizer, split, lang, ev, root)
            for key, value in chosen.items():  # settings that change numbers, saved with the results
                extra.setdefault(key, {}).update(value)
        else:
            examples = load_split(cfg, spec, split, lang)
            if ev.max_examples:
                examples = examples.select(range(min(len(examples), ev.max_examples)))
            features = featurize_cached(cfg, spec, examples, tokenizer, _phase_for(cfg, spec.name), train=False)
            preds = predict(model, spec, examples, features, tokenizer, ev.batch_size)
            metrics = score(spec, examples, preds, lang)
            if dist.is_main():
                _write_predictions(root / "predictions", spec, lang, split, preds)
                _write_gold(root / "labels", spec, lang, split, gold(spec, examples))
        if metrics is not None:
            scores.setdefault(official_name(spec.name), {})[lang] = metrics
    bar.close()
    settings = {"split": split, "retrieval_layer": ev.layer, "retrieval_pooling": ev.pooling,
                "max_examples": ev.max_examples, "models": models, **extra}
    out = results_dir(root, split)
    previous = out / "results.json"
    if previous.is_file():  # evaluating more tasks or languages adds to what is there
        from .report import load_results

        for task, entry in load_results(previous)["tasks"].items():
            for lang, metrics in entry["languages"].items():
                scores.setdefault(task, {}).setdefault(lang, metrics)
    results = build_results(scores, settings)
    if dist.is_main():
        atomic_write_json(out / "results.json", results)
        write_report(results, out, title=f"Zero-shot results: {cfg.name} ({split})")
        if tracker:
            tracker.summary({f"eval/{t}/{m}": v for t, r in results["tasks"].items() for m, v in r["avg"].items()})
            rows = [[t, lang, m, v] for t, r in results["tasks"].items()
                    for lang, ms in r["languages"].items() for m, v in ms.items()]
            tracker.table("eval/results", ["task", "language", "metric", "value"], rows)
    dist.barrier()
    return results
