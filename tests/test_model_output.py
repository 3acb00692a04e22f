"""The model's output type (attribute and dict access; DeepSpeed's ZeRO-3 hooks see its tensors) and the
ZeRO-3 engine's fp32 master aliasing the parameter partitions (engine.share_fp32_master)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from world import REPO, env

from xrobust.modeling import ModelOutput


def test_attribute_and_key_access():
    logits = torch.ones(2, 3)
    out = ModelOutput(loss=None, logits=logits)
    assert out.loss is None and out.logits is logits and out.hidden_states is None
    assert list(out.keys()) == ["logits"]  # None fields are not items: nothing for hooks to walk
    loss = torch.tensor(0.5)
    out = ModelOutput(loss=loss, logits=logits, hidden_states=(logits,))
    assert list(out.keys()) == ["loss", "logits", "hidden_states"]
    replaced = torch.zeros(2, 3)
    out["logits"] = replaced  # DeepSpeed replaces the tensors of a dict output in place
    assert out.logits is replaced


def _step(*flags) -> dict:
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "scripts" / "zero3_tiny_steps.py"), *flags],
                          env=env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.mark.slow
def test_zero3_hooks_see_the_output_tensors():
    result = _step()
    assert not result["warned"]
    assert result["loss_grad_fn"] == "PreBackwardFunctionForModuleBackward"  # the module's pre-backward hook
    assert result["logits_shape"] == [2, 3]
    plain = _step("--plain-output")  # the check can fail: a plain object hides the tensors
    assert plain["warned"]
    assert plain["loss_grad_fn"] != "PreBackwardFunctionForModuleBackward"
    assert plain["losses"] == pytest.approx(result["losses"], rel=1e-6)


@pytest.mark.slow
def test_fp32_master_aliases_the_parameter_partitions():
    shared = _step()
    assert shared["master_aliased"] and all(shared["master_aliased"])
    n = shared["parameters"]
    # parameter partitions (the master too) + two Adam moments: 12 bytes per parameter, plus the
    # alignment padding of the flat buffers (a few elements per sub-group)
    assert 12 * n <= shared["model_state_bytes"] < 12 * n + 4096
    separate = _step("--no-share-master")  # DeepSpeed as shipped: a second fp32 copy
    assert not any(separate["master_aliased"])
    assert 16 * n <= separate["model_state_bytes"] < 16 * n + 4096
    # the same training: the step updates one copy instead of copying the master into the other
    assert shared["losses"] == pytest.approx(separate["losses"], rel=1e-6)
    assert shared["losses"][1] != shared["losses"][0]
