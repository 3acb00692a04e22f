"""Zero-shot evaluation of a finished run on every language of its XTREME (or demo) tasks.

Writes, under the run directory: predictions/<task>/test-<lang>.tsv|json (the official submission
layout), labels/ (gold in the same layout, so `xrobust score` reproduces every number),
results.json, report.md and heatmap.png.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data.stats import data_report, log_report
from ..errors import ConfigError, context
from ..io import atomic_write_json, atomic_write_text
from ..tasks import get_task
from .. import distributed as dist
from .metrics import tatoeba_accuracy
from .finished_run import FinishedRun
from .predict import forward_outputs, gold, predict, score
from .results import results_dir
from .scorer import official_name




def _stop_on_signal(where):
    """A forward pre-hook: a signal (Slurm's warning, SIGTERM, Ctrl-C) stops the evaluation before
    the next batch. Every rank runs the same number of forwards, so the ranks agree per batch.
    where() names the task and language being evaluated."""
    from ..training.signals import FLAG, Preempted, mark_preempted

    def hook(module, args):
        if dist.any_rank(FLAG.set):
            if dist.is_main():
                mark_preempted()
            raise Preempted(None, None, FLAG.name if FLAG.set else "a signal on another rank",
                            what=f"the evaluation at {where()} (results.json not updated)")
    return hook


def _write_file(folder: Path, spec, lang: str, split: str, file: tuple) -> Path:
    """One official-layout file: (suffix, contents) from the task format (text, or JSON for .json)."""
    suffix, contents = file
    path = folder / official_name(spec.name) / f"{split}-{lang}{suffix}"
    if suffix == ".json":
        atomic_write_json(path, contents)
    else:
        atomic_write_text(path, contents)
    return path


def _write_predictions(folder: Path, spec, lang: str, split: str, predictions, examples=None) -> Path:
    return _write_file(folder, spec, lang, split, spec.task_format.prediction_file(predictions))


def _write_gold(folder: Path, spec, lang: str, split: str, golds) -> None:
    _write_file(folder, spec, lang, split, spec.task_format.gold_file(golds))


def _retrieval_scores(run: FinishedRun, spec, model, tokenizer, split, lang):
    from . import retrieval

    ev = run.cfg.evaluation
    out = run.root

    layer = retrieval.retrieval_layer(ev.layer, model.encoder.config.num_hidden_layers, "being evaluated")

    def embed(bitext_side):
        feats = run.featurize(spec, bitext_side, tokenizer)
        rows = forward_outputs(model, feats, tokenizer, None, ev.batch_size, hidden_layer=layer, pooling=ev.pooling)
        return torch.from_numpy(np.stack(rows)) if rows else torch.zeros(0)

    bitext = run.bitext(spec, split, lang)
    src, tgt = embed(bitext.source), embed(bitext.target)
    if spec.metric == "tatoeba_accuracy":
        tgt_index = {t: i for i, t in enumerate(bitext.target["id"])}
        gold = {s: tgt_index[t] for s, t in bitext.gold}
        gold_idx = [gold[s] for s in bitext.source["id"]]
        pred = retrieval.tatoeba_retrieve(src, tgt).tolist()
        if dist.is_main():
            retrieval.write_tatoeba_predictions(out / "predictions" / official_name(spec.name) / f"{split}-{lang}.tsv",
                                                pred)
            atomic_write_text(out / "labels" / official_name(spec.name) / f"{split}-{lang}.tsv",
                              "".join(f"{i}\n" for i in gold_idx))
        return tatoeba_accuracy(gold_idx, pred), {}
    # BUCC: the threshold is tuned on dev gold only and applied unchanged to the evaluated split
    dev = run.bitext(spec, "dev", lang) if split != "dev" else bitext
    dev_src, dev_tgt = (embed(dev.source), embed(dev.target)) if split != "dev" else (src, tgt)
    dev_c = retrieval.margin_candidates(dev_src, dev_tgt, dev.source["id"], dev.target["id"])
    test_c = retrieval.margin_candidates(src, tgt, bitext.source["id"], bitext.target["id"])
    result = retrieval.bucc_evaluate(dev_c, dev.gold, test_c, bitext.gold or None)
    if dist.is_main():
        retrieval.write_bucc_predictions(out / "predictions" / "bucc2018" / f"{split}-{lang}.tsv", result["test_pairs"])
        if bitext.gold:  # gold pairs beside the predictions, as for every other task
            retrieval.write_bucc_predictions(out / "labels" / "bucc2018" / f"{split}-{lang}.tsv", bitext.gold)
    chosen = {"bucc_threshold": {lang: result["threshold"]}}
    if "skipped" in result["test"]:
        if dist.is_main():
            print(f"bucc {lang}: test scoring skipped: {result['test']['skipped']}")
        return None, chosen
    return result["test"], chosen


def evaluate_run(cfg, root: Path, *, tasks=None, languages=None, split=None, tracker=None, models=None) -> dict:
    from ..training.signals import FLAG
    from .report import write_report
    from .results import build_results

    FLAG.install()
    root = Path(root)
    ev = cfg.evaluation
    split = split or ev.split
    languages = languages or ev.languages  # evaluation.languages: None = every language
    current = {"at": ""}  # the task and language being evaluated, named when a signal stops it

    def stop_on_signal(model):
        model.encoder.register_forward_pre_hook(_stop_on_signal(lambda: current["at"]))

    run = FinishedRun(cfg, root, models=models, on_load=stop_on_signal)
    tasks = tasks or run.evaluated_tasks()
    plan = run.plan(tasks, split, languages)
    layer = ev.layer  # recorded as the layer pooled: the default for this encoder's depth when unset
    if any(not spec.task_format.has_head for spec, _ in plan):
        from .retrieval import check_retrieval_layer

        layer = check_retrieval_layer(cfg, run.final_model_dir())
    unknown = [lang for lang in languages or [] if all(lang != l for _, l in plan)]
    if unknown:
        raise ConfigError(f"--languages: {', '.join(unknown)} in none of the tasks' {split} sets "
                          f"({', '.join(sorted({l for n in tasks for l in get_task(n).languages}))})")
    scores: dict = {}
    extra: dict = {}
    bar = tqdm(plan, desc="evaluate", disable=not dist.is_main(), dynamic_ncols=True)
    for spec, lang in bar:
        bar.set_postfix(task=spec.name, lang=lang)
        current["at"] = f"{spec.name} ({lang})"
        model, tokenizer = run.load(spec.name)
        evaluating = f"evaluating {spec.name} {split} ({lang}) with {run.model_dir(spec.name)}"
        if not spec.task_format.has_head:  # retrieval: scored by embedding similarity
            with context(evaluating):
                metrics, chosen = _retrieval_scores(run, spec, model, tokenizer, split, lang)
            for key, value in chosen.items():  # settings that change numbers, saved with the results
                extra.setdefault(key, {}).update(value)
        else:
            examples, features = run.evaluation_set(spec, split, lang, tokenizer, ev.max_examples)
            extra.setdefault("data", {}).setdefault(official_name(spec.name), {})[lang] = log_report(
                spec.name, split, lang, data_report(spec, split, lang, examples, features, train=False))
            with context(evaluating):
                preds = predict(model, spec, examples, features, tokenizer, ev.batch_size)
                metrics = score(spec, examples, preds, lang)
            if dist.is_main():
                _write_predictions(root / "predictions", spec, lang, split, preds)
                _write_gold(root / "labels", spec, lang, split, gold(spec, examples))
        if metrics is not None:
            scores.setdefault(official_name(spec.name), {})[lang] = metrics
    bar.close()
    settings = {"split": split, "retrieval_layer": layer, "retrieval_pooling": ev.pooling,
                "max_examples": ev.max_examples, "models": run.models.to_json(root), **extra}
    out = results_dir(root, split)
    previous = out / "results.json"
    if previous.is_file():  # evaluating more tasks or languages adds to what is there
        from .results import load_results

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
