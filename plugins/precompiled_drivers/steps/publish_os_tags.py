"""Step: publish each driver image under the other OS tags the GPU Operator may use (``skopeo copy``).

The operator takes one OS tag for the whole cluster from whichever GPU node it lists first (see ``os_tag``);
a registry-side copy by digest puts every image under each tag, without a rebuild.
"""

from __future__ import annotations

from airflow.sdk import XComArg

from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import StepPodOperator, push_secret, step_env, step_kwargs, tls_verify

TASK_ID = "publish_os_tags"


def env(settings: Settings, aliases: str) -> dict[str, str]:
    """The whole pod environment: ``<image> <alias>`` lines (``plan.alias_lines``) and the credentials."""
    return step_env(
        TASK_ID, (push_secret(settings),), {"ALIASES": aliases, "TLS_VERIFY": tls_verify(settings)}
    )


def operator(settings: Settings, env_vars: XComArg, **kwargs: object) -> StepPodOperator:
    """The copy pod: registry credentials only, no Kubernetes API access; retried on registry errors."""
    step = step_kwargs(
        settings,
        task_id=TASK_ID,
        service_account="publish-tags",
        script_name="publish_os_tags.sh",
        image=settings.skopeo_image,
        secrets=(push_secret(settings),),
        retries=4,
        **kwargs,
    )
    return StepPodOperator(**{**step, "env_vars": env_vars})
