"""Pod contract of check_published_images: skopeo with the push credentials file, no API token."""

from __future__ import annotations

from step_pods import assert_common, assert_restricted, env_of, pod_of, secret_mounts

from precompiled_drivers.settings import Settings
from precompiled_drivers.steps import check_published_images as step

IMAGES = [
    "quay.io/acme/nvidia/driver:570.158.01-5.14.0-427.50.1.el9_4.x86_64-rhcos4.18",
    "quay.io/acme/nvidia/driver:570.158.01-5.14.0-570.12.1.el9_6.x86_64-rhel9",
]


def test_pod_contract() -> None:
    settings = Settings()
    # At run time env_vars is plan_builds' "check_env" XCom; here the same dict, directly.
    pod = pod_of(step.task(settings, step.env(settings, IMAGES)))
    assert_common(
        pod,
        task_id="check_published_images",
        service_account="check-images",
        api_access=False,
        image=Settings().skopeo_image,
        script_name="check_published_images.sh",
    )
    assert_restricted(pod)
    assert env_of(pod) == {
        "HOME": "/tmp",
        "STEP": "check_published_images",
        "IMAGES": "\n".join(IMAGES),
        "MODULE_TYPE_LABEL": "io.github.precompiled-drivers.kernel-module-type",
        "TLS_VERIFY": "true",
        "PUSH_AUTH_FILE": "/etc/precompiled-drivers/push-secret/.dockerconfigjson",
    }
    assert secret_mounts(pod) == {
        "/etc/precompiled-drivers/push-secret": ("precompiled-drivers-push-secret", True)
    }


def test_module_types_ride_along_with_their_images() -> None:
    env = step.env(Settings(), IMAGES, {IMAGES[0]: "open"})
    assert env["IMAGES"].splitlines() == [f"{IMAGES[0]} open", IMAGES[1]]


def test_plain_http_test_registry() -> None:
    settings = Settings(registry_tls_verify=False, push_secret="local-push")
    pod = pod_of(step.task(settings, step.env(settings, IMAGES[:1])))
    assert env_of(pod)["TLS_VERIFY"] == "false"
    assert secret_mounts(pod) == {"/etc/precompiled-drivers/push-secret": ("local-push", True)}


def test_env_vars_come_from_xcom() -> None:
    op = step.task(Settings(), step.env(Settings(), IMAGES))
    assert "env_vars" in op.template_fields
