"""Step: wait until the driver pods of the new generation run the pushed images on every GPU kernel."""

from __future__ import annotations

from airflow.sdk import XComArg

from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import StepPodOperator, step_env, step_kwargs

TASK_ID = "verify_rollout"
PATCHED_AT = "{{ ti.xcom_pull(task_ids='patch_cluster_policy')['patched_at'] }}"


def env(settings: Settings, expected: str, timeout_seconds: int, dry_run: bool) -> dict[str, str]:
    """The whole pod environment but ``PATCHED_AT``, which ``operator`` adds from the patch's result."""
    return step_env(
        TASK_ID,
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


def operator(settings: Settings, env_vars: XComArg, *, deferrable: bool | None = None) -> StepPodOperator:
    """The verify pod: reads ClusterPolicy status and lists driver pods; can run deferrable."""
    kwargs = step_kwargs(
        settings,
        task_id=TASK_ID,
        service_account="verify",
        script_name="verify_rollout.sh",
        image=settings.cli_image,
        api_access=True,
        deferrable=settings.deferrable if deferrable is None else deferrable,
        retries=0,  # the script already waits; a retry would only double the timeout
    )
    return StepPodOperator(**{**kwargs, "env_vars": env_vars}, extra_env={"PATCHED_AT": PATCHED_AT})
