"""Step: apply the guarded JSON patch that switches the ClusterPolicy to the precompiled images."""

from __future__ import annotations

import json
from typing import Any

from airflow.sdk import XComArg

from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import StepPodOperator, step_env, step_kwargs

TASK_ID = "patch_cluster_policy"


def env(settings: Settings, patch: list[dict[str, Any]], dry_run: bool) -> dict[str, str]:
    """The whole pod environment: which policy, the patch document, and whether to only print it."""
    return step_env(
        TASK_ID,
        (),
        {
            "POLICY_NAME": settings.policy_name,
            "PATCH_JSON": json.dumps(patch, separators=(",", ":")),
            "DRY_RUN": "true" if dry_run else "false",
        },
    )


def operator(settings: Settings, env_vars: XComArg) -> StepPodOperator:
    """The patch pod: get/patch on ClusterPolicies and nothing else. Not retried: a failed guard is final."""
    kwargs = step_kwargs(
        settings,
        task_id=TASK_ID,
        service_account="patch",
        script_name="patch_cluster_policy.sh",
        image=settings.cli_image,
        api_access=True,
        retries=0,
    )
    return StepPodOperator(**{**kwargs, "env_vars": env_vars})
