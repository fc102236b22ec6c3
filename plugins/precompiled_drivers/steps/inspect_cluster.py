"""Step: list GPU nodes with their kernel and OS labels, the GPU Operator and the ClusterPolicy."""

from __future__ import annotations

from typing import Any

from kubernetes.client import models as k8s

from precompiled_drivers import procedure, signing
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import (
    SECRETS_ROOT,
    StepPodOperator,
    optional_secret_volume,
    pod_task,
    step_env,
    step_kwargs,
)

STEP = procedure.step("inspect_cluster")
# Only the public half of each signing key reaches this pod (a Secret volume's ``items``), and the volume
# is optional: a missing Secret is an empty folder, reported as "no key", never a pod stuck in mounting.
PUBLIC_KEYS = {
    # volume name: (settings field of the Secret, key in it, env variable naming the file)
    "module-signing-public": (
        "module_signing_secret",
        signing.MODULE_PUBLIC_KEY,
        "MODULE_SIGNING_PUBLIC_KEY",
    ),
    "image-signing-public": ("image_signing_secret", signing.IMAGE_PUBLIC_KEY, "IMAGE_SIGNING_PUBLIC_KEY"),
}


def public_key_volumes(settings: Settings) -> tuple[list[k8s.V1Volume], list[k8s.V1VolumeMount]]:
    """Optional Secret volumes holding one public key each (the private keys are not projected)."""
    pairs = [
        optional_secret_volume(name, getattr(settings, field), (key,))
        for name, (field, key, _) in PUBLIC_KEYS.items()
    ]
    return [volume for volume, _ in pairs], [mount for _, mount in pairs]


def pod(settings: Settings) -> dict[str, Any]:
    """The inspect_cluster pod: read-only API access through its own ServiceAccount."""
    kwargs = step_kwargs(
        settings,
        task_id=STEP.task_id,
        service_account="inspect-cluster",
        script_name="inspect_cluster.sh",
        image=settings.cli_image,
        api_access=True,
    )
    volumes, mounts = public_key_volumes(settings)
    kwargs["volumes"] = [*kwargs["volumes"], *volumes]
    kwargs["volume_mounts"] = [*kwargs["volume_mounts"], *mounts]
    return kwargs


def env(settings: Settings) -> dict[str, str]:
    """The whole pod environment: which policy and operator Deployment to read (settings only)."""
    return step_env(
        STEP.task_id,
        (),
        {
            "POLICY_NAME": settings.policy_name,
            "OPERATOR_NAMESPACE": settings.operator_namespace,
            "OPERATOR_DEPLOYMENT": settings.operator_deployment,
            **{var: f"{SECRETS_ROOT}/{name}/{key}" for name, (_, key, var) in PUBLIC_KEYS.items()},
        },
    )


def task(settings: Settings, **task_args: Any) -> StepPodOperator:
    """The task: its environment is known at parse time (installation settings only)."""
    return pod_task(STEP, pod(settings), env(settings), **task_args)
