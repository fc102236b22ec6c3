"""End-to-end fixtures: a migrated Airflow DB, the test cluster with its world, and a DAG runner."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harness import airflow_env
from harness.pipeline_world import World
from testcluster.cluster import TestCluster
from testcluster.fleet import seed_demo
from testcluster.registry import Registry


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """The metadata DB, migrated once per session."""
    airflow_env.migrate()


@pytest.fixture
def world(airflow_db: None, test_cluster: TestCluster, registry: Registry) -> Iterator[World]:
    """The demo fleet on the test cluster, every step's scenario installed, Airflow pointed at it."""
    seed_demo(test_cluster)
    world = World(test_cluster, registry).install()
    saved = dict(os.environ)
    os.environ.update(world.env())
    try:
        yield world
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def run_dag(world: World) -> Callable[..., Any]:
    """Run the real DAG once with ``dag.test()``; returns the DagRun."""
    from harness.dag_runner import run_pipeline

    def run(**params: Any) -> Any:
        return run_pipeline(world.params(**params))

    return run
