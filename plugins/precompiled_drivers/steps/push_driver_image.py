"""Step: copy a built image from staging to the target repository with ``skopeo copy``, digest checked.

Separate from the build so a failed push retries without rebuilding. With ``sign_images`` it also signs
the image (sigstore, key from the image signing Secret, see ``signing.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from precompiled_drivers import procedure
from precompiled_drivers import validation as v
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import (
    SecretFile,
    image_signing_secret,
    pod_task,
    push_secret,
    step_env,
    step_kwargs,
    tls_verify,
)

STEP = procedure.step("push_driver_image")
PER_ITEM = ("env_vars",)  # what each item gives its pod (left out of the shared partial)


def secrets(settings: Settings) -> tuple[SecretFile, ...]:
    """The push credentials, and the image signing key when images are signed."""
    if settings.sign_images:
        return (push_secret(settings), image_signing_secret(settings))
    return (push_secret(settings),)


def pod(settings: Settings) -> dict[str, Any]:
    """The push pod shared by every image."""
    return step_kwargs(
        settings,
        task_id=STEP.task_id,
        service_account="push",
        script_name="push_driver_image.sh",
        image=settings.skopeo_image,
        secrets=secrets(settings),
        api_access=True,  # reads the staging image from the internal registry with its token
        retries=4,
        # One failed build must not hold back the images that did build: push every built one
        # (the run still fails, and the coverage gate refuses the patch if the missing image is needed).
        trigger_rule="all_done_min_one_success",
    )


def item(settings: Settings, built: Mapping[str, Any]) -> dict[str, Any]:
    """One image's pod, from one build_driver_image result (checked: it comes from a pod)."""
    where = f"build_driver_image result for {built.get('tag')}"
    env = {
        "STAGING_IMAGE": v.image_ref(built.get("staging_image"), f"{where}: staging_image"),
        "IMAGE": v.image_ref(built.get("image"), f"{where}: image"),
        "EXPECTED_DIGEST": v.digest(built.get("digest"), f"{where}: digest"),
        "TLS_VERIFY": tls_verify(settings),
    }
    return {"env_vars": step_env(STEP.task_id, secrets(settings), env)}


def task(settings: Settings, built: Any, **task_args: Any) -> Any:
    """The task, one pod per image; ``built`` is build_driver_image's output (each result -> ``item``)."""

    def push_item(result: Mapping[str, Any]) -> dict[str, Any]:
        return item(settings, result)

    return pod_task(STEP, pod(settings), built.map(push_item), per_item=PER_ITEM, **task_args)
