"""Step: ask the target registry which planned image tags already exist (``skopeo inspect``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from precompiled_drivers import procedure
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import (
    StepPodOperator,
    pod_task,
    push_secret,
    step_env,
    step_kwargs,
    tls_verify,
)

STEP = procedure.step("check_published_images")


def pod(settings: Settings) -> dict[str, Any]:
    """The check pod: registry credentials only, no Kubernetes API access."""
    return step_kwargs(
        settings,
        task_id=STEP.task_id,
        service_account="check-images",
        script_name="check_published_images.sh",
        image=settings.skopeo_image,
        secrets=(push_secret(settings),),
    )


def env(
    settings: Settings, images: Sequence[str], module_types: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The whole pod environment: the images to look up, one per line, and the registry credentials.

    An image with a kernel module type in ``module_types`` counts as published only when its label says
    that type (a tag built with the other type is rebuilt).
    """
    from precompiled_drivers import kernel_module  # run time (plan_builds), not parse time

    types = module_types or {}
    lines = "\n".join(f"{image} {types[image]}" if image in types else image for image in images)
    images_env = {
        "IMAGES": lines,
        "MODULE_TYPE_LABEL": kernel_module.LABEL,
        "TLS_VERIFY": tls_verify(settings),
    }
    return step_env(STEP.task_id, (push_secret(settings),), images_env)


def task(settings: Settings, env_vars: Any, **task_args: Any) -> StepPodOperator:
    """The task; ``env_vars`` is ``env``'s result (plan_builds' ``check_env``)."""
    return pod_task(STEP, pod(settings), env_vars, **task_args)
