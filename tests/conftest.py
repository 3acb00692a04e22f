"""Shared fixtures. Cluster code lives in tests/cluster.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import hub_server  # noqa: E402

# Every test session talks to a local replica hub (tests/hub_server.py), never to the real one;
# this must happen before anything imports datasets or huggingface_hub.
REPLICA_HUB = hub_server.install()

from e2e_world import e2e_world, reference_run  # noqa: E402,F401  (session fixtures of the end-to-end tests)


@pytest.fixture(scope="session")
def hub():
    """The replica hub with every dataset the registry loads by default (tests/hub_replicas.py)."""
    from hub_replicas import build_replicas

    if "google/xtreme" not in REPLICA_HUB.store.repos:
        build_replicas(REPLICA_HUB.store)
    return REPLICA_HUB


def _running_cluster(root, **kw):
    from cluster import ClusterUnavailable, SlurmCluster

    cluster = SlurmCluster(root, **kw)
    try:
        cluster.start()
    except ClusterUnavailable as exc:
        print(f"Slurm cluster {kw or ''} unavailable: {exc}")
        pytest.skip(f"no Slurm cluster: {exc}")
    print(f"Slurm cluster {', '.join(cluster.nodes)}: apt {cluster.apt_seconds:.1f} s, "
          f"started in {cluster.start_seconds:.1f} s")
    return cluster


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A running single-node Slurm cluster (real munged/slurmctld/slurmd); skips without root."""
    cluster = _running_cluster(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def multinode_cluster(tmp_path_factory):
    """A running Slurm cluster of 3 nodes n1-n3 on this machine, each with its own host name and a
    node-local TMPDIR (tests/cluster.py); skips, saying why, without root or namespaces."""
    cluster = _running_cluster(tmp_path_factory.mktemp("slurm_nodes"), nodes=3)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def restore_environment():
    """For modules that run the CLI in-process: joining a 1-rank process group sets RANK etc. in
    os.environ, and later tests that launch jobs must not inherit them."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """W&B offline, with every W&B folder inside tmp_path."""
    root = tmp_path / "wandb_home"
    for var, sub in (("WANDB_DIR", "dir"), ("WANDB_DATA_DIR", "data"), ("WANDB_CACHE_DIR", "cache"),
                     ("WANDB_CONFIG_DIR", "config")):
        (root / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(var, str(root / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    for key in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "XROBUST_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    return root
