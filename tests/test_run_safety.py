"""A run is never silently wrong, driven through the CLI as a user would: non-finite training stops
with a named cause, one writer per run directory, a resumed run keeps the config it was trained
with, runs are self-contained (copy, move, evaluate from anywhere), a model without weights is an
error, damaged checkpoints fall back, --resume never starts a second series silently, and signals
stop training and evaluation cleanly.

Single-process runs call the console entry in this process (`xrobust.cli.main`); concurrent
writers and signals start real `xrobust` processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("DS_ACCELERATOR", "cpu")

from world import REPO, build_small_world, cli_command, env, write_config  # noqa: E402
from xrobust.cli import main  # noqa: E402

PHASE = {"tasks": ["demo_nli"], "batch_size": 8, "micro_batch_size": 8, "max_steps": 4, "eval_every": 0,
         "save_every": 2, "max_dev_examples": 16, "max_length": 48, "lr": 1.0e-3}
TARGET = {"tasks": ["demo_xnli"], "multitask": False, "batch_size": 8, "micro_batch_size": 8, "max_steps": 2,
          "eval_every": 0, "save_every": 0, "max_dev_examples": 16, "max_length": 48}
EVALUATION = {"tasks": ["demo_xnli", "demo_tatoeba"], "max_examples": 10, "layer": 2, "batch_size": 16}


@pytest.fixture(scope="module", autouse=True)
def _restore_environment(restore_environment):
    yield


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_small_world(tmp_path_factory.mktemp("run-safety-world"))


def config(world, tmp_path, name="r", phase=None, deepspeed="zero0", phases=None, **sections):
    phases = phases or {"intermediate": {**PHASE, **(phase or {})}}
    return write_config(world, tmp_path / f"{name}.yaml", name, tmp_path / "runs", deepspeed=deepspeed,
                        phases=phases, **sections)


def xr(*args) -> int:
    return main([str(a) for a in args])


def error_of(capsys) -> str:
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: "), err
    assert "Traceback" not in err, err
    return err


def digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".xrobust.lock"}


def train_records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "loss" in r]


def spawn(args: list[str], ranks: int = 1, cwd=REPO) -> subprocess.Popen:
    return subprocess.Popen(cli_command(args, ranks), env=env(), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_for(predicate, timeout: float, proc: subprocess.Popen | None = None, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended before {what}:\n{proc.stdout.read()[-5000:]}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def run_cli(args: list[str], cwd=REPO, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cli_command(args), env=env(), cwd=cwd, capture_output=True, text=True, timeout=timeout)


# -- a finished pipeline run (intermediate -> target -> evaluation), shared by the tests below --------

@pytest.fixture(scope="module")
def finished(world, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("finished")
    cfg = config(world, tmp, "done", phases={"intermediate": PHASE, "target": TARGET}, evaluation=EVALUATION)
    assert xr("pipeline", "--config", cfg) == 0
    return tmp / "runs" / "done"


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns(".xrobust.lock"))
    return dest


# -- non-finite training ---------------------------------------------------------------------------------

@pytest.mark.parametrize("sets, cause", [
    (["phases.intermediate.lr=1e6"], "the updates diverged: the learning rate is too high "
                                     "(phases.intermediate.lr = 1e+06"),
    (["phases.intermediate.adversarial.method=freelb", "phases.intermediate.adversarial.init_mag=1e30",
      "phases.intermediate.adversarial.max_norm=0"], "with the adversarial perturbation active "
                                                     "(phases.intermediate.adversarial.method = freelb"),
])
def test_nonfinite_training_stops_naming_step_loss_and_cause(world, tmp_path, capsys, sets, cause):
    cfg = config(world, tmp_path, phase={"max_steps": 12, "save_every": 0}, deepspeed="cpu")
    code = xr("train", "--config", cfg, "--phase", "intermediate", *[a for s in sets for a in ("--set", s)])
    assert code == 2
    err = error_of(capsys)
    assert "phases.intermediate: training stopped" in err and "at step" in err and "the loss was nan" in err, err
    assert "Likely cause: " in err and cause in err and "The phase is not complete" in err, err
    assert not (tmp_path / "runs" / "r").exists()  # it failed before its first checkpoint: nothing left behind


def test_nonfinite_steps_are_counted_and_an_untrained_phase_is_not_complete(world, tmp_path, capsys, wandb_env):
    """Budget switched off: every step of this FreeLB run is non-finite (DeepSpeed skips them); the
    count goes to metrics.jsonl and W&B, and the phase that never took a finite step is not complete."""
    from xrobust.tracking.wandb_reader import read_run

    cfg = config(world, tmp_path, deepspeed="cpu", tracking={"mode": "offline", "project": "safety"},
                 phase={"adversarial": {"method": "freelb", "init_mag": 1e30, "max_norm": 0},
                        "nonfinite": {"max_consecutive": 0, "max_fraction": 1.0}})
    assert xr("train", "--config", cfg, "--phase", "intermediate") == 2
    err = error_of(capsys)
    assert "none of its 4 optimizer steps was finite; the model is its untrained start" in err, err
    run_dir = tmp_path / "runs" / "r" / "intermediate"
    assert [r["nonfinite_steps"] for r in train_records(run_dir)] == [1, 2, 3, 4]
    assert not (run_dir / "phase_complete.json").exists() and not (tmp_path / "runs" / "r" / "models.json").exists()
    (path,) = (wandb_env / "dir" / "wandb").glob("offline-run-*")
    logged = [row["intermediate/train/nonfinite_steps"] for row in read_run(path)["history"]
              if "intermediate/train/nonfinite_steps" in row]
    assert logged == [1, 2, 3, 4]


@pytest.mark.parametrize("setting, fragment", [
    ("phases.intermediate.lr=.nan", "key 'phases.intermediate.lr': expected a finite number, got nan"),
    ("phases.intermediate.lr=inf", "key 'phases.intermediate.lr': expected a finite number, got inf"),
    ("phases.intermediate.lr=0", "key 'phases.intermediate.lr': 0.0 is out of range; expected a value in (0, inf)"),
    ("phases.intermediate.adam_eps=-1", "key 'phases.intermediate.adam_eps': -1.0 is out of range"),
    ("phases.intermediate.weight_decay=-0.01", "key 'phases.intermediate.weight_decay': -0.01 is out of range"),
    ("phases.intermediate.max_grad_norm=.inf", "key 'phases.intermediate.max_grad_norm': expected a finite number"),
    ("phases.intermediate.warmup_ratio=1", "key 'phases.intermediate.warmup_ratio': 1.0 is out of range"),
    ("phases.intermediate.adversarial.step_size=.NaN", "adversarial.step_size': expected a finite number"),
    ("phases.intermediate.nonfinite.max_fraction=2", "nonfinite.max_fraction': 2.0 is out of range"),
    ("model.dropout=1.5", "key 'model.dropout': 1.5 is out of range; expected a value in [0, 1)"),
    ("evaluation.layer=-1", "key 'evaluation.layer': -1 is out of range"),
])
def test_config_rejects_non_finite_and_out_of_range_numbers(world, tmp_path, capsys, setting, fragment):
    cfg = config(world, tmp_path)
    assert xr("train", "--config", cfg, "--phase", "intermediate", "--set", setting) == 2
    err = error_of(capsys)
    assert str(cfg) in err and fragment in err, err
    assert not (tmp_path / "runs").exists()


# -- one writer per run directory; Ctrl-C on 2 ranks -----------------------------------------------------

@pytest.mark.multirank
@pytest.mark.slow
def test_second_writer_stops_at_once_naming_the_holder_and_ctrl_c_checkpoints(world, tmp_path):
    cfg = config(world, tmp_path, phase={"max_steps": 5000, "save_every": 0, "micro_batch_size": 4})
    run = tmp_path / "runs" / "r"
    metrics = run / "intermediate" / "metrics.jsonl"
    lock = run / ".xrobust.lock"
    holder = spawn(["train", "--config", str(cfg), "--phase", "intermediate"], ranks=2)
    try:
        wait_for(lambda: metrics.is_file() and len(metrics.read_text().splitlines()) >= 2, 400, holder,
                 "the first training steps")
        record = json.loads(lock.read_text())
        assert record["command"].endswith(f"train --config {cfg} --phase intermediate")
        for extra in (["--resume"], ["--overwrite"]):
            second = run_cli(["train", "--config", str(cfg), "--phase", "intermediate", *extra])
            assert second.returncode == 2, second.stderr[-3000:]
            assert f"{run}: the run directory is in use by pid {record['pid']} on host {record['host']}" \
                   in second.stderr, second.stderr[-3000:]
            assert "intermediate:" not in second.stderr  # stopped before loading or training anything
        second = run_cli(["pipeline", "--config", str(cfg)])
        assert second.returncode == 2 and "is in use by pid" in second.stderr, second.stderr[-3000:]
        assert (run / "config.yaml").is_file() and holder.poll() is None  # --overwrite deleted nothing
        steps_before = len(train_records(run / "intermediate"))
        os.killpg(holder.pid, signal.SIGINT)  # Ctrl-C in the terminal: the launcher and both ranks
        out, _ = holder.communicate(timeout=300)
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
    assert "KeyboardInterrupt" not in out, out[-5000:]
    assert "received SIGINT: writing a checkpoint at step" in out, out[-5000:]
    saved = int(out.split("interrupted: checkpoint at step ")[1].split()[0])
    assert saved >= steps_before
    assert (run / "intermediate" / "checkpoints" / "latest_complete").read_text().strip() == f"step-{saved:08d}"
    steps = [r["step"] for r in train_records(run / "intermediate")]
    assert steps == list(range(1, saved + 1))  # one writer: every step exactly once
    assert lock.read_text() == ""  # released on exit


def test_stale_lock_is_taken_over_and_a_live_holder_is_recognised(finished, tmp_path, capsys):
    """A lock record whose process is alive stops a writer even where flock is not enforced; a record
    whose process is gone is stale; a copied run's record belongs to another directory."""
    run = copy_run(finished, tmp_path / "copy")
    from xrobust.training.lock import _boot_id, _start_ticks

    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        record = {"host": socket.gethostname(), "pid": sleeper.pid, "boot_id": _boot_id(),
                  "start_ticks": _start_ticks(sleeper.pid), "path": str(run.resolve()), "since": "then",
                  "command": "xrobust train ..."}
        (run / ".xrobust.lock").write_text(json.dumps(record))
        assert xr("eval", "--run", run, "--tasks", "demo_xnli", "--languages", "en") == 2
        err = error_of(capsys)
        assert f"in use by pid {sleeper.pid} on host {record['host']}" in err and "does not enforce" in err, err
    finally:
        sleeper.kill()
        sleeper.wait()
    assert xr("eval", "--run", run, "--tasks", "demo_xnli", "--languages", "en") == 0
    assert f"stale lock of pid {sleeper.pid}" in capsys.readouterr().err


