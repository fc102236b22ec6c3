"""Pods that request an NVIDIA GPU: where they can be scheduled, and what the CUDA samples they run print.

Scheduling, as on a cluster run by NVIDIA's GPU Operator: a node advertises ``nvidia.com/gpu`` only once
NVIDIA's device plugin runs there, and the operator's device-plugin DaemonSet waits in its init container
``toolkit-validation`` for ``/run/nvidia/validations/toolkit-ready`` (gpu-operator
assets/state-device-plugin/0500_daemonset.yaml), which the operator validator writes only after
``driver-ready`` (cmd/nvidia-validator main.go). So here a node has a GPU to give when a driver pod
(``app=nvidia-driver-daemonset``) runs Ready on it. A GPU pod no such node fits stays Pending with the
default scheduler's ``Insufficient nvidia.com/gpu``, and is scheduled as soon as one does (the scheduler
retries). One GPU per node is not counted: pods here are short.

What runs: the container's command, else the image's own. NVIDIA's cuda-sample ``vectoradd-*`` images
run ``vectorAdd`` (cuda-samples Samples/0_Introduction/vectorAdd/vectorAdd.cu): on a working GPU it prints
the lines of ``VECTOR_ADD_OK`` and exits 0; when a CUDA call fails it prints ``Failed to allocate device
vector A (error code <cudaGetErrorString>)!`` and exits 1 (``EXIT_FAILURE``). ``nvidia-smi -L`` lists the
GPU; a node whose GPU is broken makes nvidia-smi print that it cannot talk to the driver (exit 9, its
documented return code for "NVIDIA driver is not loaded"). A broken GPU is declared per node:
``kubelet.gpu_faults[node] = "unknown error"`` (what cudaGetErrorString says, e.g. after an Xid 79 "GPU
has fallen off the bus"). Any other command fails to start as runc reports a missing executable.
"""

from __future__ import annotations

import hashlib
from typing import Any

GPU_RESOURCE = "nvidia.com/gpu"
DRIVER_APP = "nvidia-driver-daemonset"
DRIVER_COMPONENT = "nvidia-driver"

VECTOR_ADD_OK = (
    "[Vector addition of 50000 elements]",
    "Copy input data from the host memory to the CUDA device",
    "CUDA kernel launch with 196 blocks of 256 threads",
    "Copy output data from the CUDA device to the host memory",
    "Test PASSED",
    "Done",
)
NVIDIA_SMI_NO_DRIVER = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the "
    "latest NVIDIA driver is installed and running."
)
NOT_FOUND_EXIT = 127
GPU_NAME = "NVIDIA A100-SXM4-40GB"


def requests_gpu(pod: dict[str, Any]) -> bool:
    """True when a container of the pod requests or limits ``nvidia.com/gpu``."""
    for container in pod["spec"].get("containers") or []:
        resources = container.get("resources") or {}
        if any(GPU_RESOURCE in (resources.get(k) or {}) for k in ("limits", "requests")):
            return True
    return False


def nodes_with_gpus(pods: list[dict[str, Any]]) -> set[str]:
    """Nodes where a driver pod runs Ready (any generation): the device plugin advertises GPUs there.

    A driver pod is the ClusterPolicy's (``app=nvidia-driver-daemonset``) or an NVIDIADriver's (``app`` is
    its DaemonSet's name; both carry ``app.kubernetes.io/component=nvidia-driver``, gpu-operator
    manifests/state-driver/0500_daemonset.yaml)."""
    nodes = set()
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        if labels.get("app") != DRIVER_APP and labels.get("app.kubernetes.io/component") != DRIVER_COMPONENT:
            continue
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        if pod["spec"].get("nodeName") and statuses and statuses[0].get("ready"):
            nodes.add(pod["spec"]["nodeName"])
    return nodes


def insufficient_message(total: int, no_gpu: int) -> str:
    """The default scheduler's message when ``no_gpu`` nodes fit the selector but have no free GPU."""
    other = total - no_gpu
    parts = [f"{no_gpu} Insufficient {GPU_RESOURCE}"] if no_gpu else []
    if other:
        parts.append(f"{other} node(s) didn't match Pod's node affinity/selector")
    preemption = [f"{no_gpu} No preemption victims found for incoming pod"] if no_gpu else []
    if other:
        preemption.append(f"{other} Preemption is not helpful for scheduling")
    return (
        f"0/{total} nodes are available: {', '.join(parts)}. "
        f"preemption: 0/{total} nodes are available: {', '.join(preemption)}."
    )


def run(container: dict[str, Any], node: str, fault: str | None) -> tuple[int, list[str]]:
    """(exit code, log lines) of a GPU container on ``node``; ``fault``: the CUDA error its GPU returns."""
    argv = list(container.get("command") or []) + list(container.get("args") or [])
    if not argv and "vectoradd" in str(container.get("image", "")).lower():
        argv = ["/cuda-samples/vectorAdd"]  # the cuda-sample vectoradd images' own command
    if not argv:
        return NOT_FOUND_EXIT, ['exec: "sh": executable file not found in $PATH']
    program = argv[0].rsplit("/", 1)[-1]
    if program == "vectorAdd":
        if fault:
            return 1, [VECTOR_ADD_OK[0], f"Failed to allocate device vector A (error code {fault})!"]
        return 0, list(VECTOR_ADD_OK)
    if program == "nvidia-smi":
        if fault:
            return 9, [NVIDIA_SMI_NO_DRIVER]
        h = hashlib.sha256(node.encode()).hexdigest()
        uuid = f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
        return 0, [f"GPU 0: {GPU_NAME} (UUID: {uuid})"]
    return NOT_FOUND_EXIT, [f'exec: "{argv[0]}": executable file not found in $PATH']
