"""The real DAG on a cluster whose drivers come from NVIDIADriver resources (issue #14).

What is built so far: the run detects the mode from the cluster (GPUCluster / useNvidiaDriverCRD), plans
every NVIDIADriver's pools as the operator stand-in runs them, publishes the images, and patches nothing.
The per-CR rollout (guarded patch, replacement, canary stages) is not built yet: see the issue.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.dag_runner import task_states, xcom
from testcluster.resources import by_kind

pytestmark = pytest.mark.e2e
OPERATOR_NS = "nvidia-gpu-operator"
POOL = "example.com/gpu-pool"


def into_pools(world: Any) -> None:
    """gpu-worker-0/1 (RHCOS 4.18) in pool "a", gpu-worker-2 (RHEL 9.6) in pool "b"."""
    store = world.cluster.store
    for node in store.list_objects("Node"):
        name = node["metadata"]["name"]
        if name.startswith("gpu-worker-"):
            node["metadata"]["labels"][POOL] = "b" if name == "gpu-worker-2" else "a"
            store.put("Node", node)


def nvidia_driver(name: str, pool: str, repository: str) -> dict[str, Any]:
    """A pool CR shaped like NVIDIA's sample (gpu-driver-container rhel9-precompiled-nvidiadriver.json)."""
    return {
        "metadata": {"name": name},
        "spec": {
            "driverType": "gpu",
            "usePrecompiled": True,
            "repository": repository,
            "image": "driver",
            "version": "550.90.07",
            "imagePullPolicy": "Always",
            "nodeSelector": {POOL: pool},
            "manager": {},
        },
    }


def test_gpucluster_is_detected_planned_per_pool_and_nothing_is_patched(world, run_dag) -> None:
    store = world.cluster.store
    store.delete(by_kind("ClusterPolicy"), None, "gpu-cluster-policy")  # the DRA stack has none
    store.put("GPUCluster", {"metadata": {"name": "gpu-cluster"}, "spec": {}})
    into_pools(world)
    for name, pool in (("pool-a", "a"), ("pool-b", "b")):
        store.create(by_kind("NVIDIADriver"), None, nvidia_driver(name, pool, world.repository))
    world.cluster.operator.reconcile_now()
    daemonsets = {
        d["metadata"]["name"]
        for d in store.list_objects("DaemonSet", OPERATOR_NS)
        if d["metadata"].get("ownerReferences", [{}])[0].get("kind") == "NVIDIADriver"
    }
    assert len(daemonsets) == 2, daemonsets  # one per pool (each pool runs one kernel)
    specs = {d["metadata"]["name"]: d["spec"] for d in store.list_objects("NVIDIADriver")}

    dag_run = run_dag(driver_versions=["570.158.01"])
    states = task_states(dag_run)
    assert dag_run.state == "failed"
    assert states["plan_rollout"] == "failed"
    assert states["push_driver_image[0]"] == "success"  # the images are still built and published
    assert states["patch_cluster_policy"] == "upstream_failed"
    report = xcom(dag_run, "report")
    assert "NVIDIADriver mode (GPUCluster gpu-cluster" in report, report
    # The plan names the DaemonSets the operator runs, and each pool's own OS tag.
    for name in daemonsets:
        assert f"DaemonSet {name} pulls" in report
    assert "NVIDIADriver pool-a (precompiled), pool rhcos4.18" in report
    assert "NVIDIADriver pool-b (precompiled), pool rhel9" in report
    assert (
        f"this run's driver: {world.repository}/driver:570.158.01-5.14.0-570.12.1.el9_6.x86_64-rhel9"
        in report
    )
    # The staged rollout to do by hand: the smallest pool (b, one node) is the canary.
    assert "by hand, canary: patch NVIDIADriver pool-b (version 550.90.07 -> 570.158.01" in report
    assert "by hand, stage 2: patch NVIDIADriver pool-a (version 550.90.07 -> 570.158.01" in report
    assert {d["metadata"]["name"]: d["spec"] for d in store.list_objects("NVIDIADriver")} == specs


def test_demo_scenario_nvidiadriver(tmp_path) -> None:
    """``make demo SCENARIO=nvidiadriver`` as a user runs it: the plan per pool and the staged rollout."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": f"{root / 'tests'}:{root / 'plugins'}",
        "DEMO_HOME": str(tmp_path / "d"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "harness.demo", "--scenario", "nvidiadriver"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-4000:]
    report = out.split("=== Report (from the report task) ===", 1)[1]
    assert "NVIDIADriver mode (spec.driver.useNvidiaDriverCRD is true in the ClusterPolicy)" in report
    assert (
        "NVIDIADriver gpu-driver-rhel (precompiled), pool rhel9 kernel 5.14.0-570.12.1.el9_6.x86_64" in report
    )
    assert "by hand, canary: patch NVIDIADriver gpu-driver-rhel" in report  # one node: the smallest pool
    assert "by hand, stage 2: patch NVIDIADriver gpu-driver-rhcos" in report
    assert "images published, the staged rollout is listed above (not applied yet)" in out