# -- resume keeps the recorded config ------------------------------------------------------------------

def test_resume_refuses_a_config_that_trains_differently(world, finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path / "runs" / "r")
    cfg = config(world, tmp_path, phases={"intermediate": PHASE, "target": TARGET}, evaluation=EVALUATION)
    before = digest(run)
    assert xr("pipeline", "--config", cfg, "--resume", "--no-eval", "--set", "phases.intermediate.lr=0.002",
              "--set", "phases.target.tasks=[demo_xnli,demo_pos]") == 2
    err = error_of(capsys)
    assert "--resume with a config that trains differently from the recorded one" in err, err
    assert "phases.intermediate.lr: 0.001 -> 0.002" in err and 'phases.target.tasks: ["demo_xnli"] -> ' \
           '["demo_xnli", "demo_pos"]' in err, err
    assert digest(run) == before  # config.yaml and models.json untouched
    # where results go, what is logged, how fast the evaluation runs: not a change of training
    assert xr("pipeline", "--config", cfg, "--resume", "--no-eval", "--set", "tracking.mode=disabled",
              "--set", "evaluation.batch_size=8", "--set", "phases.intermediate.save_every=3") == 0
    assert not (run / "config_changes.jsonl").exists()
    # accepted explicitly: the change is recorded; the finished phases keep the record of their training
    assert xr("pipeline", "--config", cfg, "--resume", "--no-eval", "--accept-config-change",
              "--set", "phases.intermediate.lr=0.002") == 0
    (change,) = [json.loads(line) for line in (run / "config_changes.jsonl").read_text().splitlines()]
    assert change["changes"] == {"phases.intermediate.lr": {"recorded": 0.001, "now": 0.002}}
    assert yaml.safe_load((run / "config.yaml").read_text())["phases"]["intermediate"]["lr"] == 0.002
    assert yaml.safe_load((run / "intermediate" / "config.yaml").read_text())["phases"]["intermediate"]["lr"] == 0.001


