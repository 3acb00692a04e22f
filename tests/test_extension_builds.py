"""A builder killed mid-build leaves PyTorch's `lock` file behind; xrobust's builds must not wait on it forever."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import warnings

import pytest

from xrobust.kernels import builds


@pytest.fixture
def ext_root(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    return tmp_path


def test_dead_builders_baton_is_removed_with_a_warning(ext_root):
    baton = ext_root / "demo_ext" / "lock"
    baton.parent.mkdir()
    baton.touch()
    old = time.time() - builds.STALE_AFTER_S - 5
    os.utime(baton, (old, old))
    with pytest.warns(RuntimeWarning, match=str(baton)):
        with builds.exclusive_build("demo_ext") as folder:
            assert folder == baton.parent
            assert not baton.exists()


def test_live_builders_baton_is_waited_for_not_removed(ext_root):
    baton = ext_root / "demo_ext" / "lock"
    baton.parent.mkdir()
    baton.touch()
    released = []
    timer = threading.Timer(0.5, lambda: (baton.unlink(), released.append(time.monotonic())))
    timer.start()
    start = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "stale" warning: the other builder finished by itself
        with builds.exclusive_build("demo_ext", stale_after_s=60):
            entered = time.monotonic()
    timer.join()
    assert released and entered >= released[0] >= start


def test_young_baton_of_a_dead_builder_is_removed_after_the_grace_period(ext_root):
    baton = ext_root / "demo_ext" / "lock"
    baton.parent.mkdir()
    baton.touch()
    start = time.monotonic()
    with pytest.warns(RuntimeWarning, match="stale build lock"):
        with builds.exclusive_build("demo_ext", stale_after_s=1.0):
            pass
    assert time.monotonic() - start >= 0.9  # waited out the grace period from the file's creation
    assert not baton.exists()


def test_builders_are_serialised_across_processes(ext_root):
    """A second process enters only after the first leaves (the flock), so it never sees a half-built op."""
    code = ("import sys, time; from xrobust.kernels.builds import exclusive_build\n"
            "with exclusive_build('demo_ext'):\n"
            "    print('in', flush=True); time.sleep(float(sys.argv[1])); print('out', flush=True)\n")
    env = dict(os.environ)
    first = subprocess.Popen([sys.executable, "-c", code, "1.5"], stdout=subprocess.PIPE, text=True, env=env)
    assert first.stdout.readline().strip() == "in"
    start = time.monotonic()
    second = subprocess.run([sys.executable, "-c", code, "0"], capture_output=True, text=True, env=env, timeout=120)
    waited = time.monotonic() - start
    assert first.wait(timeout=120) == 0 and second.returncode == 0, second.stderr
    assert waited >= 1.0, f"the second builder entered after {waited:.2f} s while the first held the build"
