"""Pod contract of build_driver_image: the one step with elevated rights, and exactly those it needs."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from step_pods import ROOT, assert_common, env_of, main_container, partial_of, pod_of, secret_mounts, unmapped

from precompiled_drivers import plan
from precompiled_drivers.config import run_config
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps import build_driver_image as step

K418 = "5.14.0-427.50.1.el9_4.x86_64"
DTK = "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:" + "a" * 64
STAGING = "image-registry.openshift-image-registry.svc:5000/nvidia-precompiled-drivers"
TAG = f"570.158.01-{K418}-rhcos4.18"
SCC = ROOT / "deploy" / "scc-build.yaml"


def config(driver_versions: list[str] | None = None) -> Any:
    params = {
        "ocp_versions": ["4.18.12"],
        "driver_versions": driver_versions or ["570.158.01"],
        "cuda_version": "12.8.1",
        "repository": "quay.io/acme/nvidia",
        "driver_repo_ref": "06a208ca9747c82b1ba99b76ecdcf2469b0a0207",
    }
    return run_config(params, Settings())


def build_spec() -> plan.BuildSpec:
    toolkit = plan.Toolkit("4.18.12", "x86_64", DTK, K418, K418 + "+rt", "9.4")
    [build] = plan.plan_builds(config(), Settings(), [toolkit], "v26.7.0")
    return build


def build_pod(settings: Settings | None = None, build: Any = None):
    settings = settings or Settings()
    item = step.item(settings, config(), build or build_spec())
    return pod_of(unmapped(step, settings, item))


@pytest.mark.parametrize(
    ("requested", "driver", "driver_open"),
    [
        ("auto", "550.163.01", "false"),  # branch < 560: proprietary, as NVIDIA's container decides
        ("auto", "570.158.01", "true"),
        ("open", "550.163.01", "true"),
        ("proprietary", "580.65.06", "false"),
    ],
)
def test_driver_open_follows_kernel_module_type(requested: str, driver: str, driver_open: str) -> None:
    toolkit = plan.Toolkit("4.18.12", "x86_64", DTK, K418, "", "9.4")
    [build] = plan.plan_builds(
        config(driver_versions=[driver]), Settings(), [toolkit], "v26.7.0", kernel_module_type=requested
    )
    env = env_of(build_pod(build=build))
    assert env["DRIVER_OPEN"] == driver_open
    assert env["KERNEL_MODULE_TYPE"] == ("open" if driver_open == "true" else "proprietary")


def test_pod_contract() -> None:
    pod = build_pod()
    assert_common(
        pod,
        task_id="build_driver_image",
        service_account="build",
        api_access=True,  # pushes to the internal registry with its ServiceAccount token
        image=Settings().builder_image,
        script_name="build_driver_image.sh",
    )
    assert env_of(pod) == {
        "HOME": "/tmp",
        "STEP": "build_driver_image",
        "DRIVER_REPO_URL": "https://github.com/NVIDIA/gpu-driver-container.git",
        "DRIVER_REPO_REF": "06a208ca9747c82b1ba99b76ecdcf2469b0a0207",
        "BUILD_DIR": "rhel9/precompiled",
        "DRIVER_VERSION": "570.158.01",
        "KERNEL_VERSION": K418,
        "RHEL_VERSION": "9.4",
        "CUDA_VERSION": "12.8.1",
        "OS_TAG": "rhcos4.18",
        "BUILD_ARCH": "x86_64",
        # kernelModuleType auto (the CRD default) and a 570 driver: open modules, recorded as a label.
        "DRIVER_OPEN": "true",
        "KERNEL_MODULE_TYPE": "open",
        "MODULE_TYPE_LABEL": "io.github.precompiled-drivers.kernel-module-type",
        "DRIVER_TOOLKIT_IMAGE": DTK,
        "STAGING_IMAGE": f"{STAGING}/driver:{TAG}",
        "IMAGE": f"quay.io/acme/nvidia/driver:{TAG}",
        "TAG": TAG,
        "TLS_VERIFY": "true",
        "CONTAINERS_STORAGE": "/var/tmp/containers",
        # Secure Boot key pair: a mounted folder (the script reads the files), never a value.
        "MODULE_SIGNING_DIR": "/etc/precompiled-drivers/module-signing",
        "REQUIRE_MODULE_SIGNING": "false",
        "MODULE_KEY_LABEL": "io.github.precompiled-drivers.module-signing-key-sha256",
        # Provenance labels, one KEY=VALUE a line (the script adds module type and key fingerprint).
        "PROVENANCE_LABELS": "\n".join(
            [
                "io.github.precompiled-drivers.openshift-releases=4.18.12",
                f"io.github.precompiled-drivers.driver-toolkit-image={DTK}",
                f"io.github.precompiled-drivers.kernel-version={K418}",
                "io.github.precompiled-drivers.driver-version=570.158.01",
                "io.github.precompiled-drivers.cuda-version=12.8.1",
                "io.github.precompiled-drivers.nvidia-recipe=https://github.com/NVIDIA/gpu-driver-container.git"
                "@06a208ca9747c82b1ba99b76ecdcf2469b0a0207",
            ]
        ),
        "PULL_SECRET_FILE": "/etc/precompiled-drivers/pull-secret/.dockerconfigjson",
        "RHSM_ORG_FILE": "/etc/precompiled-drivers/rhsm/org",
        "RHSM_ACTIVATIONKEY_FILE": "/etc/precompiled-drivers/rhsm/activationkey",
    }
    assert secret_mounts(pod) == {
        "/etc/precompiled-drivers/pull-secret": ("precompiled-drivers-pull-secret", True),
        "/etc/precompiled-drivers/rhsm": ("precompiled-drivers-rhsm", True),
        "/etc/precompiled-drivers/module-signing": ("precompiled-drivers-module-signing", True),
    }
    # The key pair's volume is optional: without the Secret, NVIDIA's throw-away key (unless required).
    [keys] = [v.secret for v in pod.spec.volumes if v.name == "module-signing"]
    assert keys.optional is True
    assert [(i.key, i.path) for i in keys.items] == [
        ("private_key.priv", "private_key.priv"),
        ("public_key.der", "public_key.der"),
    ]
    # podman's storage and the scratch dir are emptyDirs.
    volumes = {v.name: v for v in pod.spec.volumes}
    assert volumes["containers"].empty_dir.size_limit == "30Gi"
    mounts = {m.mount_path: m.name for m in main_container(pod).volume_mounts}
    assert mounts["/var/tmp/containers"] == "containers"
    assert mounts["/tmp"] == "scratch"
    resources = main_container(pod).resources
    assert resources.requests == {"cpu": "1", "memory": "2Gi"}
    assert resources.limits == {"cpu": "4", "memory": "8Gi"}
    assert pod.metadata.annotations["io.kubernetes.cri-o.Devices"] == "/dev/fuse"
    assert pod.metadata.annotations["openshift.io/required-scc"] == "precompiled-drivers-build"


def test_build_security_is_the_documented_exception() -> None:
    sc = main_container(build_pod()).security_context
    assert sc.privileged is not True
    assert sc.run_as_non_root is True
    assert sc.run_as_user == 1000
    assert sc.capabilities.drop == ["ALL"]
    # User namespaces for rootless podman, nothing else (no SYS_ADMIN, no MKNOD...).
    assert set(sc.capabilities.add) == {"SETUID", "SETGID", "SETFCAP"}
    assert sc.allow_privilege_escalation is True  # newuidmap/newgidmap are setuid helpers


def test_build_security_fits_its_scc() -> None:
    if not SCC.is_file():
        pytest.skip(f"{SCC} is not in this checkout")
    scc = yaml.safe_load(SCC.read_text())
    pod = build_pod()
    sc = main_container(pod).security_context
    assert scc["allowPrivilegedContainer"] is False
    assert set(sc.capabilities.add) <= set(scc["allowedCapabilities"])
    assert not set(sc.capabilities.add) & set(scc.get("requiredDropCapabilities") or [])
    assert scc["runAsUser"] == {"type": "MustRunAs", "uid": sc.run_as_user}
    assert sc.seccomp_profile.type.lower() in {
        p.replace("runtime/default", "runtimedefault") for p in scc["seccompProfiles"]
    }
    kinds = {"emptyDir" if v.empty_dir else "secret" if v.secret else "other" for v in pod.spec.volumes}
    assert kinds <= set(scc["volumes"])
    assert pod.metadata.annotations["openshift.io/required-scc"] == scc["metadata"]["name"]


def test_long_build_settings() -> None:
    item = step.item(Settings(), config(), build_spec())
    op = unmapped(step, Settings(deferrable=True), item)
    assert op.deferrable is True
    assert op.execution_timeout.total_seconds() == 2 * 3600
    assert op.retries == 1
    assert unmapped(step, Settings(deferrable=True), item, deferrable=False).deferrable is False
    assert "env_vars" not in partial_of(step, Settings()).kwargs


def test_item_from_xcom_dict_equals_item_from_spec() -> None:
    build = build_spec()
    as_xcom: dict[str, Any] = build.to_dict() | {"releases": list(build.releases)}
    assert step.item(Settings(), config(), as_xcom) == step.item(Settings(), config(), build)


def test_aarch64_64k_kernel_variables() -> None:
    kernel = "5.14.0-570.12.1.el9_6.aarch64+64k"
    spec = plan.BuildSpec(
        driver_version="570.158.01",
        kernel=kernel,
        rhel_version="9.6",
        os_tag="rhel9",
        os_tag_rule="",
        build_arch="aarch64+64k",
        build_dir="rhel9/precompiled",
        tag="570.158.01-5.14.0-570.12.1.el9_6.aarch64_64k-rhel9",
        image="quay.io/acme/nvidia/driver:570.158.01-5.14.0-570.12.1.el9_6.aarch64_64k-rhel9",
        staging_image="registry.local:5000/s/driver:570.158.01-5.14.0-570.12.1.el9_6.aarch64_64k-rhel9",
        dtk_image=DTK,
        releases=("4.19.3",),
    )
    env = env_of(build_pod(build=spec))
    # The Makefile appends BUILD_ARCH itself: KERNEL_VERSION goes without the +64k.
    assert env["KERNEL_VERSION"] == "5.14.0-570.12.1.el9_6.aarch64"
    assert env["BUILD_ARCH"] == "aarch64+64k"


def test_plain_http_registry_for_tests() -> None:
    env = env_of(build_pod(Settings(registry_tls_verify=False)))
    assert env["TLS_VERIFY"] == "false"


def test_builder_image_and_secret_names_from_settings() -> None:
    settings = Settings(builder_image="registry.example.com/tools/builder:2", rhsm_secret="rhsm-prod")
    pod = build_pod(settings)
    assert main_container(pod).image == "registry.example.com/tools/builder:2"
    assert secret_mounts(pod)["/etc/precompiled-drivers/rhsm"] == ("rhsm-prod", True)


@pytest.mark.parametrize(
    ("arch", "kernel", "node_arch"),
    [
        ("x86_64", K418, "amd64"),
        ("aarch64", "5.14.0-570.12.1.el9_6.aarch64", "arm64"),
        # A 64k build needs an arm64 builder, any page size: the DTK holds kernel-64k-devel.
        ("aarch64", "5.14.0-570.12.1.el9_6.aarch64+64k", "arm64"),
    ],
)
def test_build_pod_is_pinned_to_its_arch(arch: str, kernel: str, node_arch: str) -> None:
    toolkit = plan.Toolkit("4.19.3", arch, DTK, kernel, "", "9.6")
    [build] = plan.plan_builds(config(), Settings(), [toolkit], "v26.7.0")
    pod = build_pod(build=build)
    assert pod.spec.node_selector == {"kubernetes.io/arch": node_arch}
    assert env_of(pod)["BUILD_ARCH"] == build.build_arch


def test_partial_leaves_the_node_selector_to_items() -> None:
    assert "node_selector" not in partial_of(step, Settings()).kwargs


def test_module_signing_settings_reach_the_pod() -> None:
    settings = Settings(module_signing_secret="secure-boot-keys", require_module_signing=True)
    pod = build_pod(settings)
    assert env_of(pod)["REQUIRE_MODULE_SIGNING"] == "true"
    assert secret_mounts(pod)["/etc/precompiled-drivers/module-signing"] == ("secure-boot-keys", True)