# -- self-contained run directories; models without weights -----------------------------------------------

def test_models_json_is_relative_and_a_moved_run_evaluates_its_own_models(finished, tmp_path):
    models = json.loads((finished / "models.json").read_text())
    assert models == {"demo_nli": "intermediate/model", "phase:intermediate": "intermediate/model",
                      "demo_xnli": "target/model", "phase:target": "target/model"}
    moved = copy_run(finished, tmp_path / "a" / "copy")
    moved = Path(shutil.move(moved, tmp_path / "b" / "moved"))
    # the original's model is damaged: a moved run that still used it would fail
    shutil.copy(finished / "target" / "model" / "heads.pt", tmp_path / "heads.pt")
    (finished / "target" / "model" / "heads.pt").write_bytes(b"not weights")
    try:
        res = run_cli(["eval", "--run", "moved", "--split", "dev", "--tasks", "demo_xnli", "--languages", "en"],
                      cwd=moved.parent)  # another working directory, a relative --run
    finally:
        shutil.copy(tmp_path / "heads.pt", finished / "target" / "model" / "heads.pt")
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads((moved / "eval-dev" / "results.json").read_text())
    assert results["settings"]["models"]["demo_xnli"] == "target/model"
    assert (moved / "predictions" / "demo_xnli" / "dev-en.tsv").is_file()


