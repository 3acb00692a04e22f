"""The evaluation scaffolding: FinishedRun (a run directory's models and evaluation data) and the
perturbation hook of predict.forward_outputs, on the small run directory test_robustness builds."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch

from test_robustness import _cfg, one_thread, toy_run  # noqa: F401  (module fixtures: one toy run here)


def _open(toy_run, **kw):
    from xrobust.evaluation.finished_run import FinishedRun

    return FinishedRun(_cfg(toy_run), toy_run["run"], **kw)


def test_opens_a_run_and_lists_its_tasks(toy_run):
    from xrobust.tasks import get_task

    run = _open(toy_run)
    model_dir = str(toy_run["model_dir"])
    assert run.tasks == ["demo_xnli", "demo_xqa"]  # models.json's task keys, not "phase:target"
    assert run.models == {"demo_xnli": model_dir, "demo_xqa": model_dir, "phase:target": model_dir}
    assert run.evaluated_tasks() == ["demo_xnli"]  # the config's evaluation.tasks
    assert run.model_dir("demo_xqa") == model_dir
    assert run.model_dir("demo_tatoeba") == run.final_model_dir() == model_dir  # retrieval: the last phase's
    phases = list(run.cfg.phases.values())
    assert run.phase("demo_xnli") is next(p for p in phases if "demo_xnli" in p.tasks)  # the phase training it
    assert run.phase("demo_tatoeba") is phases[0]  # in no phase: the first
    xnli, xqa = get_task("demo_xnli"), get_task("demo_xqa")
    assert run.plan(["demo_xnli", "demo_xqa"], "test", ["xb", "en", "zz"]) == \
        [(xnli, "xb"), (xnli, "en"), (xqa, "xb"), (xqa, "en")]
    assert [lang for _, lang in run.plan(["demo_xnli"], "test")] == list(xnli.split_languages("test"))
    # models given by the caller (the pipeline's, before models.json is read) replace models.json
    other = _open(toy_run, models={"demo_pos": toy_run["model_dir"], "phase:x": toy_run["model_dir"]})
    assert other.tasks == ["demo_pos"] and other.models["demo_pos"] == model_dir


def test_loads_one_model_at_a_time_and_the_evaluation_data(toy_run):
    from xrobust.evaluation.finished_run import phase_for
    from xrobust.modeling.model import XRobustModel
    from xrobust.tasks import get_task
    from xrobust.training.data import featurize_cached, load_split, task_max_length

    loads = []
    run = _open(toy_run, on_load=loads.append)
    model, tokenizer = run.load("demo_xnli")
    assert isinstance(model, XRobustModel) and not model.training
    assert run.load("demo_xqa")[0] is model and loads == [model]  # both tasks share the phase's model
    spec = get_task("demo_xnli")
    examples, features = run.evaluation_set(spec, "test", "xb", tokenizer, max_examples=8)
    full = load_split(run.cfg, spec, "test", "xb")
    assert len(full) > 8 and examples["id"] == full["id"][:8] and len(features) == 8
    phase = phase_for(run.cfg, "demo_xnli")
    assert features["input_ids"] == featurize_cached(run.cfg, spec, examples, tokenizer, phase,
                                                     train=False)["input_ids"]
    assert features["labels"] == examples["label"]
    assert max(map(len, features["input_ids"])) <= task_max_length(spec, phase)
    # uncached featurization (the cross-lingual matrix's one-off sets) gives the same features
    assert run.featurize(spec, examples, tokenizer, cache=False)["input_ids"] == features["input_ids"]
    assert len(run.examples(spec, "test", "xb")) == len(full)


def test_missing_or_bad_models_json_and_untrained_tasks_are_clear_errors(toy_run, tmp_path):
    from xrobust.errors import XRobustError
    from xrobust.evaluation.finished_run import FinishedRun

    cfg = _cfg(toy_run)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(toy_run["run"] / "config.yaml", run_dir / "config.yaml")
    missing = f"{run_dir / 'models.json'}: missing; is {run_dir} a finished training run?"
    with pytest.raises(XRobustError, match=re.escape(missing)):
        FinishedRun(cfg, run_dir)
    (run_dir / "models.json").write_text("{not json")
    with pytest.raises(XRobustError, match="models.json: unreadable"):
        FinishedRun(cfg, run_dir)
    (run_dir / "models.json").write_text(json.dumps(["demo_xnli"]))
    with pytest.raises(XRobustError, match="expected a mapping of task -> model directory"):
        FinishedRun(cfg, run_dir)
    (run_dir / "models.json").write_text(json.dumps({"demo_xnli": str(toy_run["model_dir"])}))
    run = FinishedRun(cfg, run_dir)
    message = re.escape(f"task 'demo_pos' was not trained in {run_dir} (trained: demo_xnli)")
    with pytest.raises(XRobustError, match=message):
        run.model_dir("demo_pos")
    with pytest.raises(XRobustError, match=message):
        run.plan(["demo_xnli", "demo_pos"], "test")
    with pytest.raises(XRobustError, match=message):
        run.load("demo_pos")
    with pytest.raises(XRobustError, match="names no phase model"):  # retrieval needs the last phase's model
        run.model_dir("demo_tatoeba")


def test_perturbation_hook_sees_every_batch_once_with_its_gold(toy_run):
    from xrobust.evaluation.predict import forward_outputs
    from xrobust.tasks import get_task

    run = _open(toy_run)
    model, tokenizer = run.load("demo_xnli")
    spec = get_task("demo_xnli")
    _, features = run.evaluation_set(spec, "test", "xb", tokenizer)
    seen = []

    def zero(model, batch, index, injector):
        seen.append(index)
        assert batch["labels"].shape[0] == batch["input_ids"].shape[0]  # the gold is there for an attack
        return torch.zeros(*batch["input_ids"].shape, model.encoder.config.hidden_size)

    clean = forward_outputs(model, features, tokenizer, spec.head, 16)
    zeroed = forward_outputs(model, features, tokenizer, spec.head, 16, perturbation=zero)
    assert sorted(seen) == list(range(-(-len(features) // 16)))
    assert all(np.array_equal(a, b) for a, b in zip(clean, zeroed))

    def shift(model, batch, index, injector):
        return torch.full((*batch["input_ids"].shape, model.encoder.config.hidden_size), 0.5)

    moved = forward_outputs(model, features, tokenizer, spec.head, 16, perturbation=shift)
    assert any(not np.array_equal(a, b) for a, b in zip(clean, moved))
    # the hook is gone afterwards: a plain forward is the clean one again
    assert all(np.array_equal(a, b) for a, b in zip(clean, forward_outputs(model, features, tokenizer, spec.head, 16)))
