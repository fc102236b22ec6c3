"""Step: list GPU nodes with their kernel and OS labels, the GPU Operator and the ClusterPolicy."""

from __future__ import annotations

from typing import Any

from precompiled_drivers import procedure
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import StepPodOperator, pod_task, step_env, step_kwargs

STEP = procedure.step("inspect_cluster")


def pod(settings: Settings) -> dict[str, Any]:
    """The inspect_cluster pod: read-only API access through its own ServiceAccount."""
    return step_kwargs(
        settings,
        task_id=STEP.task_id,
        service_account="inspect-cluster",
        script_name="inspect_cluster.sh",
        image=settings.cli_image,
        api_access=True,
    )


def env(settings: Settings) -> dict[str, str]:
    """The whole pod environment: which policy and operator Deployment to read (settings only)."""
    return step_env(
        STEP.task_id,
        (),
        {
            "POLICY_NAME": settings.policy_name,
            "OPERATOR_NAMESPACE": settings.operator_namespace,
            "OPERATOR_DEPLOYMENT": settings.operator_deployment,
        },
    )


def task(settings: Settings, **task_args: Any) -> StepPodOperator:
    """The task: its environment is known at parse time (installation settings only)."""
    return pod_task(STEP, pod(settings), env(settings), **task_args)
