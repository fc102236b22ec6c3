"""Pod contract of inspect_cluster: read-only API access through its own ServiceAccount."""

from __future__ import annotations

from step_pods import assert_common, assert_restricted, env_of, pod_of, secret_mounts

from precompiled_drivers.settings import Settings
from precompiled_drivers.steps import inspect_cluster as step


def test_pod_contract() -> None:
    pod = pod_of(step.task(Settings()))
    assert_common(
        pod,
        task_id="inspect_cluster",
        service_account="inspect-cluster",
        api_access=True,
        image=Settings().cli_image,
        script_name="inspect_cluster.sh",
    )
    assert_restricted(pod)
    assert env_of(pod) == {
        "HOME": "/tmp",
        "STEP": "inspect_cluster",
        "POLICY_NAME": "gpu-cluster-policy",
        "OPERATOR_NAMESPACE": "nvidia-gpu-operator",
        "OPERATOR_DEPLOYMENT": "gpu-operator",
        # Public keys only (optional volumes): whether signing can happen is known before any build.
        "MODULE_SIGNING_PUBLIC_KEY": "/etc/precompiled-drivers/module-signing-public/public_key.der",
        "IMAGE_SIGNING_PUBLIC_KEY": "/etc/precompiled-drivers/image-signing-public/cosign.pub",
    }
    assert secret_mounts(pod) == {
        "/etc/precompiled-drivers/module-signing-public": ("precompiled-drivers-module-signing", True),
        "/etc/precompiled-drivers/image-signing-public": ("precompiled-drivers-image-signing", True),
    }
    projected = {v.secret.secret_name: v.secret for v in pod.spec.volumes if v.secret}
    assert {name: [(i.key, i.path) for i in s.items] for name, s in projected.items()} == {
        "precompiled-drivers-module-signing": [("public_key.der", "public_key.der")],
        "precompiled-drivers-image-signing": [("cosign.pub", "cosign.pub")],
    }
    assert all(s.optional for s in projected.values())
    assert not pod.spec.image_pull_secrets


def test_settings_reach_the_environment() -> None:
    settings = Settings(policy_name="my-policy", operator_namespace="gpu-op", operator_deployment="op")
    env = env_of(pod_of(step.task(settings)))
    assert (env["POLICY_NAME"], env["OPERATOR_NAMESPACE"], env["OPERATOR_DEPLOYMENT"]) == (
        "my-policy",
        "gpu-op",
        "op",
    )


def test_result_is_pushed_to_xcom() -> None:
    op = step.task(Settings())
    assert op.do_xcom_push is True
    names = [c.name for c in pod_of(op).spec.containers]
    assert "airflow-xcom-sidecar" in names
