"""`xrobust bench adversarial` end to end on a tiny model: every case runs in the interleaved rounds of
a real 2-rank ZeRO-3 job, with the pass and reduction counts its method implies (the step-time
figures themselves are measured on an idle machine, docs/BENCHMARKS.md, never asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from world import REPO, env

pytestmark = [pytest.mark.multirank, pytest.mark.slow]


def test_every_case_runs_and_the_report_judges_the_floors(tmp_path):
    out = tmp_path / "bench.json"
    res = subprocess.run([sys.executable, "-m", "xrobust.cli", "bench", "adversarial", "--rounds", "2", "--warmup", "0",
                          "--hidden", "32", "--layers", "1", "--seq-len", "16", "--batch", "2", "--json", str(out)],
                         env=env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    # on a model this small fixed per-pass costs dominate, so a floor may be missed: exit status 1
    assert res.returncode in (0, 1), (res.stdout + res.stderr)[-4000:]
    verdict = "all floors met" if res.returncode == 0 else "a floor is missed"
    assert verdict in res.stdout, res.stdout[-3000:]
    data = json.loads(out.read_text())
    rows = {r["label"]: r for r in data["results"]}
    assert list(rows) == ["plain", "fgm", "pgd-2", "pgd-2-random-start", "freelb-2", "freelb-2-uncoalesced",
                          "smart-1", "r3f", "rs-rp"]
    assert {k: r["passes"] for k, r in rows.items()} == {
        "plain": 1, "fgm": 2, "pgd-2": 3, "pgd-2-random-start": 4, "freelb-2": 2, "freelb-2-uncoalesced": 2,
        "smart-1": 3, "r3f": 2, "rs-rp": 1}
    for label, r in rows.items():
        assert len(r["times"]) == 2 and all(t > 0 for t in r["times"]), label
    # gradient reductions per optimizer step: one everywhere, two for FreeLB-2 without coalescing
    assert {k: max(r["reductions"]) for k, r in rows.items()} == {k: 2 if k == "freelb-2-uncoalesced" else 1
                                                                  for k in rows}
