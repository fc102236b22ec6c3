"""A fleet (#18): three clusters behind separate test API servers, one run, each image built once, waves.

``dev`` (wave 1) runs OpenShift 4.18.12, ``prod-a`` and ``prod-b`` (wave 2) run 4.19.3; the form asks for
4.19.3 everywhere, so dev needs 4.19.3's kernel too (under its OS tag rhcos4.18, prod-a under rhcos4.19):
that kernel is the shared one. The build pods run on the hub, the cluster of ``kubernetes_default`` (dev's
API server here, as the installation's own cluster); each cluster's steps run over its own connection.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from harness.dag_runner import run_pipeline, task_states, xcom
from harness.pipeline_world import RELEASES, World, kube_connection
from testcluster.cluster import TestCluster
from testcluster.fleet import seed_member
from testcluster.registry import Registry

DRIVER = "570.158.01"
K418, K419 = RELEASES["4.18.12"][0], RELEASES["4.19.3"][0]
MEMBERS = {  # name -> (wave, OpenShift version, GPU nodes, connection id)
    "dev": (1, "4.18.12", (("dev-gpu-0", K418, "rhcos", "4.18"),), "kubernetes_default"),
    "prod-a": (
        2,
        "4.19.3",
        (("a-gpu-0", K419, "rhcos", "4.19"), ("a-gpu-1", K419, "rhcos", "4.19")),
        "k8s_a",
    ),
    "prod-b": (2, "4.19.3", (("b-gpu-0", K419, "rhcos", "4.19"),), "k8s_b"),
}


@pytest.fixture
def fleet(
    airflow_db: None,
    test_clusters: dict[str, TestCluster],
    registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, World]:
    """The three clusters seeded and installed (one registry), Airflow pointed at them as a fleet."""
    worlds = {}
    for name, (_wave, version, nodes, _conn) in MEMBERS.items():
        seed_member(test_clusters[name], version, nodes)
        worlds[name] = World(test_clusters[name], registry, groups=(name,)).install()
    env = worlds["dev"].env() | {
        "AIRFLOW_CONN_K8S_A": kube_connection(test_clusters["prod-a"]),
        "AIRFLOW_CONN_K8S_B": kube_connection(test_clusters["prod-b"]),
        "PRECOMPILED_DRIVERS_CLUSTERS": json.dumps(
            [{"name": n, "conn_id": conn, "wave": wave} for n, (wave, _v, _nodes, conn) in MEMBERS.items()]
        ),
        "PRECOMPILED_DRIVERS_RETRY_DELAY_SECONDS": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # restored after the test
    return worlds


@pytest.fixture
def run(fleet: dict[str, World]) -> Callable[..., Any]:
    def go(**params: Any) -> Any:
        return run_pipeline(fleet["dev"].params(ocp_versions=["4.19.3"], driver_versions=[DRIVER], **params))

    return go


def times(dag_run: Any) -> dict[str, tuple[Any, Any]]:
    """task_id -> (start, end) of this run's task instances."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        return {ti.task_id: (ti.start_date, ti.end_date) for ti in tis if ti.map_index < 0}


def test_one_run_builds_each_image_once_and_rolls_out_wave_by_wave_past_an_unreachable_cluster(
    fleet: dict[str, World], test_clusters: dict[str, TestCluster], run: Callable[..., Any]
) -> None:
    test_clusters["prod-b"].stop()  # its API server is gone: unreachable
    before = {name: world.policy_driver() for name, world in fleet.items()}
    dag_run = run()
    states = task_states(dag_run)
    report = xcom(dag_run, "report")
    print(report)
    # The shared kernel (4.19.3's) is built once for dev and prod-a: 2 builds, not 3.
    # (Built on the hub, dev's API server; the tag is the OS tag of the first cluster planned for it.)
    built = sorted(b.rsplit(":", 1)[1] for b in fleet["dev"].builds)
    assert (
        len(built) == 2
        and built[0].startswith(f"{DRIVER}-{K418}-")
        and built[1].startswith(f"{DRIVER}-{K419}-")
    )
    assert not fleet["prod-a"].builds, "nothing is built on a member cluster"
    # ...and published by digest under the other OS tag the other cluster's operator looks for.
    copies = xcom(dag_run, "publish_os_tags")
    assert copies and all(copies.values()), copies
    tags = {ref.rsplit("-", 1)[1] for ref in copies if K419 in ref} | {built[1].rsplit("-", 1)[1]}
    assert {"rhcos4.18", "rhel9"} <= tags, tags  # dev's operator and prod-a's look for these
    # Both reachable clusters patched, verified and checked; prod-b reported and left alone.
    for name in ("dev", "prod-a"):
        assert states[f"{name}.verify_rollout"] == "success", states
        driver = fleet[name].policy_driver()
        assert driver["usePrecompiled"] is True and driver["version"] == DRIVER
        assert driver["repository"] == fleet["dev"].repository
    assert states["prod-b.inspect_cluster"] == "failed"
    assert states["prod-b.plan_rollout"] == states["prod-b.patch_cluster_policy"] == "skipped"
    assert fleet["prod-b"].policy_driver() == before["prod-b"]
    # Wave order: prod-a's plan ran after dev's rollout had verified and its GPU check passed.
    spans = times(dag_run)
    assert spans["prod-a.plan_rollout"][0] >= spans["dev.check_gpu_workload"][1]
    # The unreachable cluster fails the run, after everything else was done, and the report says where.
    assert dag_run.state == "failed"
    assert report.startswith("Fleet run FAILED: 3 clusters in 2 waves"), report
    assert "wave 1: verified (dev verified)" in report
    assert "wave 2: verified (prod-a verified; prod-b skipped)" in report
    assert "  prod-b (wave 2): skipped; Run FAILED at inspect_cluster: " in report
    assert "=== cluster prod-b (wave 2, k8s_b) ===" in report
    assert report.count("built+pushed") == 2, "the images are listed once for the fleet, not per cluster"


def test_a_verify_failure_in_wave_one_restores_that_cluster_and_stops_wave_two(
    fleet: dict[str, World], run: Callable[..., Any]
) -> None:
    dev = fleet["dev"]
    # dev's operator cannot pull its new driver image: its driver pods never become Ready.
    for kernel in (K418, K419):
        dev.cluster.operator.unpullable.add(f"{dev.repository}/driver:{DRIVER}-{kernel}-rhcos4.18")
    before = {name: world.policy_driver() for name, world in fleet.items()}
    dag_run = run(verify_timeout_minutes=0.2)
    states = task_states(dag_run)
    report = xcom(dag_run, "report")
    print(report)
    assert dag_run.state == "failed"
    assert states["dev.verify_rollout"] == "failed"
    assert states["dev.rollback_cluster_policy"] == "success"
    assert dev.policy_driver() == before["dev"], "dev restored exactly"
    for name in ("prod-a", "prod-b"):
        assert states[f"{name}.plan_rollout"] == "upstream_failed", states
        assert states[f"{name}.patch_cluster_policy"] == "upstream_failed"
        assert fleet[name].policy_driver() == before[name], f"{name} never touched"
    assert "wave 1: failed (dev failed)" in report
    assert "  dev (wave 1): failed; Run FAILED at verify_rollout: " in report
    assert "wave 2: stopped (wave 1 failed (dev))" in report
