"""Step: find a release's Driver Toolkit image (``oc adm release info --image-for=driver-toolkit``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from precompiled_drivers import procedure
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import pod_task, pull_secret, step_env, step_kwargs

if TYPE_CHECKING:
    from precompiled_drivers.config import Target

STEP = procedure.step("resolve_driver_toolkit")
PER_ITEM = ("env_vars",)  # what each item gives its pod (left out of the shared partial)


def pod(settings: Settings) -> dict[str, Any]:
    """The pod spec shared by every release; ``item`` adds the release."""
    return step_kwargs(
        settings,
        task_id=STEP.task_id,
        service_account="resolve",
        script_name="resolve_driver_toolkit.sh",
        image=settings.cli_image,
        secrets=(pull_secret(settings),),
    )


def item(settings: Settings, target: Target) -> dict[str, Any]:
    """One release's pod: the release image to ask about."""
    from precompiled_drivers.plan import release_image  # run time (plan_releases), not parse time

    env = {
        "RELEASE_VERSION": target.version,
        "RELEASE_ARCH": target.arch,
        "RELEASE_SOURCE": target.source,
        "RELEASE_IMAGE": release_image(settings.release_image_repository, target),
    }
    return {"env_vars": step_env(STEP.task_id, (pull_secret(settings),), env)}


def task(settings: Settings, items: Any, **task_args: Any) -> Any:
    """The task, one pod per release; ``items`` are ``item``'s results (plan_releases' XCom)."""
    return pod_task(STEP, pod(settings), items, per_item=PER_ITEM, **task_args)
