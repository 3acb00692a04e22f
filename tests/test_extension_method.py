"""A new embedding-space method from one's own module, with no edit to xrobust (docs/EXTENDING.md, "A new
adversarial method"): this module defines SignNoise, and `xrobust train` runs it as
`adversarial: {method: test_extension_method:SignNoise, ...}` (tests/ is on sys.path under pytest).

SignNoise trains on f(x + sigma * s), s a random sign per embedding coordinate at real tokens."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pytest
import torch
import yaml

os.environ.setdefault("DS_ACCELERATOR", "cpu")

from world import build_small_world, write_config  # noqa: E402
from xrobust.adversarial import EmbeddingPerturbation, MethodConfig, setting  # noqa: E402
from xrobust.cli import main  # noqa: E402


@dataclass
class SignNoiseConfig(MethodConfig):
    sigma: float = setting(0.05, "positive")  # the perturbation's value at every coordinate of a real token
    start_step: int = setting(0, "step")  # plain training before this optimizer step


class SignNoise(EmbeddingPerturbation):
    Config = SignNoiseConfig
    seen: list = []  # the perturbations of every micro-step (this test reads them)

    def _adv_step(self, engine, batch):
        z = self._noise(batch, 1.0, "uniform").sign() * self.cfg.sigma  # padding stays exactly 0
        with self.injector.active(z):
            loss = engine(**batch).loss
        engine.backward(loss)
        SignNoise.seen.append((z.detach().clone(), batch["attention_mask"].clone()))
        return self._stats(loss, None, loss, z)


@pytest.fixture(scope="module", autouse=True)
def _restore_environment(restore_environment):
    yield


def test_a_method_from_a_test_module_trains_through_xrobust_train(tmp_path_factory, capsys):
    tmp = tmp_path_factory.mktemp("extension-method")
    world = build_small_world(tmp / "world")
    method = f"{__name__}:SignNoise"
    phase = {"tasks": ["demo_nli"], "batch_size": 8, "micro_batch_size": 8, "max_steps": 3, "eval_every": 0,
             "save_every": 0, "max_dev_examples": 16, "max_length": 48, "lr": 1.0e-3,
             "adversarial": {"method": method, "sigma": 0.02, "start_step": 1}}
    cfg = write_config(world, tmp / "c.yaml", "ext", tmp / "runs", deepspeed="cpu", phases={"intermediate": phase})
    SignNoise.seen.clear()
    assert main(["train", "--config", str(cfg), "--phase", "intermediate"]) == 0, capsys.readouterr().err

    run_dir = tmp / "runs" / "ext" / "intermediate"
    recorded = yaml.safe_load((tmp / "runs" / "ext" / "config.yaml").read_text())
    assert recorded["phases"]["intermediate"]["adversarial"] == {"method": method, "sigma": 0.02, "start_step": 1}
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "loss" in r]
    assert [r["adv_active"] for r in train] == [0.0, 1.0, 1.0]  # plain before start_step
    assert len(SignNoise.seen) == 2  # one micro-batch per step after the warm-up
    for record, (z, mask) in zip(train[1:], SignNoise.seen):
        real = mask != 0
        assert torch.all(z[real].abs() == 0.02) and torch.all(z[~real] == 0)
        assert record["delta_norm"] == pytest.approx(float(z.flatten(1).norm(dim=1).mean()), rel=1e-6)
        assert record["nonfinite_resets"] == 0