def test_older_run_directories_with_working_directory_paths_still_load(finished, tmp_path, capsys):
    """Older runs wrote output_dir/name/<phase>/model; such paths resolve inside the run wherever it is."""
    run = copy_run(finished, tmp_path / "old")
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    recorded.update(output_dir="runs", name="gone")  # the original location no longer exists
    (run / "config.yaml").write_text(yaml.safe_dump(recorded, sort_keys=False))
    (run / "models.json").write_text(json.dumps({k: f"runs/gone/{v}" for k, v in
                                                 json.loads((finished / "models.json").read_text()).items()}))
    assert xr("eval", "--run", run, "--split", "dev", "--tasks", "demo_xnli", "demo_tatoeba", "--languages", "xa") == 0
    results = json.loads((run / "eval-dev" / "results.json").read_text())
    assert set(results["tasks"]) == {"demo_xnli", "demo_tatoeba"}


def test_a_model_without_weights_is_an_error_never_a_random_init(world, finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path / "noweights")
    (run / "target" / "model" / "model.safetensors").unlink()
    before = (run / "results.json").read_bytes()
    for command in (["eval", "--run", run], ["robustness", "--run", run, "--tasks", "demo_xnli", "--eps", "0.1"]):
        assert xr(*command) == 2
        err = error_of(capsys)
        assert f"{run / 'target' / 'model'}: no encoder weights" in err, err
    assert (run / "results.json").read_bytes() == before
    # training from a directory with a config but no weights: only on explicit request
    bare = tmp_path / "bare"
    shutil.copytree(world["model_config_dir"], bare)
    model = {"name_or_path": str(bare), "tokenizer": str(world["tokenizer_dir"]), "dropout": 0.0}
    cfg = config(world, tmp_path, "bare", model=model)
    assert xr("train", "--config", cfg, "--phase", "intermediate") == 2
    err = error_of(capsys)
    assert f"{bare}: no encoder weights" in err and "model.random_init" in err, err
    assert not (tmp_path / "runs" / "bare").exists()
    assert xr("train", "--config", cfg, "--phase", "intermediate", "--set", "model.random_init=true") == 0


