"""XROBUST_RSS_TRACE: every xrobust process records its peak resident memory and the stack that set it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ALLOCATE = """
import time
import numpy
from xrobust.training.memory_trace import start_from_env
start_from_env()
time.sleep(0.05)
def grow():
    block = numpy.ones(64_000_000)  # 512 MB, touched
    time.sleep(0.3)
    return block
grow()
"""


def _env(out):
    return {**os.environ, "XROBUST_RSS_TRACE": str(out), "RANK": "3"}


def test_trace_records_the_peak_and_the_call_that_set_it(tmp_path):
    subprocess.run([sys.executable, "-c", ALLOCATE], env=_env(tmp_path), check=True, timeout=120)
    trace = json.loads((tmp_path / "rss-rank-3.json").read_text())
    growth = trace["growth"]
    assert trace["peak"]["rss"] >= 512e6 and trace["peak"]["rss"] >= growth[-1]["rss"]
    assert any("in grow" in line for line in growth[-1]["stack"]), growth[-1]["stack"]
    assert [g["rss"] for g in growth] == sorted(g["rss"] for g in growth)


def test_every_cli_process_starts_the_trace(tmp_path):
    subprocess.run([sys.executable, "-m", "xrobust.cli", "--help"], env=_env(tmp_path), check=True, timeout=120,
                   capture_output=True)
    assert json.loads((tmp_path / "rss-rank-3.json").read_text())["peak"]["rss"] > 0
