"""Every adversarial method under ZeRO-3 on 2 CPU ranks equals a plain-PyTorch re-implementation.

One launched 2-rank job loops over the methods (tests/scripts/adv_zero3_equivalence.py). Per
optimizer step it compares the full accumulated gradients, per micro-batch the losses, delta norm
and delta-gradient norm (in loss units), and at the end the parameters, all to 1e-5. The gradient
and delta-gradient comparisons make any wrong scale (1/GAS, 1/K, fp16 loss scale) fail; the
parameters alone would not, since AdamW is invariant to a constant gradient scale.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "adv_zero3_equivalence.py"


@pytest.mark.multirank
@pytest.mark.slow
def test_zero3_two_ranks_match_eager_for_every_method(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not found")
    out = tmp_path / "result.json"
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[1]))
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", str(SCRIPT), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert out.is_file(), proc.stdout[-3000:] + proc.stderr[-5000:]
    result = json.loads(out.read_text())
    failed = {k: v for k, v in result["results"].items() if not v["passed"]}
    assert not failed, json.dumps(failed, indent=1)
    assert set(result["results"]) >= {"none", "fgm", "pgd", "freelb", "freelb-linf", "smart", "r3f", "rs-rp"}
    assert proc.returncode == 0, proc.stderr[-3000:]
