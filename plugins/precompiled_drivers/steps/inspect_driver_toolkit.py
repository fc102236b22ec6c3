"""Step: read ``/etc/driver-toolkit-release.json`` inside a release's Driver Toolkit image(s).

The DTK of a single-arch release payload is a single-arch image, so the pod must land on a node of
the release's architecture (``kubernetes.io/arch``); elsewhere its first exec fails with ``exec format
error``. A payload that also carries ``driver-toolkit-10`` (RHEL 10 CoreOS stream) gets an init
container running that image, which copies its release file into the pod's scratch volume: one pod per
release reads both toolkits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes.client import models as k8s

from precompiled_drivers import grammar, procedure
from precompiled_drivers import validation as v
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import (
    MODEL_CONFIG,
    SCRATCH_MOUNT,
    SCRATCH_VOLUME,
    pod_task,
    resources,
    restricted_security,
    step_env,
    step_kwargs,
)

STEP = procedure.step("inspect_driver_toolkit")
ARCH_LABEL = "kubernetes.io/arch"
RELEASE_FILE = "/etc/driver-toolkit-release.json"
# Where the init container leaves driver-toolkit-10's release file (the scratch emptyDir).
TOOLKIT_10_MOUNT = "/toolkits"
TOOLKIT_10_NAME = "driver-toolkit-10-release.json"
PER_ITEM = ("image", "env_vars", "node_selector", "init_containers")


def arch_node_selector(arch: str) -> dict[str, str]:
    """``nodeSelector`` pinning a pod to nodes of a pipeline arch (``x86_64``, ``aarch64``, ``aarch64+64k``).

    A 64k-page build runs on any arm64 node: the DTK holds kernel-64k-devel, the page size of the
    builder's own kernel does not matter.
    """
    from precompiled_drivers import naming  # run time (item makers), not parse time

    # The node's kubernetes.io/arch is Go's GOARCH name (grammar.GO_ARCH owns the aliases).
    return {ARCH_LABEL: grammar.GO_ARCH[naming.machine_arch(arch)]}


def pod(settings: Settings) -> dict[str, Any]:
    """The pod spec shared by every release; the image (the DTK itself) comes per item."""
    return step_kwargs(
        settings,
        task_id=STEP.task_id,
        service_account="inspect-dtk",
        script_name="inspect_driver_toolkit.sh",
        image="",  # left out of the partial: each item gives its release's DTK image
        # The DTK lives in Red Hat's registry: the kubelet pulls it with the OpenShift pull secret.
        image_pull_secrets=[
            k8s.V1LocalObjectReference(name=settings.pull_secret, local_vars_configuration=MODEL_CONFIG)
        ],
    )


def toolkit_10_container(image: str) -> k8s.V1Container:
    """Init container: ``cp`` driver-toolkit-10's release file to the scratch volume (no shell, no values)."""
    return k8s.V1Container(
        name="driver-toolkit-10",
        image=image,
        command=["cp", RELEASE_FILE, f"{TOOLKIT_10_MOUNT}/{TOOLKIT_10_NAME}"],
        volume_mounts=[k8s.V1VolumeMount(name=SCRATCH_VOLUME.name, mount_path=TOOLKIT_10_MOUNT)],
        security_context=restricted_security(),
        resources=resources("10m", "16Mi", "100m", "64Mi"),
    )


def item(settings: Settings, resolved: Mapping[str, Any]) -> dict[str, Any]:
    """One release's pod, from one resolve_driver_toolkit result (checked: it comes from a pod)."""
    del settings  # nothing installation-specific beyond ``pod``
    where = f"resolve_driver_toolkit result for {resolved.get('version')}-{resolved.get('arch')}"
    dtk_image = v.image_ref(resolved.get("dtk_image"), f"{where}: dtk_image")
    arch = v.arch(resolved.get("arch"), f"{where}: arch")
    env = {
        "RELEASE_VERSION": v.ocp_version(resolved.get("version"), f"{where}: version"),
        "RELEASE_ARCH": arch,
        "DTK_IMAGE": dtk_image,
    }
    init_containers = []
    if resolved.get("dtk_image_10"):
        dtk_image_10 = v.image_ref(resolved.get("dtk_image_10"), f"{where}: dtk_image_10")
        env["DTK_IMAGE_10"] = dtk_image_10
        env["DTK_RELEASE_FILE_10"] = f"{SCRATCH_MOUNT.mount_path}/{TOOLKIT_10_NAME}"
        init_containers.append(toolkit_10_container(dtk_image_10))
    return {
        "image": dtk_image,
        "env_vars": step_env(STEP.task_id, (), env),
        "node_selector": arch_node_selector(arch),
        "init_containers": init_containers,
    }


def task(settings: Settings, resolved: Any, **task_args: Any) -> Any:
    """The task, one pod per release; ``resolved`` is resolve_driver_toolkit's output (each -> ``item``)."""

    def inspect_item(result: Mapping[str, Any]) -> dict[str, Any]:
        return item(settings, result)

    return pod_task(STEP, pod(settings), resolved.map(inspect_item), per_item=PER_ITEM, **task_args)
