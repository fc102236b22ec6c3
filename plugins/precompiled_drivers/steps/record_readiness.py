"""Step: record the upgrade readiness (``readiness``) as a ConfigMap in the pipeline namespace."""

from __future__ import annotations

import json
from typing import Any

from precompiled_drivers import procedure
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import StepPodOperator, pod_task, step_env, step_kwargs

STEP = procedure.step("record_readiness")


def pod(settings: Settings) -> dict[str, Any]:
    """The ConfigMap pod: get/update of that one ConfigMap, create in the pipeline namespace."""
    return step_kwargs(
        settings,
        task_id=STEP.task_id,
        service_account="record-readiness",
        script_name="record_readiness.sh",
        image=settings.cli_image,
        api_access=True,
        retries=3,
        # After plan_rollout whatever its outcome (readiness matters most when the gate refuses), not in a
        # run that skipped it (nothing new); when plan_rollout never ran there is nothing to record.
        trigger_rule="none_skipped",
        skip_without_env=True,
    )


def env(settings: Settings, manifest: dict[str, Any]) -> dict[str, str]:
    """The whole pod environment: the ConfigMap to write (``readiness.configmap``), and where."""
    from precompiled_drivers.readiness import CONFIGMAP_NAME  # run time (plan_rollout), not parse time

    return step_env(
        STEP.task_id,
        (),
        {
            "CONFIGMAP_NAME": CONFIGMAP_NAME,
            "NAMESPACE": settings.namespace,
            "CONFIGMAP_JSON": json.dumps(manifest, separators=(",", ":")),
        },
    )


def task(settings: Settings, env_vars: Any, **task_args: Any) -> StepPodOperator:
    """The task; ``env_vars`` is ``env``'s result (plan_rollout's ``readiness_env``, None if it never ran)."""
    return pod_task(STEP, pod(settings), env_vars, **task_args)
