"""Step: restore the exact previous driver spec when the patch or its verification failed."""

from __future__ import annotations

import json
from typing import Any

from precompiled_drivers import procedure
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import StepPodOperator, pod_task, step_env, step_kwargs

STEP = procedure.step("rollback_cluster_policy")


def pod(settings: Settings) -> dict[str, Any]:
    """The rollback pod: get/patch on ClusterPolicies; runs only when patch or verify failed."""
    return step_kwargs(
        settings,
        task_id=STEP.task_id,
        service_account="rollback",
        script_name="rollback_cluster_policy.sh",
        image=settings.cli_image,
        api_access=True,
        retries=3,
    )


def env(
    settings: Settings, rollback: list[dict[str, Any]], previous_driver: dict[str, Any]
) -> dict[str, str]:
    """The whole pod environment: the guarded undo patch, and the spec it restores (to detect no-ops)."""
    return step_env(
        STEP.task_id,
        (),
        {
            "POLICY_NAME": settings.policy_name,
            "PATCH_JSON": json.dumps(rollback, separators=(",", ":")),
            "PREVIOUS_DRIVER_JSON": json.dumps(previous_driver, separators=(",", ":")),
        },
    )


def task(settings: Settings, env_vars: Any, **task_args: Any) -> StepPodOperator:
    """The task; ``env_vars`` is ``env``'s result (plan_rollout's ``rollback_env``)."""
    return pod_task(STEP, pod(settings), env_vars, **task_args)
