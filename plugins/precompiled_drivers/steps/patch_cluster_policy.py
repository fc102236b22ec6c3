"""Step: apply the guarded JSON patch that switches the ClusterPolicy to the precompiled images."""

from __future__ import annotations

import json
from typing import Any

from precompiled_drivers import procedure
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import StepPodOperator, pod_task, step_env, step_kwargs

STEP = procedure.step("patch_cluster_policy")


def pod(settings: Settings) -> dict[str, Any]:
    """The patch pod: get/patch on ClusterPolicies and nothing else. A script that ran and failed (a
    refused guard, no rights) is final; the one retry serves a try that never finished (its process was
    killed, its worker lost): it re-attaches to that try's pod, or runs the script again, which
    recognises its patch already applied."""
    return step_kwargs(
        settings,
        task_id=STEP.task_id,
        service_account="patch",
        script_name="patch_cluster_policy.sh",
        image=settings.cli_image,
        api_access=True,
        retries=1,
        retry_only_lost_tries=True,
        skip_without_env=True,  # NVIDIADriver mode: plan_rollout leaves it no input (and so no patch)
    )


def env(settings: Settings, patch: list[dict[str, Any]], dry_run: bool) -> dict[str, str]:
    """The whole pod environment: which policy, the patch document, and whether to only print it."""
    return step_env(
        STEP.task_id,
        (),
        {
            "POLICY_NAME": settings.policy_name,
            "PATCH_JSON": json.dumps(patch, separators=(",", ":")),
            "DRY_RUN": "true" if dry_run else "false",
        },
    )


def task(settings: Settings, env_vars: Any, **task_args: Any) -> StepPodOperator:
    """The task; ``env_vars`` is ``env``'s result (plan_rollout's ``patch_env``)."""
    return pod_task(STEP, pod(settings), env_vars, **task_args)
