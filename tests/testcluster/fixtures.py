"""pytest fixtures: ``test_cluster`` (a fresh cluster per test), ``test_clusters`` (three of them, a
fleet's separate API servers) and ``registry`` (a real OCI registry)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testcluster.cluster import TestCluster
from testcluster.registry import Registry


@pytest.fixture
def test_cluster(tmp_path: Path) -> Iterator[TestCluster]:
    """A started TestCluster (fresh store, scenarios and faults; operator off); stopped afterwards.

    Starting takes a few milliseconds, so every test gets its own cluster and nothing leaks.
    """
    cluster = TestCluster(workdir=tmp_path / "testcluster").start()
    try:
        yield cluster
    finally:
        cluster.stop()


FLEET_NAMES = ("dev", "prod-a", "prod-b")


@pytest.fixture
def test_clusters(tmp_path: Path) -> Iterator[dict[str, TestCluster]]:
    """Three started TestClusters, ``dev``, ``prod-a`` and ``prod-b``: separate API servers (own port,
    store, token, kubeconfig), as a fleet's clusters are; stopped afterwards."""
    clusters: dict[str, TestCluster] = {}
    try:
        for name in FLEET_NAMES:
            clusters[name] = TestCluster(workdir=tmp_path / f"testcluster-{name}").start()
        yield clusters
    finally:
        for cluster in clusters.values():
            cluster.stop()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """A real ``docker-registry`` on 127.0.0.1:<free port> with temp storage; stopped afterwards.

    ``registry.host`` is ``127.0.0.1:PORT``; ``registry.push_test_image(repo, tag) -> digest``.
    """
    reg = Registry(workdir=tmp_path / "registry").start()
    try:
        yield reg
    finally:
        reg.stop()
