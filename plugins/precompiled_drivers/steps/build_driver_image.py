"""Step: build one driver image with NVIDIA's Makefile and podman, and push it to the staging registry.

The only step with elevated rights: podman needs SETUID/SETGID (user namespaces) and /dev/fuse, granted
by the ``precompiled-drivers-build`` SCC to this step's ServiceAccount alone (see deploy/README.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from kubernetes.client import models as k8s

from precompiled_drivers import procedure, signing
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import (
    MODEL_CONFIG,
    SECRETS_ROOT,
    optional_secret_volume,
    pod_task,
    pull_secret,
    resources,
    rhsm_secret,
    step_env,
    step_kwargs,
    tls_verify,
)
from precompiled_drivers.steps.inspect_driver_toolkit import arch_node_selector

if TYPE_CHECKING:
    from precompiled_drivers.config import RunConfig
    from precompiled_drivers.plan import BuildSpec

STEP = procedure.step("build_driver_image")
# NVIDIA's recipe cannot cross-compile: each image is built on a node of its arch (nodeSelector).
PER_ITEM = ("env_vars", "node_selector")
# podman keeps layers here; the driver build needs several GiB.
STORAGE_VOLUME = k8s.V1Volume(
    name="containers",
    empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="30Gi", local_vars_configuration=MODEL_CONFIG),
    local_vars_configuration=MODEL_CONFIG,
)
STORAGE_MOUNT = k8s.V1VolumeMount(
    name="containers",
    mount_path="/var/tmp/containers",  # noqa: S108 - a path in the pod
    local_vars_configuration=MODEL_CONFIG,
)
# Secure Boot key pair (private_key.priv, public_key.der): an optional volume, so without the Secret the
# build still runs (NVIDIA's throw-away key) unless the installation requires signing (select_builds
# then refused the run before this pod, and the script refuses too). Files only: never env or args.
MODULE_KEY_VOLUME = "module-signing"
MODULE_KEY_DIR = f"{SECRETS_ROOT}/{MODULE_KEY_VOLUME}"  # where optional_secret_volume mounts it


def module_key_volume(settings: Settings) -> tuple[k8s.V1Volume, k8s.V1VolumeMount]:
    """The module signing Secret as an optional, read-only volume (both files of the key pair)."""
    keys = (signing.MODULE_PRIVATE_KEY, signing.MODULE_PUBLIC_KEY)
    return optional_secret_volume(MODULE_KEY_VOLUME, settings.module_signing_secret, keys)


def build_security() -> k8s.V1SecurityContext:
    """Rootless podman inside the pod: a non-root user with just the capabilities user namespaces need."""
    return k8s.V1SecurityContext(
        run_as_user=1000,
        run_as_non_root=True,
        allow_privilege_escalation=True,  # newuidmap/newgidmap are setuid binaries
        # SETFCAP: mapping uid 0 into podman's user namespace needs it on RHEL 9 kernels.
        capabilities=k8s.V1Capabilities(
            drop=["ALL"], add=["SETUID", "SETGID", "SETFCAP"], local_vars_configuration=MODEL_CONFIG
        ),
        seccomp_profile=k8s.V1SeccompProfile(type="Unconfined", local_vars_configuration=MODEL_CONFIG),
        local_vars_configuration=MODEL_CONFIG,
    )


def pod(settings: Settings) -> dict[str, Any]:
    """The build pod shared by every image; ``item`` adds what to build."""
    kwargs = step_kwargs(
        settings,
        task_id=STEP.task_id,
        service_account="build",
        script_name="build_driver_image.sh",
        image=settings.builder_image,
        secrets=(pull_secret(settings), rhsm_secret(settings)),
        api_access=True,  # pushes to the internal registry with its ServiceAccount token
        security_context=build_security(),
        container_resources=resources("1", "2Gi", "4", "8Gi"),
        annotations={
            "io.kubernetes.cri-o.Devices": "/dev/fuse",
            # Ask admission for the build SCC by name instead of letting it pick by priority.
            "openshift.io/required-scc": "precompiled-drivers-build",
        },
        execution_timeout=timedelta(hours=2),
        deferrable=settings.deferrable,
        retries=1,
    )
    key_volume, key_mount = module_key_volume(settings)
    kwargs["volumes"] = [*kwargs["volumes"], STORAGE_VOLUME, key_volume]
    kwargs["volume_mounts"] = [*kwargs["volume_mounts"], STORAGE_MOUNT, key_mount]
    return kwargs


def item(settings: Settings, config: RunConfig, build: BuildSpec | Mapping[str, Any]) -> dict[str, Any]:
    """One image's pod: every Makefile variable of DESIGN.md section 3, as plain values, on its arch."""
    # Run time (select_builds), not parse time: the DAG's re-parses do not import these.
    from precompiled_drivers import kernel_module, naming
    from precompiled_drivers.plan import BuildSpec

    b = build if isinstance(build, BuildSpec) else BuildSpec.from_dict(build)
    env = {
        "DRIVER_REPO_URL": settings.driver_repo_url,
        "DRIVER_REPO_REF": config.driver_repo_ref,
        "BUILD_DIR": b.build_dir,
        "DRIVER_VERSION": b.driver_version,
        "KERNEL_VERSION": naming.make_kernel_version(b.kernel),
        "RHEL_VERSION": b.rhel_version,
        "CUDA_VERSION": config.cuda_version,
        "OS_TAG": b.os_tag,
        "BUILD_ARCH": b.build_arch,
        "DRIVER_OPEN": kernel_module.driver_open(b.kernel_module_type),
        "KERNEL_MODULE_TYPE": b.kernel_module_type,
        "MODULE_TYPE_LABEL": kernel_module.LABEL,
        "DRIVER_TOOLKIT_IMAGE": b.dtk_image,
        "STAGING_IMAGE": b.staging_image,
        "IMAGE": b.image,
        "TAG": b.tag,
        "TLS_VERIFY": tls_verify(settings),
        "CONTAINERS_STORAGE": STORAGE_MOUNT.mount_path,
        # Where the Secure Boot key pair is mounted when its Secret exists (read by the script only).
        "MODULE_SIGNING_DIR": MODULE_KEY_DIR,
        "REQUIRE_MODULE_SIGNING": "true" if settings.require_module_signing else "false",
        "MODULE_KEY_LABEL": signing.LABEL_MODULE_KEY,
        "PROVENANCE_LABELS": signing.labels_env(
            signing.provenance_labels(
                releases=b.releases,
                dtk_image=b.dtk_image,
                kernel=b.kernel,
                driver_version=b.driver_version,
                cuda_version=config.cuda_version,
                recipe_url=settings.driver_repo_url,
                recipe_ref=config.driver_repo_ref,
            )
        ),
    }
    return {
        "env_vars": step_env(STEP.task_id, (pull_secret(settings), rhsm_secret(settings)), env),
        "node_selector": arch_node_selector(b.build_arch),
    }


def task(settings: Settings, items: Any, **task_args: Any) -> Any:
    """The task, one pod per image; ``items`` are ``item``'s results (select_builds' XCom)."""
    return pod_task(STEP, pod(settings), items, per_item=PER_ITEM, **task_args)
