"""pytest fixtures: ``test_cluster`` (a fresh cluster per test) and ``registry`` (a real OCI registry)."""

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
