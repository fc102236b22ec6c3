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


class PatchPodOperator(StepPodOperator):
    """The patch pod's operator: a script that ran and failed is final, a lost try is retried.

    The script's refusal (the guard caught a concurrent change, no rights...) would only repeat, so it
    fails the task without a retry. The one retry serves a try that never finished: its process was
    killed or its worker lost. That retry re-attaches to the pod of the lost try if it still exists
    (KPO's reattach_on_restart), else runs the script again, which recognises its patch already applied.
    """

    def execute(self, context: Any) -> Any:
        """Run the pod; a failure after the script ended is final (``AirflowFailException``)."""
        try:
            return super().execute(context)
        except Exception as exc:
            if not self._script_ended():
                raise
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"{exc} (the patch step ran and failed: not retried)") from exc

    def _script_ended(self) -> bool:
        """True when the base container of the pod this try watched has terminated."""
        for pod in self._known_pods():
            for status in getattr(getattr(pod, "status", None), "container_statuses", None) or []:
                if status.name == self.base_container_name and status.state and status.state.terminated:
                    return True
        return False


def operator(settings: Settings, env_vars: XComArg) -> StepPodOperator:
    """The patch pod: get/patch on ClusterPolicies and nothing else. Retried only when a try was lost."""
    kwargs = step_kwargs(
        settings,
        task_id=TASK_ID,
        service_account="patch",
        script_name="patch_cluster_policy.sh",
        image=settings.cli_image,
        api_access=True,
        retries=1,
    )
    return PatchPodOperator(**{**kwargs, "env_vars": env_vars})