def test_unexpected_failure_in_a_run_leaves_its_traceback_in_the_run(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path / "damaged")
    (run / "target" / "model" / "heads.pt").write_bytes(b"not weights")
    assert xr("eval", "--run", run) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: loading the trained model {run / 'target' / 'model'}: "), err
    assert f"(traceback in {run / 'logs' / 'error-rank0.log'})" in last and "Traceback" not in err
    assert "Traceback (most recent call last)" in (run / "logs" / "error-rank0.log").read_text()


# -- checkpoints and --resume ------------------------------------------------------------------------------

def test_damaged_checkpoint_falls_back_and_nothing_to_resume_is_said(world, tmp_path, capsys):
    cfg = config(world, tmp_path, phase={"max_steps": 6, "save_every": 2, "keep_checkpoints": 3}, deepspeed="cpu")
    train = ["train", "--config", cfg, "--phase", "intermediate"]
    assert xr(*train) == 0
    run = tmp_path / "runs" / "r" / "intermediate"
    reference = {r["step"]: r["loss"] for r in train_records(run)}
    # as if killed just after the last checkpoint, with that checkpoint's optimizer shard truncated
    (run / "phase_complete.json").unlink()
    (shard,) = (run / "checkpoints" / "step-00000006").glob("*optim_states.pt")
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    capsys.readouterr()
    assert xr(*train, "--resume") == 0
    out = capsys.readouterr()
    assert f"checkpoint {run / 'checkpoints' / 'step-00000006'} cannot be used: {shard}: damaged or truncated" \
           in out.err and f"falling back to {run / 'checkpoints' / 'step-00000004'}" in out.err, out.err
    assert f"resumed from {run / 'checkpoints' / 'step-00000004'} at step 4" in out.out
    again = train_records(run)[-2:]  # steps 5 and 6 again, from the step-4 checkpoint: the same losses
    assert [(r["step"], r["loss"]) for r in again] == [(s, pytest.approx(reference[s], abs=1e-6)) for s in (5, 6)]
    # nothing to resume: said, and a fresh start only when asked (no second series in metrics.jsonl)
    (run / "phase_complete.json").unlink()
    shutil.rmtree(run / "checkpoints")
    assert xr(*train, "--resume") == 2
    err = error_of(capsys)
    assert f"{run}: nothing to resume: metrics.jsonl records 8 training steps but" in err and \
           "--fresh-if-nothing-to-resume" in err, err
    assert xr(*train, "--resume", "--fresh-if-nothing-to-resume") == 0
    assert [r["step"] for r in train_records(run)] == [1, 2, 3, 4, 5, 6]
    assert len(list(run.glob("metrics.abandoned-*.jsonl"))) == 1
    missing = config(world, tmp_path, "never")
    assert xr("train", "--config", missing, "--phase", "intermediate", "--resume") == 2
    assert "nothing to resume (no such run directory)" in error_of(capsys)
    assert not (tmp_path / "runs" / "never").exists()


# -- a signal during evaluation ---------------------------------------------------------------------------

def test_ctrl_c_during_evaluation_stops_before_the_next_batch(finished, tmp_path):
    run = copy_run(finished, tmp_path / "eval")
    lock = run / ".xrobust.lock"
    proc = spawn(["eval", "--run", str(run), "--split", "dev", "--set", "evaluation.batch_size=1"])
    try:
        wait_for(lambda: lock.is_file() and lock.read_text().strip(), 300, proc, "the evaluation to start")
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 3, out[-3000:]
    assert "interrupted: stopped the evaluation at demo_xnli (en) (results.json not updated) on SIGINT" in out, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    assert not (run / "eval-dev").exists()
