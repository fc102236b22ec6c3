"""Step: list GPU nodes with their kernel and OS labels, the GPU Operator and the ClusterPolicy."""

from __future__ import annotations

from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import StepPodOperator, step_kwargs

TASK_ID = "inspect_cluster"


def operator(settings: Settings) -> StepPodOperator:
    """The inspect_cluster pod: read-only API access through its own ServiceAccount."""
    return StepPodOperator(
        **step_kwargs(
            settings,
            task_id=TASK_ID,
            service_account="inspect-cluster",
            script_name="inspect_cluster.sh",
            image=settings.cli_image,
            api_access=True,
            env={
                "POLICY_NAME": settings.policy_name,
                "OPERATOR_NAMESPACE": settings.operator_namespace,
                "OPERATOR_DEPLOYMENT": settings.operator_deployment,
            },
        )
    )
