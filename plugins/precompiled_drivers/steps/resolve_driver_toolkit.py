"""Step: find a release's Driver Toolkit image (``oc adm release info --image-for=driver-toolkit``)."""

from __future__ import annotations

from typing import Any

from airflow.sdk.definitions.mappedoperator import OperatorPartial

from precompiled_drivers.config import Target
from precompiled_drivers.plan import release_image
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import pull_secret, step_env, step_kwargs, step_partial

TASK_ID = "resolve_driver_toolkit"


def partial(settings: Settings) -> OperatorPartial:
    """The pod spec shared by every release; ``item_kwargs`` adds the release."""
    return step_partial(
        step_kwargs(
            settings,
            task_id=TASK_ID,
            service_account="resolve",
            script_name="resolve_driver_toolkit.sh",
            image=settings.cli_image,
            secrets=(pull_secret(settings),),
        )
    )


def item_kwargs(settings: Settings, target: Target) -> dict[str, Any]:
    """Per-release environment: the release image to ask about."""
    env = {
        "RELEASE_VERSION": target.version,
        "RELEASE_ARCH": target.arch,
        "RELEASE_SOURCE": target.source,
        "RELEASE_IMAGE": release_image(settings.release_image_repository, target),
    }
    return {"env_vars": step_env(TASK_ID, (pull_secret(settings),), env)}
