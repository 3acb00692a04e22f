"""Where a process reaches its peak resident memory.

`XROBUST_RSS_TRACE=DIR` makes every xrobust process sample its resident set every 10 ms and record
the main thread's Python stack each time the maximum grows by more than 16 MiB; at exit each rank
writes DIR/rss-rank-N.json (the growth steps, the last is the peak). /usr/bin/time gives the peak
only; this says which call set it (docs/BENCHMARKS.md, XLM-R Large memory).
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import time
import traceback

STEP = 16 << 20
PERIOD_S = 0.01


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def start_from_env() -> None:
    out = os.environ.get("XROBUST_RSS_TRACE")
    if not out:
        return
    main_id = threading.main_thread().ident
    t0 = time.monotonic()
    growth: list[dict] = []
    peak = {"rss": 0, "t": 0.0}

    def sample() -> None:
        recorded = 0
        while True:
            rss = _rss_bytes()
            if rss > peak["rss"]:
                peak.update(rss=rss, t=round(time.monotonic() - t0, 3))
            if rss > recorded + STEP:
                recorded = rss
                frame = sys._current_frames().get(main_id)
                stack = [line.strip() for line in traceback.format_stack(frame)[-14:]] if frame else []
                growth.append({"rss": rss, "t": round(time.monotonic() - t0, 3), "stack": stack})
            time.sleep(PERIOD_S)

    def dump() -> None:
        os.makedirs(out, exist_ok=True)
        path = os.path.join(out, f"rss-rank-{os.environ.get('RANK', '0')}.json")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump({"peak": peak, "growth": growth}, fh, indent=1)

    threading.Thread(target=sample, name="xrobust-rss-trace", daemon=True).start()
    atexit.register(dump)
