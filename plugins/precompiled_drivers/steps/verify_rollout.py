"""Step: wait until the driver pods of the new generation run the pushed images on every GPU kernel."""

from __future__ import annotations

from typing import Any

from precompiled_drivers import procedure
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import StepPodOperator, pod_task, step_env, step_kwargs

STEP = procedure.step("verify_rollout")
# The patch of the same cluster: a fleet's cluster has its steps in a group (``prod-a.verify_rollout``).
PATCHED_AT = (
    "{{ ti.xcom_pull(task_ids=ti.task_id | replace('verify_rollout', 'patch_cluster_policy'))"
    "['patched_at'] }}"
)


def pod(settings: Settings) -> dict[str, Any]:
    """The verify pod: reads ClusterPolicy status and lists driver pods; can run deferrable.

    ``PATCHED_AT`` comes from the patch's result at run time (``extra_env``, templated).
    """
    return step_kwargs(
        settings,
        task_id=STEP.task_id,
        service_account="verify",
        script_name="verify_rollout.sh",
        image=settings.cli_image,
        api_access=True,
        deferrable=settings.deferrable,
        retries=0,  # the script already waits; a retry would only double the timeout
        extra_env={"PATCHED_AT": PATCHED_AT},
    )


def env(settings: Settings, expected: str, timeout_seconds: int, dry_run: bool) -> dict[str, str]:
    """The whole pod environment but ``PATCHED_AT``, which ``pod`` adds from the patch's result."""
    return step_env(
        STEP.task_id,
        (),
        {
            "POLICY_NAME": settings.policy_name,
            "OPERATOR_NAMESPACE": settings.operator_namespace,
            "EXPECTED": expected,
            "TIMEOUT_SECONDS": str(timeout_seconds),
            "POLL_SECONDS": str(max(settings.poll_seconds, 1)),
            "DRY_RUN": "true" if dry_run else "false",
        },
    )


def task(settings: Settings, env_vars: Any, **task_args: Any) -> StepPodOperator:
    """The task; ``env_vars`` is ``env``'s result (plan_rollout's ``verify_env``)."""
    return pod_task(STEP, pod(settings), env_vars, **task_args)
