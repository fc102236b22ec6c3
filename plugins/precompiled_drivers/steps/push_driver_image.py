"""Step: copy a built image from staging to the target repository with ``skopeo copy``, digest checked.

Separate from the build so a failed push retries without rebuilding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from airflow.sdk.definitions.mappedoperator import OperatorPartial

from precompiled_drivers import validation as v
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import push_secret, step_env, step_kwargs, step_partial, tls_verify

TASK_ID = "push_driver_image"


def partial(settings: Settings) -> OperatorPartial:
    """The push pod shared by every image."""
    return step_partial(
        step_kwargs(
            settings,
            task_id=TASK_ID,
            service_account="push",
            script_name="push_driver_image.sh",
            image=settings.skopeo_image,
            secrets=(push_secret(settings),),
            api_access=True,  # reads the staging image from the internal registry with its token
            retries=4,
            # One failed build must not hold back the images that did build: push every built one
            # (the run still fails, and the coverage gate refuses the patch if the missing image is needed).
            trigger_rule="all_done_min_one_success",
        )
    )


def item_kwargs_for(settings: Settings) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A function turning one build result into this step's kwargs (for ``.map``)."""

    def item_kwargs(built: Mapping[str, Any]) -> dict[str, Any]:
        where = f"build_driver_image result for {built.get('tag')}"
        env = {
            "STAGING_IMAGE": v.image_ref(built.get("staging_image"), f"{where}: staging_image"),
            "IMAGE": v.image_ref(built.get("image"), f"{where}: image"),
            "EXPECTED_DIGEST": v.digest(built.get("digest"), f"{where}: digest"),
            "TLS_VERIFY": tls_verify(settings),
        }
        return {"env_vars": step_env(TASK_ID, (push_secret(settings),), env)}

    return item_kwargs
