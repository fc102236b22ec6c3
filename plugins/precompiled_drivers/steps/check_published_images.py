"""Step: ask the target registry which planned image tags already exist (``skopeo inspect``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from airflow.sdk import XComArg

from precompiled_drivers import kernel_module
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import StepPodOperator, push_secret, step_env, step_kwargs, tls_verify

TASK_ID = "check_published_images"


def env(
    settings: Settings, images: Sequence[str], module_types: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The whole pod environment: the images to look up, one per line, and the registry credentials.

    An image with a kernel module type in ``module_types`` counts as published only when its label says
    that type (a tag built with the other type is rebuilt).
    """
    types = module_types or {}
    lines = "\n".join(f"{image} {types[image]}" if image in types else image for image in images)
    images_env = {
        "IMAGES": lines,
        "MODULE_TYPE_LABEL": kernel_module.LABEL,
        "TLS_VERIFY": tls_verify(settings),
    }
    return step_env(TASK_ID, (push_secret(settings),), images_env)


def operator(settings: Settings, env_vars: XComArg) -> StepPodOperator:
    """The check pod: registry credentials only, no Kubernetes API access."""
    kwargs = step_kwargs(
        settings,
        task_id=TASK_ID,
        service_account="check-images",
        script_name="check_published_images.sh",
        image=settings.skopeo_image,
        secrets=(push_secret(settings),),
    )
    return StepPodOperator(**{**kwargs, "env_vars": env_vars})
