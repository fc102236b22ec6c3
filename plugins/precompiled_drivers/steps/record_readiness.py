"""Step: record the upgrade readiness (``readiness``) as a ConfigMap in the pipeline namespace."""

from __future__ import annotations

import json
from typing import Any

from airflow.sdk import XComArg

from precompiled_drivers.readiness import CONFIGMAP_NAME
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import StepPodOperator, step_env, step_kwargs

TASK_ID = "record_readiness"


def env(settings: Settings, manifest: dict[str, Any]) -> dict[str, str]:
    """The whole pod environment: the ConfigMap to write (``readiness.configmap``), and where."""
    return step_env(
        TASK_ID,
        (),
        {
            "CONFIGMAP_NAME": CONFIGMAP_NAME,
            "NAMESPACE": settings.namespace,
            "CONFIGMAP_JSON": json.dumps(manifest, separators=(",", ":")),
        },
    )


class ReadinessPodOperator(StepPodOperator):
    """Runs also when plan_rollout refused the rollout (readiness is computed first, and matters most
    then); when planning never got that far there is nothing to record, and no pod starts."""

    def execute(self, context: Any) -> Any:
        """Skip without a pod when plan_rollout left no readiness (it did not run)."""
        if not self.env_vars:
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException("no readiness to record: plan_rollout did not compute it")
        return super().execute(context)


def operator(settings: Settings, env_vars: XComArg) -> StepPodOperator:
    """The ConfigMap pod: get/create/update of that one ConfigMap in the pipeline namespace."""
    kwargs = step_kwargs(
        settings,
        task_id=TASK_ID,
        service_account="record-readiness",
        script_name="record_readiness.sh",
        image=settings.cli_image,
        api_access=True,
        retries=3,
        # After plan_rollout whatever its outcome, but not in a run that skipped it (nothing new).
        trigger_rule="none_skipped",
    )
    return ReadinessPodOperator(**{**kwargs, "env_vars": env_vars})
