"""Bad input through the CLI: exit code 2, a message naming the file/key/line, nothing overwritten."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

os.environ.setdefault("DS_ACCELERATOR", "cpu")

from world import build_small_world, write_config  # noqa: E402
from xrobust.cli import main  # noqa: E402

PHASE = {"tasks": ["demo_nli"], "batch_size": 8, "micro_batch_size": 8, "max_steps": 1, "eval_every": 0}


@pytest.fixture(scope="module", autouse=True)
def _restore_environment():
    """These runs join a 1-rank process group in this process, which sets RANK etc.; later tests that
    launch jobs must not inherit them."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


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
