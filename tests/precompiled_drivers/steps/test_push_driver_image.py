"""Pod contract of push_driver_image: skopeo copy from staging to the target, digest checked."""

from __future__ import annotations

from typing import Any

import pytest
from step_pods import assert_common, assert_restricted, env_of, pod_of, secret_mounts, unmapped

from precompiled_drivers.settings import Settings
from precompiled_drivers.steps import push_driver_image as step
from precompiled_drivers.validation import ValidationError

STAGING = "image-registry.openshift-image-registry.svc:5000/nvidia-precompiled-drivers"
TAG = "570.158.01-5.14.0-427.50.1.el9_4.x86_64-rhcos4.18"
BUILT = {
    "image": f"quay.io/acme/nvidia/driver:{TAG}",
    "tag": TAG,
    "staging_image": f"{STAGING}/driver:{TAG}",
    "digest": "sha256:" + "d" * 64,
}


def pod_for(settings: Settings, built: dict[str, Any]):
    return pod_of(unmapped(step, settings, step.item(settings, built)))


def test_pod_contract() -> None:
    pod = pod_for(Settings(), BUILT)
    assert_common(
        pod,
        task_id="push_driver_image",
        service_account="push",
        api_access=True,  # reads staging from the internal registry with its token
        image=Settings().skopeo_image,
        script_name="push_driver_image.sh",
    )
    assert_restricted(pod)
    assert env_of(pod) == {
        "HOME": "/tmp",
        "STEP": "push_driver_image",
        "STAGING_IMAGE": BUILT["staging_image"],
        "IMAGE": BUILT["image"],
        "EXPECTED_DIGEST": BUILT["digest"],
        "TLS_VERIFY": "true",
        "PUSH_AUTH_FILE": "/etc/precompiled-drivers/push-secret/.dockerconfigjson",
    }
    assert secret_mounts(pod) == {
        "/etc/precompiled-drivers/push-secret": ("precompiled-drivers-push-secret", True)
    }


def test_push_retries_on_its_own() -> None:
    op = unmapped(step, Settings(), step.item(Settings(), BUILT))
    assert op.retries == 4


@pytest.mark.parametrize(
    ("built", "field"),
    [
        ({**BUILT, "digest": "sha256:abc"}, "digest"),
        ({**BUILT, "digest": None}, "digest"),
        ({**BUILT, "image": "quay.io/acme/driver:x;rm"}, "image"),
        ({**BUILT, "staging_image": "staging"}, "staging_image"),
    ],
)
def test_build_results_are_checked(built: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        step.item(Settings(), built)
    assert err.value.field == f"build_driver_image result for {TAG}: {field}"


def test_image_signing_mounts_the_sigstore_key_as_files() -> None:
    settings = Settings(sign_images=True, image_signing_secret="sigstore-keys")
    pod = pod_for(settings, BUILT)
    env = env_of(pod)
    assert {k: v for k, v in env.items() if k.startswith("SIGNING_")} == {
        "SIGNING_KEY_FILE": "/etc/precompiled-drivers/image-signing/cosign.key",
        "SIGNING_PASSPHRASE_FILE": "/etc/precompiled-drivers/image-signing/cosign.password",
        "SIGNING_PUBLIC_KEY_FILE": "/etc/precompiled-drivers/image-signing/cosign.pub",
    }
    assert secret_mounts(pod) == {
        "/etc/precompiled-drivers/push-secret": ("precompiled-drivers-push-secret", True),
        "/etc/precompiled-drivers/image-signing": ("sigstore-keys", True),
    }
    assert_restricted(pod)


def test_no_signing_key_mounted_when_signing_is_off() -> None:
    pod = pod_for(Settings(), BUILT)
    assert not any(k.startswith("SIGNING_") for k in env_of(pod))
    assert "/etc/precompiled-drivers/image-signing" not in secret_mounts(pod)
