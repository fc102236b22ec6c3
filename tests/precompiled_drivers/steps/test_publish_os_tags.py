"""Pod contract of publish_os_tags: skopeo with the push credentials file, no API token, restricted."""

from __future__ import annotations

from step_pods import assert_common, assert_restricted, env_of, pod_of, secret_mounts

from precompiled_drivers.settings import Settings
from precompiled_drivers.steps import publish_os_tags as step

IMAGE = "quay.io/acme/nvidia/driver:570.158.01-5.14.0-427.50.1.el9_4.x86_64-rhcos4.18"
ALIAS = "quay.io/acme/nvidia/driver:570.158.01-5.14.0-427.50.1.el9_4.x86_64-rhel9"


def test_pod_contract() -> None:
    settings = Settings()
    # At run time env_vars is plan_builds' "alias_env" XCom; here the same dict, directly.
    pod = pod_of(step.task(settings, step.env(settings, f"{IMAGE} {ALIAS}")))
    assert_common(
        pod,
        task_id="publish_os_tags",
        service_account="publish-tags",
        api_access=False,
        image=settings.skopeo_image,
        script_name="publish_os_tags.sh",
    )
    assert_restricted(pod)
    assert env_of(pod) == {
        "HOME": "/tmp",
        "STEP": "publish_os_tags",
        "ALIASES": f"{IMAGE} {ALIAS}",
        "TLS_VERIFY": "true",
        "PUSH_AUTH_FILE": "/etc/precompiled-drivers/push-secret/.dockerconfigjson",
    }
    assert secret_mounts(pod) == {
        "/etc/precompiled-drivers/push-secret": ("precompiled-drivers-push-secret", True)
    }


def test_env_vars_come_from_xcom() -> None:
    op = step.task(Settings(), step.env(Settings(), ""))
    assert "env_vars" in op.template_fields
