"""Bad input through the CLI: exit code 2, a message naming the file/key/line, nothing overwritten."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("DS_ACCELERATOR", "cpu")

from world import build_small_world, write_config  # noqa: E402
from xrobust.cli import main  # noqa: E402

PHASE = {"tasks": ["demo_nli"], "batch_size": 8, "micro_batch_size": 8, "max_steps": 1, "eval_every": 0}


@pytest.fixture(scope="module", autouse=True)
def _restore_environment(restore_environment):
    yield


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_small_world(tmp_path_factory.mktemp("bad-input-world"))


def train(cfg, *extra):
    return main(["train", "--config", str(cfg), "--phase", "intermediate", *extra])


def config(world, tmp_path, phase=None, **sections):
    return write_config(world, tmp_path / "c.yaml", "bad", tmp_path / "runs", deepspeed="zero0",
                        phases={"intermediate": {**PHASE, **(phase or {})}}, **sections)


def expect_error(capsys, code, *fragments):
    assert code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: "), err
    for fragment in fragments:
        assert fragment in err, err
    assert "Traceback" not in err


def test_unknown_task(world, tmp_path, capsys):
    cfg = config(world, tmp_path, {"tasks": ["demo_nope"]})
    expect_error(capsys, train(cfg), str(cfg), "phases.intermediate.tasks[0]", "unknown task 'demo_nope'")
    assert not (tmp_path / "runs").exists()


def test_malformed_yaml_and_unknown_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nphases:\n  intermediate:\n    tasks: [mnli\n")
    expect_error(capsys, train(bad), str(bad), "line", "malformed YAML")
    bad.write_text("name: x\nphases: {intermediate: {tasks: [mnli], lr_schedule: cosine}}\n")
    expect_error(capsys, train(bad), "unknown key 'phases.intermediate.lr_schedule'")


@pytest.mark.parametrize("content, fragments", [
    (None, ["file not found"]),
    ("", ["empty file"]),
    ('{"id": "a", "text_a": "x", "text_b": "y", "label": "entailment"}\n'
     '{"id": "b", "text_a": "x", "text_b": "y", "label": "maybe"}\n', ["'maybe'", "entailment"]),
])
def test_bad_data_files(world, tmp_path, capsys, content, fragments):
    path = tmp_path / "nli" / "train.jsonl"
    if content is not None:
        path.parent.mkdir()
        path.write_text(content)
    sources = {"sources": {"demo_nli": {"path": str(tmp_path / "nli" / "{split}.jsonl")}}}
    data = {"root": str(world["data_root"]), "cache_dir": str(tmp_path / "cache"), **sources}
    cfg = config(world, tmp_path, data=data)
    code = train(cfg)
    expect_error(capsys, code, str(path), *fragments)
    assert not (tmp_path / "runs" / "bad").exists()  # a run that could not start leaves nothing behind


def test_qa_max_length_shorter_than_query(world, tmp_path, capsys):
    cfg = config(world, tmp_path, {"tasks": ["demo_qa"], "max_length": 24, "max_query_length": 16,
                                   "doc_stride": 8})
    expect_error(capsys, train(cfg), "max_length", "24")


def _digest(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_existing_run_directory_is_never_overwritten_silently(world, tmp_path, capsys):
    cfg = config(world, tmp_path)
    run = tmp_path / "runs" / "bad"
    run.mkdir(parents=True)
    (run / "notes.txt").write_text("precious")
    expect_error(capsys, train(cfg), str(run), "--resume", "--overwrite")
    assert _digest(run) == {"notes.txt": hashlib.sha256(b"precious").hexdigest()}
    # --overwrite only replaces directories that are xrobust runs
    expect_error(capsys, train(cfg, "--overwrite"), "not an xrobust run")
    assert (run / "notes.txt").read_text() == "precious"


def test_overwrite_replaces_a_finished_run(world, tmp_path, capsys):
    cfg = config(world, tmp_path)
    assert train(cfg) == 0
    run = tmp_path / "runs" / "bad"
    first = json.loads((run / "intermediate" / "metrics.jsonl").read_text().splitlines()[0])
    before = _digest(run)
    expect_error(capsys, train(cfg), "run directory exists")
    assert _digest(run) == before
    assert train(cfg, "--overwrite") == 0
    again = json.loads((run / "intermediate" / "metrics.jsonl").read_text().splitlines()[0])
    assert again["loss"] == pytest.approx(first["loss"], abs=1e-6)
    assert len((run / "intermediate" / "metrics.jsonl").read_text().splitlines()) == 2  # one step + one eval


# -- every failure is one `error:` line naming what was being done; nothing half-made is left ------------

_NLI_HEADER = b"id\ttext_a\ttext_b\tlabel\n"
_NLI_ROW = b'{"id": "a", "text_a": "A cat sleeps", "text_b": "A dog", "label": "entailment"}\n'


@pytest.mark.parametrize("task, name, content, fragment", [
    # line numbers as an editor shows them: the header and blank lines count
    ("demo_nli", "train.tsv", _NLI_HEADER + b"a\tA cat\tA dog\tentailment\n\nb\t\tA dog\tneutral\n",
     "train.tsv:4 (id 'b'): text_a is empty (''); expected non-blank text"),
    ("demo_nli", "train.jsonl", _NLI_ROW + b'{"id": "b", "text_a": null, "text_b": "x", "label": "neutral"}\n',
     "train.jsonl:2 (id 'b'): text_a is missing; expected text"),
    ("demo_nli", "train.jsonl", _NLI_ROW + b'{"id": "b", "text_a": "x", "text_b": "  ", "label": "neutral"}\n',
     "train.jsonl:2 (id 'b'): text_b is empty ('  ')"),
    ("demo_nli", "train.jsonl", _NLI_ROW + b'{"id": "b", "text_a": "caf\xe9", "text_b": "x", "label": "neutral"}\n',
     "train.jsonl:2: not valid UTF-8 (invalid continuation byte"),
    # a malformed line as well: before, the error reporter itself failed on the bytes
    ("demo_nli", "train.jsonl", b'{"id": "a", "text_a": "caf\xe9"\n{"id": "b"\n',
     "train.jsonl:1: not valid UTF-8"),
    ("demo_pos", "train.conll", b"Paris\tPROPN\nsleeps\tVERB\n\nna\xefve\tADJ\n",
     "train.conll:4: not valid UTF-8"),
])
def test_bad_text_is_named_by_file_and_line(world, tmp_path, capsys, task, name, content, fragment):
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / name).write_bytes(content)
    data = {"root": str(world["data_root"]), "cache_dir": str(tmp_path / "cache"),
            "sources": {task: {"path": str(folder / name.replace("train", "{split}"))}}}
    cfg = config(world, tmp_path, {"tasks": [task]}, data=data)
    expect_error(capsys, train(cfg), f"{folder / name}:", fragment)
    assert not (tmp_path / "runs" / "bad").exists()


def test_wrong_model_path_names_the_key(world, tmp_path, capsys):
    cfg = config(world, tmp_path, model={"name_or_path": str(tmp_path / "no-such-model")})
    expect_error(capsys, train(cfg), "key 'model.name_or_path'", str(tmp_path / "no-such-model"))
    assert not (tmp_path / "runs" / "bad").exists()


def test_foreign_exception_is_one_line_with_the_traceback_in_a_log(world, tmp_path, capsys):
    """DeepSpeed rejects its config while the engine is built: the error says so in one line, the
    traceback goes to a log file, and the run (no checkpoint yet) leaves no directory."""
    ds = tmp_path / "bad_ds.json"
    ds.write_text(json.dumps({"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto",
                              "gradient_accumulation_steps": "auto", "zero_optimization": {"stage": 0, "bogus_option": 1}}))
    cfg = write_config(world, tmp_path / "c.yaml", "bad", tmp_path / "runs", deepspeed=str(ds),
                       phases={"intermediate": PHASE})
    code = train(cfg)
    assert code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: building the model and engine of phases.intermediate from "), err
    assert "ValidationError: 1 validation error for DeepSpeedZeroConfig; bogus_option" in last, err
    assert "Traceback" not in err
    log = Path(last.split("(traceback in ")[1].rstrip(")"))
    assert "Traceback (most recent call last)" in log.read_text()
    assert not (tmp_path / "runs" / "bad").exists()


# -- what is knowable before training is checked before training -----------------------------------------

@pytest.mark.parametrize("evaluation, fragments", [
    ({"tasks": ["demo_xnli", "demo_pos"]}, ["key 'evaluation.tasks[1]'", "'demo_pos' is evaluated but no phase "
                                                                          "trains it"]),
    ({"tasks": ["demo_tatoeba"], "layer": 7}, ["key 'evaluation.layer': 7 is out of range", "hidden states 0..2"]),
])
def test_pipeline_checks_evaluation_before_training(world, tmp_path, capsys, evaluation, fragments):
    cfg = write_config(world, tmp_path / "c.yaml", "bad", tmp_path / "runs", deepspeed="zero0",
                       phases={"intermediate": PHASE, "target": {**PHASE, "tasks": ["demo_xnli"]}},
                       evaluation=evaluation)
    expect_error(capsys, main(["pipeline", "--config", str(cfg)]), *fragments)
    assert not (tmp_path / "runs" / "bad").exists()


def test_demo_rejects_an_unknown_method_before_building_the_world(tmp_path, capsys):
    expect_error(capsys, main(["demo", "--adversarial", "fgsm", "--out", str(tmp_path / "out")]),
                 "--adversarial: unknown method 'fgsm'", "freelb")
    assert not (tmp_path / "out").exists()


def test_missing_base_names_the_file_that_references_it(tmp_path, capsys):
    child = tmp_path / "child.yaml"
    child.write_text("base: nowhere.yaml\nname: x\n")
    expect_error(capsys, train(child), f"{child}: key 'base':", "nowhere.yaml", "config file not found")


def test_score_rejects_a_gold_task_without_predictions(tmp_path, capsys):
    (tmp_path / "pred" / "xnli").mkdir(parents=True)
    (tmp_path / "gold" / "xnli").mkdir(parents=True)
    (tmp_path / "gold" / "pawsx").mkdir(parents=True)
    code = main(["score", "--prediction-folder", str(tmp_path / "pred"), "--label-folder", str(tmp_path / "gold"),
                 "--output-file", str(tmp_path / "scores.json")])
    expect_error(capsys, code, "no prediction folder for the gold task(s) pawsx", str(tmp_path / "pred" / "pawsx"))
    assert not (tmp_path / "scores.json").exists()
