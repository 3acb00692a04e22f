"""`xrobust bench gpu`: the FLOP count and peak table, and the CPU dry run of the whole command (a
2-rank ZeRO-3 job with plain and FreeLB-2 steps, the kernel bandwidth part, the environment), so the
command is known to work before a GPU is at hand."""

from __future__ import annotations

import json
import math

import pytest

from world import run_cli

from xrobust.bench.gpu import bf16_peak
from xrobust.bench.models import count_weights, model_config, train_flops_per_token


def test_flop_count_of_xlmr_large():
    params, n_matmul = count_weights(model_config("xlmr-large"))
    assert params == 559_893_507  # encoder + 3-way classification head, as the training benchmark counts
    layers, d, inner = 24, 1024, 4096
    assert n_matmul == layers * (4 * d * d + 2 * d * inner)  # q, k, v, attention output; two feed-forward
    assert train_flops_per_token(n_matmul, layers, 128, d) == 6 * n_matmul + 12 * layers * 128 * d


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989.4), ("NVIDIA H100 PCIe", 756.5), ("NVIDIA H100 NVL", 835.5),
    ("NVIDIA H200", 989.4), ("NVIDIA H200 NVL", 835.5), ("NVIDIA GH200 480GB", 989.4),
    ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA A100 80GB PCIe", 312.0), ("NVIDIA L4", 121.0),
    ("NVIDIA L40S", 362.0), ("NVIDIA L40", 181.0), ("NVIDIA A10", 125.0), ("Tesla V100-SXM2-16GB", None),
])
def test_bf16_peak_table(name, peak):
    found = bf16_peak(name)
    assert (found[0] if found else None) == peak


@pytest.mark.multirank
@pytest.mark.slow
def test_cpu_dry_run(tmp_path):
    out = tmp_path / "gpu.json"
    proc = run_cli(["bench", "gpu", "--device", "cpu", "--peak-tflops", "0.5", "--json", str(out)], timeout=900)
    r = json.loads(out.read_text())
    assert (r["device"], r["ranks"], r["model"], r["dtype"], r["seq_len"]) == ("cpu", 2, "tiny", "float32", 128)
    params, n_matmul = count_weights(model_config("tiny"))
    assert r["parameters"] == params and r["flops"]["n_matmul"] == n_matmul
    per_token = train_flops_per_token(n_matmul, 2, 128, 64)
    assert r["flops"]["per_token"] == per_token
    assert set(r["runs"]) == {"plain", "freelb-2"}
    tokens = r["micro_batch_per_device"] * 128 * 2
    for label, run in r["runs"].items():
        assert run["passes"] == (2 if label == "freelb-2" else 1)
        assert len(run["step_s_all"]) == r["timed_steps"] and run["step_s"] > 0
        assert all(math.isfinite(x) for x in run["losses"])
        assert run["tokens_per_s"] == pytest.approx(tokens / run["step_s"], rel=1e-9)
        assert run["model_tflops"] == pytest.approx(run["passes"] * per_token * run["tokens_per_s"] / 1e12, rel=1e-9)
        assert run["mfu"] == pytest.approx(run["model_tflops"] / (0.5 * 2), rel=1e-9)
        assert run["peak_allocated_bytes_per_device"] == [None, None]  # no GPU: no device memory figure
    kernels = {(tuple(k["shape"]), k["backend"]): k for k in r["kernels"]["results"]}
    assert set(kernels) == {((4, 32, 64), b) for b in ("eager", "compiled", "copy")}
    assert all(k["gbps"] > 0 for k in kernels.values())
    env = r["environment"]
    import deepspeed
    import torch

    assert (env["torch"], env["deepspeed"], env["gpus"]) == (torch.__version__, deepspeed.__version__, [])
    text = proc.stdout
    assert "FLOPs: 6 N + 12 L s d" in text and "MFU = model TFLOP/s / (0.5 TFLOP/s" in text
    assert "freelb-2" in text and "kernels:" in text
