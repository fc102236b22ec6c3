"""Step: after verification, run a CUDA workload on one GPU of every kernel (one check pod per kernel).

Driver pods Ready on the right digest do not yet prove that a GPU computes. NVIDIA's operator validator
proves it by running its vectorAdd sample in a pod that requests one GPU (gpu-operator
validator/manifests/plugin-workload-validation.yaml, created by cmd/nvidia-validator main.go
``runWorkload``); this step does the same per kernel, after the patch: the step's pod (``kubectl``,
like verify_rollout) creates one check pod per kernel, built here (``check_pod``), waits for them and
reports which node ran each and its output line. A failed or timed-out check fails the step, and
``needs_rollback`` then restores the previous driver spec exactly as after a failed verification.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from precompiled_drivers import procedure
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import StepPodOperator, pod_task, step_env, step_kwargs

STEP = procedure.step("check_gpu_workload")

KERNEL_LABEL = "feature.node.kubernetes.io/kernel-version.full"  # NFD, what the driver DaemonSets select
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"  # GPU nodes only: a CPU node may run the same kernel
GPU_RESOURCE = "nvidia.com/gpu"  # advertised by NVIDIA's device plugin once the node's driver is ready
CONTAINER = "gpu-check"
POD_PREFIX = "gpu-check-"
PART_OF = {"app.kubernetes.io/part-of": "nvidia-precompiled-drivers"}
STEP_LABEL = "precompiled-drivers/step"
# Only the check pods carry it (the step's own pod has the same step label): `-l <it>` lists them.
KERNEL_POD_LABEL = "precompiled-drivers/gpu-check-kernel"

# The taint GPU nodes commonly carry, tolerated as NVIDIA's validator pods do (gpu-operator
# validator/manifests/*-workload-validation.yaml and assets/state-operator-validation/0500_daemonset.yaml).
TOLERATIONS = ({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},)


def pod(settings: Settings) -> dict[str, Any]:
    """The step's pod: creates the check pods in the pipeline namespace, waits, reads their logs.

    Skips (no pod) when plan_rollout left it no input: the check is off, the run is a dry run, or the
    plan never ran.
    """
    return step_kwargs(
        settings,
        task_id=STEP.task_id,
        service_account="gpu-check",
        script_name="check_gpu_workload.sh",
        image=settings.cli_image,
        api_access=True,
        deferrable=settings.deferrable,
        retries=0,  # a retry would start every check again and double the timeout; the script waits
        skip_without_env=True,
    )


def check_pod(settings: Settings, kernel: str, selector: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The check pod for one kernel (its NFD ``kernel-version.full`` label value), as kubectl creates it.

    ``selector``: more node labels the pod must land on (NVIDIADriver mode: the pool's nodeSelector).

    One GPU, the GPU taint tolerated, restricted like every step (OpenShift's restricted-v2 SCC assigns
    the user). No token: it calls no API. ``activeDeadlineSeconds``: even if the step's pod is lost, the
    check pod ends by itself and frees its GPU.
    """
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": settings.gpu_check_image,
        "imagePullPolicy": "IfNotPresent",
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi", GPU_RESOURCE: "1"},
            "limits": {"cpu": "1", "memory": "512Mi", GPU_RESOURCE: "1"},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    words = settings.gpu_check_words()
    if words:
        container["command"] = words  # no shell: the words are the argv
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": POD_PREFIX,
            "namespace": settings.namespace,
            "labels": {**PART_OF, STEP_LABEL: STEP.task_id, KERNEL_POD_LABEL: kernel},
        },
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": settings.gpu_check_timeout_seconds,
            "serviceAccountName": "default",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "nodeSelector": {**(selector or {}), KERNEL_LABEL: kernel, GPU_PRESENT_LABEL: "true"},
            "tolerations": [dict(t) for t in TOLERATIONS],
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container],
        },
    }


def checks(settings: Settings, kernels: Sequence[str]) -> str:
    """The script's CHECKS: ``<kernel> <check pod JSON>`` per kernel (compact JSON: one line).

    The kernel as the GPU nodes report it: how verify_rollout and the report name a kernel.
    """
    return "\n".join(
        f"{k} {json.dumps(check_pod(settings, k), separators=(',', ':'))}" for k in sorted(set(kernels))
    )


def env(settings: Settings, kernels: Sequence[str], dry_run: bool) -> dict[str, str] | None:
    """The whole pod environment; None (the step skips) when the check is off, on a dry run, or no kernel."""
    if settings.gpu_check is not True or dry_run or not kernels:
        return None
    return step_env(
        STEP.task_id,
        (),
        {
            "NAMESPACE": settings.namespace,
            "CHECKS": checks(settings, kernels),
            "CHECK_IMAGE": settings.gpu_check_image,
            "TIMEOUT_SECONDS": str(settings.gpu_check_timeout_seconds),
            "POLL_SECONDS": str(max(settings.poll_seconds, 1)),
        },
    )


def task(settings: Settings, env_vars: Any, **task_args: Any) -> StepPodOperator:
    """The task; ``env_vars`` is ``env``'s result (plan_rollout's ``gpu_check_env``)."""
    return pod_task(STEP, pod(settings), env_vars, **task_args)
