"""Pod contract of resolve_driver_toolkit: oc with the pull secret file, no API token."""

from __future__ import annotations

import pytest
from step_pods import assert_common, assert_restricted, env_of, partial_of, pod_of, secret_mounts, unmapped

from precompiled_drivers.config import Target
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps import resolve_driver_toolkit as step
from precompiled_drivers.steps.base import StepPodOperator


def pod_for(settings: Settings, target: Target):
    return pod_of(unmapped(step, settings, step.item(settings, target)))


def test_pod_contract() -> None:
    settings = Settings()
    pod = pod_for(settings, Target("4.18.12", "x86_64", "cluster"))
    assert_common(
        pod,
        task_id="resolve_driver_toolkit",
        service_account="resolve",
        api_access=False,
        image=Settings().cli_image,
        script_name="resolve_driver_toolkit.sh",
    )
    assert_restricted(pod)
    assert env_of(pod) == {
        "HOME": "/tmp",
        "STEP": "resolve_driver_toolkit",
        "RELEASE_VERSION": "4.18.12",
        "RELEASE_ARCH": "x86_64",
        "RELEASE_SOURCE": "cluster",
        "RELEASE_IMAGE": "quay.io/openshift-release-dev/ocp-release:4.18.12-x86_64",
        "PULL_SECRET_FILE": "/etc/precompiled-drivers/pull-secret/.dockerconfigjson",
    }
    assert secret_mounts(pod) == {
        "/etc/precompiled-drivers/pull-secret": ("precompiled-drivers-pull-secret", True)
    }
    assert not pod.spec.image_pull_secrets


def test_installation_settings_are_used() -> None:
    settings = Settings(
        namespace="gpu-builds",
        cli_image="mirror.example.com/openshift/cli:4.19",
        pull_secret="mirror-pull",
        release_image_repository="mirror.example.com/ocp/release",
    )
    pod = pod_for(settings, Target("4.19.3", "aarch64"))
    assert pod.metadata.namespace == "gpu-builds"
    assert pod.spec.containers[0].image == "mirror.example.com/openshift/cli:4.19"
    assert env_of(pod)["RELEASE_IMAGE"] == "mirror.example.com/ocp/release:4.19.3-aarch64"
    assert secret_mounts(pod) == {"/etc/precompiled-drivers/pull-secret": ("mirror-pull", True)}


def test_partial_leaves_per_item_keys_out() -> None:
    partial = partial_of(step, Settings())
    assert "env_vars" not in partial.kwargs
    assert partial.kwargs["retries"] == 2


@pytest.mark.parametrize("field", ["cmds", "arguments"])
def test_script_is_not_templated(field: str) -> None:
    assert field not in StepPodOperator.template_fields
    assert "env_vars" in StepPodOperator.template_fields
