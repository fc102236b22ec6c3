"""The kubelet stand-in and pods that request an NVIDIA GPU (testcluster/gpuworkload.py)."""

from __future__ import annotations

from typing import Any

from helpers import core_api, wait_for

from testcluster import TestCluster
from testcluster.gpuworkload import NVIDIA_SMI_NO_DRIVER, VECTOR_ADD_OK, insufficient_message

KERNEL = "5.14.0-427.50.1.el9_4.x86_64"
IMAGE = "nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-ubi8"


def gpu_pod(name: str, command: list[str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "gpu-check",
        "image": IMAGE,
        "resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "1"}},
    }
    if command:
        container["command"] = command
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {"feature.node.kubernetes.io/kernel-version.full": KERNEL},
            "containers": [container],
        },
    }


def driver_pod(cluster: TestCluster, node: str, ready: bool = True) -> None:
    """A driver pod as the GPU-operator stand-in leaves it (owned by its DaemonSet: the kubelet skips it)."""
    cluster.store.put(
        "Pod",
        {
            "metadata": {
                "name": f"nvidia-driver-daemonset-{node}",
                "namespace": "nvidia-gpu-operator",
                "labels": {"app": "nvidia-driver-daemonset"},
                "ownerReferences": [{"kind": "DaemonSet", "name": "nvidia-driver-daemonset", "uid": "x"}],
            },
            "spec": {"nodeName": node, "containers": [{"name": "nvidia-driver-ctr", "image": "driver"}]},
            "status": {
                "phase": "Running",
                "containerStatuses": [{"name": "nvidia-driver-ctr", "ready": ready}],
            },
        },
    )


def log_of(cluster: TestCluster, name: str) -> list[str]:
    resp = core_api(cluster).read_namespaced_pod_log(name, "default", _preload_content=False)
    return resp.data.decode().splitlines()


def test_no_ready_driver_no_gpu_pending_until_one_is_ready(test_cluster: TestCluster) -> None:
    test_cluster.store.add_node("gpu-1", KERNEL)
    test_cluster.store.add_node("cpu-1", "6.0.0-1.el9.x86_64", gpu=False)
    driver_pod(test_cluster, "gpu-1", ready=False)
    api = core_api(test_cluster)
    api.create_namespaced_pod("default", gpu_pod("check"))

    def scheduled_condition() -> Any:
        conditions = api.read_namespaced_pod("check", "default").status.conditions or []
        return next((c for c in conditions if c.type == "PodScheduled" and c.status == "False"), None)

    condition = wait_for(scheduled_condition)
    # Three nodes (the kubelet's own, gpu-1, cpu-1): one fits the selector but has no GPU to give.
    assert condition.message == insufficient_message(3, 1)
    assert condition.message.startswith(
        "0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2 node(s) didn't match Pod's node"
    )
    assert api.read_namespaced_pod("check", "default").status.phase == "Pending"

    driver_pod(test_cluster, "gpu-1", ready=True)  # the driver is ready: the device plugin advertises it
    wait_for(lambda: api.read_namespaced_pod("check", "default").status.phase == "Succeeded")
    pod = api.read_namespaced_pod("check", "default")
    assert pod.spec.node_name == "gpu-1"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0
    assert log_of(test_cluster, "check") == list(VECTOR_ADD_OK)


def test_a_broken_gpu_fails_vectoradd_with_the_cuda_error(test_cluster: TestCluster) -> None:
    test_cluster.store.add_node("gpu-1", KERNEL)
    driver_pod(test_cluster, "gpu-1")
    test_cluster.kubelet.gpu_faults["gpu-1"] = "unknown error"
    api = core_api(test_cluster)
    pod = gpu_pod("check")
    pod["spec"]["containers"][0]["terminationMessagePolicy"] = "FallbackToLogsOnError"
    api.create_namespaced_pod("default", pod)
    wait_for(lambda: api.read_namespaced_pod("check", "default").status.phase == "Failed")
    terminated = api.read_namespaced_pod("check", "default").status.container_statuses[0].state.terminated
    assert terminated.exit_code == 1
    assert log_of(test_cluster, "check") == [
        "[Vector addition of 50000 elements]",
        "Failed to allocate device vector A (error code unknown error)!",
    ]
    assert terminated.message.endswith("Failed to allocate device vector A (error code unknown error)!\n")


def test_nvidia_smi_lists_the_gpu_and_fails_without_a_working_one(test_cluster: TestCluster) -> None:
    test_cluster.store.add_node("gpu-1", KERNEL)
    test_cluster.store.add_node("gpu-2", KERNEL)
    driver_pod(test_cluster, "gpu-1")
    api = core_api(test_cluster)
    api.create_namespaced_pod("default", gpu_pod("smi", ["nvidia-smi", "-L"]))
    wait_for(lambda: api.read_namespaced_pod("smi", "default").status.phase == "Succeeded")
    assert api.read_namespaced_pod("smi", "default").spec.node_name == "gpu-1"  # the node with a driver
    [line] = log_of(test_cluster, "smi")
    assert line.startswith("GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-")

    test_cluster.kubelet.gpu_faults["gpu-1"] = "unknown error"
    api.create_namespaced_pod("default", gpu_pod("smi-2", ["nvidia-smi", "-L"]))
    wait_for(lambda: api.read_namespaced_pod("smi-2", "default").status.phase == "Failed")
    terminated = api.read_namespaced_pod("smi-2", "default").status.container_statuses[0].state.terminated
    assert terminated.exit_code == 9
    assert log_of(test_cluster, "smi-2") == [NVIDIA_SMI_NO_DRIVER]
