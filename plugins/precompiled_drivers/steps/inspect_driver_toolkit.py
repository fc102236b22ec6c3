"""Step: read ``/etc/driver-toolkit-release.json`` inside a release's Driver Toolkit image."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from airflow.sdk.definitions.mappedoperator import OperatorPartial
from kubernetes.client import models as k8s

from precompiled_drivers import validation as v
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import step_env, step_kwargs, step_partial

TASK_ID = "inspect_driver_toolkit"


def partial(settings: Settings) -> OperatorPartial:
    """The pod spec shared by every release; the image (the DTK itself) comes per item."""
    return step_partial(
        step_kwargs(
            settings,
            task_id=TASK_ID,
            service_account="inspect-dtk",
            script_name="inspect_driver_toolkit.sh",
            image="",  # left out of the partial: each item gives its release's DTK image
            # The DTK lives in Red Hat's registry: the kubelet pulls it with the OpenShift pull secret.
            image_pull_secrets=[k8s.V1LocalObjectReference(name=settings.pull_secret)],
        ),
        per_item=("image", "env_vars"),
    )


def item_kwargs_for(settings: Settings) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A function turning one resolve_driver_toolkit result into this step's kwargs (for ``.map``)."""
    del settings  # nothing installation-specific beyond the partial

    def item_kwargs(resolved: Mapping[str, Any]) -> dict[str, Any]:
        where = f"resolve_driver_toolkit result for {resolved.get('version')}-{resolved.get('arch')}"
        dtk_image = v.image_ref(resolved.get("dtk_image"), f"{where}: dtk_image")
        env = {
            "RELEASE_VERSION": v.ocp_version(resolved.get("version"), f"{where}: version"),
            "RELEASE_ARCH": v.arch(resolved.get("arch"), f"{where}: arch"),
            "DTK_IMAGE": dtk_image,
        }
        return {"image": dtk_image, "env_vars": step_env(TASK_ID, (), env)}

    return item_kwargs
