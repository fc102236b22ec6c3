"""Pod contract of inspect_driver_toolkit: runs the DTK image itself, pulled with the pull secret."""

from __future__ import annotations

from typing import Any

import pytest
from step_pods import assert_common, assert_restricted, env_of, partial_of, pod_of, secret_mounts, unmapped

from precompiled_drivers.settings import Settings
from precompiled_drivers.steps import inspect_driver_toolkit as step
from precompiled_drivers.validation import ValidationError

DTK = "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:" + "a" * 64
RESOLVED = {
    "version": "4.18.12",
    "arch": "x86_64",
    "release_image": "quay.io/openshift-release-dev/ocp-release:4.18.12-x86_64",
    "dtk_image": DTK,
}


def pod_for(settings: Settings, resolved: dict[str, Any]):
    return pod_of(unmapped(step, settings, step.item(settings, resolved)))


def test_pod_contract() -> None:
    pod = pod_for(Settings(), RESOLVED)
    assert_common(
        pod,
        task_id="inspect_driver_toolkit",
        service_account="inspect-dtk",
        api_access=False,
        image=DTK,  # the DTK image itself, by digest
        script_name="inspect_driver_toolkit.sh",
    )
    assert_restricted(pod)
    assert env_of(pod) == {
        "HOME": "/tmp",
        "STEP": "inspect_driver_toolkit",
        "RELEASE_VERSION": "4.18.12",
        "RELEASE_ARCH": "x86_64",
        "DTK_IMAGE": DTK,
    }
    assert secret_mounts(pod) == {}
    # The kubelet pulls the DTK from Red Hat's registry with the OpenShift pull secret.
    assert [s.name for s in pod.spec.image_pull_secrets] == ["precompiled-drivers-pull-secret"]


def test_pull_secret_name_from_settings() -> None:
    pod = pod_for(Settings(pull_secret="mirror-pull"), RESOLVED)
    assert [s.name for s in pod.spec.image_pull_secrets] == ["mirror-pull"]


def test_partial_leaves_image_and_env_to_items() -> None:
    partial = partial_of(step, Settings())
    assert "image" not in partial.kwargs
    assert "env_vars" not in partial.kwargs


@pytest.mark.parametrize(
    ("resolved", "field"),
    [
        ({**RESOLVED, "dtk_image": "driver-toolkit"}, "dtk_image"),
        ({**RESOLVED, "dtk_image": "quay.io/x/dtk:1;id"}, "dtk_image"),
        ({**RESOLVED, "dtk_image": None}, "dtk_image"),
        ({**RESOLVED, "version": "4.18.12\nid"}, "version"),
        ({**RESOLVED, "arch": "x86"}, "arch"),
    ],
)
def test_resolved_values_are_checked(resolved: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        step.item(Settings(), resolved)
    assert err.value.field.startswith("resolve_driver_toolkit result for ")
    assert err.value.field.endswith(field)


@pytest.mark.parametrize(
    ("arch", "node_arch"), [("x86_64", "amd64"), ("aarch64", "arm64"), ("arm64", "arm64")]
)
def test_pod_runs_on_a_node_of_the_release_arch(arch: str, node_arch: str) -> None:
    pod = pod_for(Settings(), {**RESOLVED, "arch": arch})
    assert pod.spec.node_selector == {"kubernetes.io/arch": node_arch}
    assert not pod.spec.init_containers


def test_partial_leaves_node_selector_and_init_containers_to_items() -> None:
    partial = partial_of(step, Settings())
    assert "node_selector" not in partial.kwargs
    assert "init_containers" not in partial.kwargs


DTK10 = "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:" + "b" * 64


def test_driver_toolkit_10_is_read_by_an_init_container() -> None:
    pod = pod_for(Settings(), {**RESOLVED, "version": "4.20.4", "dtk_image_10": DTK10})
    [init] = pod.spec.init_containers
    assert init.image == DTK10
    # A fixed command, no shell and no value: the file goes to the scratch volume the script reads.
    assert init.command == [
        "cp",
        "/etc/driver-toolkit-release.json",
        "/toolkits/driver-toolkit-10-release.json",
    ]
    assert [(m.name, m.mount_path) for m in init.volume_mounts] == [("scratch", "/toolkits")]
    assert "scratch" in [vol.name for vol in pod.spec.volumes]
    assert init.security_context.read_only_root_filesystem is True
    assert init.security_context.capabilities.drop == ["ALL"]
    env = env_of(pod)
    assert env["DTK_IMAGE_10"] == DTK10
    assert env["DTK_RELEASE_FILE_10"] == "/tmp/driver-toolkit-10-release.json"
    assert pod.spec.containers[0].image == DTK
    assert pod.spec.node_selector == {"kubernetes.io/arch": "amd64"}


def test_driver_toolkit_10_reference_is_checked() -> None:
    with pytest.raises(ValidationError) as err:
        step.item(Settings(), {**RESOLVED, "dtk_image_10": "quay.io/x:1;id"})
    assert err.value.field.endswith("dtk_image_10")
