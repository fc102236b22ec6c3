"""The GPU workload check after verification, on the real DAG (#15 point 1).

The demo fleet: kernel 5.14.0-427.50.1 on gpu-worker-0 and -1, kernel 5.14.0-570.12.1 on gpu-worker-2.
The check's script runs for real (kubectl against the test server); its check pods are run by the
kubelet stand-in, which gives GPUs only where a driver pod runs Ready and plays NVIDIA's vectorAdd
(testcluster/gpuworkload.py). ``kubelet.gpu_faults`` breaks the GPU of one node.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from harness.dag_runner import task_states, xcom
from harness.pipeline_world import NAMESPACE, World

pytestmark = pytest.mark.e2e

ONE_DRIVER = ["570.158.01"]
KERNEL_A, KERNEL_B = "5.14.0-427.50.1.el9_4.x86_64", "5.14.0-570.12.1.el9_6.x86_64"  # as nodes report them
VECTOR_ADD_ERROR = "Failed to allocate device vector A (error code unknown error)!"


@pytest.fixture(autouse=True)
def short_check(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A check that cannot hang the test (the installation default allows ten minutes of image pulls)."""
    monkeypatch.setenv("PRECOMPILED_DRIVERS_GPU_CHECK_TIMEOUT_SECONDS", "60")


def policy_spec(world: World) -> str:
    policy = world.cluster.store.get_object("ClusterPolicy", "gpu-cluster-policy") or {}
    return json.dumps(policy.get("spec"), sort_keys=True)


def check_pods(world: World) -> list[dict[str, Any]]:
    return [
        p
        for p in world.cluster.store.list_objects("Pod", NAMESPACE)
        if "precompiled-drivers/gpu-check-kernel" in (p["metadata"].get("labels") or {})
    ]


def test_the_check_passes_on_every_kernel_and_the_patch_stands(
    world: World, run_dag: Callable[..., Any]
) -> None:
    dag_run = run_dag(driver_versions=ONE_DRIVER)
    states = task_states(dag_run)
    assert dag_run.state == "success", states
    assert states["verify_rollout"] == states["check_gpu_workload"] == "success", states
    assert states["rollback_cluster_policy"] == "skipped"
    assert world.policy_driver()["usePrecompiled"] is True

    result = xcom(dag_run, "check_gpu_workload")
    assert result["checked"] is True
    assert set(result["kernels"]) == {KERNEL_A, KERNEL_B}
    assert result["kernels"][KERNEL_A]["node"] in ("gpu-worker-0", "gpu-worker-1")
    assert result["kernels"][KERNEL_B]["node"] == "gpu-worker-2"
    assert {k["status"] for k in result["kernels"].values()} == {"ok"}
    assert {k["output"] for k in result["kernels"].values()} == {"Test PASSED"}
    assert check_pods(world) == [], "the check pods that passed are deleted"

    report = xcom(dag_run, "report")
    section = report.split("GPU workload check (nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-ubi8):\n")
    assert len(section) == 2, report
    rows = section[1].split("\n\n")[0].splitlines()[2:]
    node_a = result["kernels"][KERNEL_A]["node"]
    assert [row.split() for row in rows] == [
        [KERNEL_A, node_a, "ok", "Test", "PASSED"],
        [KERNEL_B, "gpu-worker-2", "ok", "Test", "PASSED"],
    ], report


def test_a_broken_gpu_on_one_node_rolls_back_exactly(world: World, run_dag: Callable[..., Any]) -> None:
    world.cluster.kubelet.gpu_faults["gpu-worker-2"] = "unknown error"
    before = policy_spec(world)

    dag_run = run_dag(driver_versions=ONE_DRIVER)
    states = task_states(dag_run)
    assert dag_run.state == "failed", states
    assert states["patch_cluster_policy"] == states["verify_rollout"] == "success", states
    assert states["check_gpu_workload"] == "failed"
    assert states["needs_rollback"] == states["rollback_cluster_policy"] == "success", states
    assert xcom(dag_run, "rollback_cluster_policy")["rolled_back"] is True
    assert policy_spec(world) == before, "the ClusterPolicy's spec is exactly the one before the run"

    report = xcom(dag_run, "report")
    first = report.splitlines()[0]
    assert first.startswith(
        f"Run FAILED at check_gpu_workload: ERROR: GPU workload check failed on kernel {KERNEL_B} "
        "(node gpu-worker-2, pod gpu-check-"
    ), first
    assert first.endswith(f"): failed: {VECTOR_ADD_ERROR}"), first
    assert KERNEL_A not in first, "the kernel that passed is not named"
    assert "ROLLED BACK: the previous spec.driver was restored." in report
    # The report's table: which node ran each kernel's check, and what it printed (the step's result is
    # pushed before the pod's failure fails the task).
    rows = report.split("GPU workload check (")[1].split("\n\n")[0].splitlines()[3:]
    assert [row.rstrip().split(None, 3) for row in rows] == [
        [KERNEL_A, xcom(dag_run, "check_gpu_workload")["kernels"][KERNEL_A]["node"], "ok", "Test PASSED"],
        [KERNEL_B, "gpu-worker-2", "failed", VECTOR_ADD_ERROR],
    ], report
    # The failed check pod is kept for its logs, the other one is gone; nothing is left running.
    [kept] = check_pods(world)
    assert kept["spec"]["nodeName"] == "gpu-worker-2"
    assert kept["status"]["phase"] == "Failed"


def test_switched_off_per_installation(
    world: World, run_dag: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRECOMPILED_DRIVERS_GPU_CHECK", "false")
    world.cluster.kubelet.gpu_faults["gpu-worker-2"] = "unknown error"  # would fail, were it run

    dag_run = run_dag(driver_versions=ONE_DRIVER)
    states = task_states(dag_run)
    assert dag_run.state == "success", states
    assert states["check_gpu_workload"] == "skipped"
    assert states["rollback_cluster_policy"] == "skipped"
    assert world.policy_driver()["usePrecompiled"] is True
    assert check_pods(world) == []
    report = xcom(dag_run, "report")
    assert "GPU workload check: not run (turned off by PRECOMPILED_DRIVERS_GPU_CHECK" in report
