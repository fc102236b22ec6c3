"""Step: restore the exact previous driver spec when the patch or its verification failed."""

from __future__ import annotations

import json
from typing import Any

from airflow.sdk import XComArg

from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import StepPodOperator, step_env, step_kwargs

TASK_ID = "rollback_cluster_policy"


def env(
    settings: Settings, rollback: list[dict[str, Any]], previous_driver: dict[str, Any]
) -> dict[str, str]:
    """The whole pod environment: the guarded undo patch, and the spec it restores (to detect no-ops)."""
    return step_env(
        TASK_ID,
        (),
        {
            "POLICY_NAME": settings.policy_name,
            "PATCH_JSON": json.dumps(rollback, separators=(",", ":")),
            "PREVIOUS_DRIVER_JSON": json.dumps(previous_driver, separators=(",", ":")),
        },
    )


def operator(settings: Settings, env_vars: XComArg, **callbacks: Any) -> StepPodOperator:
    """The rollback pod: get/patch on ClusterPolicies; runs only when patch or verify failed.

    ``callbacks`` (``on_success_callback``...) tell people a rollback happened.
    """
    kwargs = step_kwargs(
        settings,
        task_id=TASK_ID,
        service_account="rollback",
        script_name="rollback_cluster_policy.sh",
        image=settings.cli_image,
        api_access=True,
        retries=3,
    )
    return StepPodOperator(**{**kwargs, "env_vars": env_vars, **callbacks})
