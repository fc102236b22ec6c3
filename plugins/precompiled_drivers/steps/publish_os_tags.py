"""Step: publish each driver image under the other OS tags the GPU Operator may use (``skopeo copy``).

The operator takes one OS tag for the whole cluster from whichever GPU node it lists first (see ``os_tag``);
a registry-side copy by digest puts every image under each tag, without a rebuild.
"""

from __future__ import annotations

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

STEP = procedure.step("publish_os_tags")


def pod(settings: Settings) -> dict[str, Any]:
    """The copy pod: registry credentials only, no Kubernetes API access; retried on registry errors."""
    return step_kwargs(
        settings,
        task_id=STEP.task_id,
        service_account="publish-tags",
        script_name="publish_os_tags.sh",
        image=settings.skopeo_image,
        secrets=(push_secret(settings),),
        retries=4,
    )


def env(settings: Settings, aliases: str) -> dict[str, str]:
    """The whole pod environment: ``<image> <alias>`` lines (``plan.alias_lines``) and the credentials."""
    return step_env(
        STEP.task_id, (push_secret(settings),), {"ALIASES": aliases, "TLS_VERIFY": tls_verify(settings)}
    )


def task(settings: Settings, env_vars: Any, **task_args: Any) -> StepPodOperator:
    """The task; ``env_vars`` is ``env``'s result (plan_builds' ``alias_env``)."""
    return pod_task(STEP, pod(settings), env_vars, **task_args)
