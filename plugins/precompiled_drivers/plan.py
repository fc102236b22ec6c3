"""Planning rules: which releases to resolve, and which driver images to build for them.

Pure functions from validated inputs to plain data; the DAG turns their output into mapped pods.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from precompiled_drivers import kernel_module, naming, ocp_version, os_tag
from precompiled_drivers import validation as v
from precompiled_drivers.config import RunConfig, Target, unique_targets
from precompiled_drivers.settings import Settings

# The release payload's toolkit images (openshift/driver-toolkit manifests/image-references and
# image-references-rhel10): one per RHCOS stream.
STREAM_RHEL9 = "driver-toolkit"
STREAM_RHEL10 = "driver-toolkit-10"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Toolkit:
    """What a release's Driver Toolkit image says about its kernel (``/etc/driver-toolkit-release.json``)."""

    version: str
    arch: str
    dtk_image: str
    kernel: str
    rt_kernel: str
    rhel_version: str
    stream: str = STREAM_RHEL9  # the payload tag the image came from


@dataclass(frozen=True)
class RejectedToolkit:
    """A release whose Driver Toolkit data could not be used: its builds are not planned, the others are."""

    version: str
    arch: str
    error: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form for XCom and the report."""
        return asdict(self)


@dataclass(frozen=True)
class BuildSpec:
    """One driver image to build and push: the unit the build and push steps are mapped over."""

    driver_version: str
    kernel: str
    rhel_version: str
    os_tag: str
    os_tag_rule: str
    build_arch: str
    build_dir: str
    tag: str
    image: str  # the final reference the GPU Operator will pull
    staging_image: str
    dtk_image: str
    releases: tuple[str, ...]
    warning: str = ""
    kernel_module_type: str = kernel_module.PROPRIETARY  # what DRIVER_OPEN builds: open | proprietary
    # The same image under the other OS tags the operator may look for (see os_tag): OS_TAG changes only
    # the tag and the `release` label in NVIDIA's Dockerfile, so these are registry-side copies, not builds.
    aliases: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for XCom."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BuildSpec:
        """Inverse of ``to_dict`` (XCom turns tuples into lists)."""
        return cls(**{**data, "releases": tuple(data["releases"]), "aliases": tuple(data.get("aliases", ()))})


def release_targets(
    config: RunConfig, cluster_version: str, upgrade_versions: Sequence[str] = ()
) -> list[Target]:
    """Form/event targets, plus the cluster's own release and its upgrade targets (look-ahead's, empty
    when it is off)."""
    targets = list(config.targets)
    if config.include_cluster_release and cluster_version:
        targets += [Target(cluster_version, arch, "cluster") for arch in config.arches]
    targets += [Target(ver, arch, "upgrade") for ver in upgrade_versions for arch in config.arches]
    unique = unique_targets(targets)
    if not unique:
        raise v.ValidationError(
            "ocp_versions",
            [],
            "at least one release: list one in the form, or keep "
            "'Include the cluster's release' on for a cluster that reports its version",
        )
    return sorted(unique, key=lambda t: (ocp_version.sort_key(t.version), t.arch))


def release_image(repository: str, target: Target) -> str:
    """The release payload image, e.g. quay.io/openshift-release-dev/ocp-release:4.18.12-x86_64."""
    return f"{repository}:{target.version}-{target.arch}"


def release_toolkits(xcom: Mapping[str, Any]) -> list[Toolkit]:
    """Every toolkit of one release: ``driver-toolkit`` and, when the payload has it, ``driver-toolkit-10``.

    Raises ValidationError naming the release and the bad field.
    """
    if not isinstance(xcom, Mapping):
        raise v.ValidationError("inspect_driver_toolkit result", xcom, "an object (the step wrote none)")
    version = v.ocp_version(xcom.get("version"), f"driver toolkit of {xcom.get('version')}: version")
    arch = v.arch(xcom.get("arch"), f"driver toolkit of {version}: arch")
    toolkits = [_toolkit(version, arch, STREAM_RHEL9, xcom.get("dtk_image"), xcom.get("toolkit"))]
    if xcom.get("dtk_image_10") or xcom.get("toolkit_10"):
        toolkits.append(
            _toolkit(version, arch, STREAM_RHEL10, xcom.get("dtk_image_10"), xcom.get("toolkit_10"))
        )
    return toolkits


def _toolkit(version: str, arch: str, stream: str, dtk_image: object, release: object) -> Toolkit:
    where = f"driver toolkit of {version}-{arch}" + ("" if stream == STREAM_RHEL9 else f" ({stream})")
    if not isinstance(release, Mapping):
        raise v.ValidationError(f"{where}: /etc/driver-toolkit-release.json", release, "a JSON object")
    # Exactly major.minor: the naming rules (OS labels, build directory) need both parts.
    rhel = v.rhel_version(str(release.get("RHEL_VERSION", "")), f"{where}: RHEL_VERSION")
    kernel = v.kernel(release.get("KERNEL_VERSION"), f"{where}: KERNEL_VERSION")
    if naming.kernel_arch(kernel) != arch:
        raise v.ValidationError(f"{where}: KERNEL_VERSION", kernel, f"a {arch} kernel (the release's arch)")
    return Toolkit(
        version=version,
        arch=arch,
        dtk_image=v.image_ref(dtk_image, f"{where}: dtk_image"),
        kernel=kernel,
        rt_kernel=_rt_kernel(release.get("RT_KERNEL_VERSION"), where),
        rhel_version=rhel,
        stream=stream,
    )


def _rt_kernel(value: object, where: str) -> str:
    """The RT kernel, or "" when the toolkit has none.

    openshift/driver-toolkit Dockerfile writes ``$(rpm -q --qf ... kernel-rt-core)``; kernel-rt is
    installed on x86_64 only, so on aarch64 the field holds rpm's message ``package kernel-rt-core is
    not installed``. Anything that is not a kernel means "no RT kernel", never a failed plan.
    """
    if not value:
        return ""
    try:
        return v.kernel(value, f"{where}: RT_KERNEL_VERSION")
    except v.ValidationError:
        log.info(
            "%s: RT_KERNEL_VERSION %s is not a kernel: no RT kernel in this toolkit", where, v.show(value)
        )
        return ""


def parse_toolkits(xcoms: Iterable[Any]) -> tuple[list[Toolkit], list[RejectedToolkit]]:
    """Every release's toolkits; a malformed one rejects its own release only, named with the reason."""
    toolkits: list[Toolkit] = []
    rejected: list[RejectedToolkit] = []
    for xcom in xcoms:
        try:
            toolkits += release_toolkits(xcom)
        except v.ValidationError as exc:
            data = xcom if isinstance(xcom, Mapping) else {}
            rejected.append(RejectedToolkit(str(data.get("version")), str(data.get("arch")), str(exc)))
    return toolkits, rejected


def with_64k_kernels(
    toolkits: Iterable[Toolkit], *, build_64k: bool, gpu_kernels: Iterable[str]
) -> list[Toolkit]:
    """The toolkits plus, for each aarch64 one, its 64k-page kernel when the cluster needs it.

    The DTK's KERNEL_VERSION never carries ``+64k``, but an aarch64 DTK also holds kernel-64k-devel of
    the same version (openshift/driver-toolkit Dockerfile, "64k-pages kernel packages for aarch64").
    A 64k node runs ``<kernel>+64k`` (NFD label ``..._64k``) and the operator pulls ``..aarch64_64k``
    images for it, which NVIDIA's Makefile makes with BUILD_ARCH=aarch64+64k. Planned when a GPU node
    runs a 64k kernel, or when ``build_64k`` (setting PRECOMPILED_DRIVERS_BUILD_64K) asks for it, e.g.
    for look-ahead releases before the first 64k node joins.
    """
    toolkits = list(toolkits)
    if not build_64k and not any(naming.kernel_variant(k) == "64k" for k in gpu_kernels):
        return toolkits
    extra = [
        Toolkit(**{**asdict(t), "kernel": f"{t.kernel}+64k"})
        for t in toolkits
        if t.arch == "aarch64" and naming.kernel_variant(t.kernel) == ""
    ]
    return toolkits + extra


def plan_builds(
    config: RunConfig,
    settings: Settings,
    toolkits: Iterable[Toolkit],
    operator_version: str,
    *,
    cluster_os_tags: Iterable[str] = (),
    kernel_module_type: str = "auto",
    gpu_kernels: Iterable[str] = (),
) -> list[BuildSpec]:
    """One build per (driver version, kernel, build arch); releases sharing a kernel share the image.

    Each image is built with its release's own OS tag and published under every other tag the operator
    may look for: the GPU nodes' tags now (``cluster_os_tags``) and those of every release planned.
    ``settings`` gives the staging repository and whether 64k images are built ahead.
    ``kernel_module_type`` is the ClusterPolicy's ``spec.driver.kernelModuleType``. ``gpu_kernels`` are
    the kernels GPU nodes run now: a 64k one adds 64k builds for aarch64 toolkits.
    """
    toolkits = with_64k_kernels(toolkits, build_64k=settings.build_64k, gpu_kernels=gpu_kernels)
    # A release with two OS streams (driver-toolkit and driver-toolkit-10) has a tag per stream.
    release_tags = {
        (t.version, t.rhel_version): os_tag.release_os_tag(t.version, t.rhel_version, operator_version)
        for t in toolkits
    }
    all_tags = os_tag.tags_to_publish(cluster_os_tags, release_tags.values())
    by_key: dict[tuple[str, str, str], BuildSpec] = {}
    for toolkit in toolkits:
        tag_os = release_tags[(toolkit.version, toolkit.rhel_version)]
        arch = naming.build_arch(toolkit.arch, toolkit.kernel)
        rhel_major = int(toolkit.rhel_version.split(".")[0])
        make_kernel = naming.make_kernel_version(toolkit.kernel)
        for driver in config.driver_versions:
            key = (driver, make_kernel, arch)
            known = by_key.get(key)
            if known:
                by_key[key] = _with_release(known, toolkit.version)
                continue
            tag = naming.build_tag(driver, make_kernel, tag_os, arch, rhel_major=rhel_major)
            by_key[key] = BuildSpec(
                driver_version=driver,
                kernel=toolkit.kernel,
                rhel_version=toolkit.rhel_version,
                os_tag=tag_os,
                os_tag_rule=naming.os_tag_rule(operator_version),
                build_arch=arch,
                build_dir=naming.build_dir(toolkit.rhel_version),
                tag=tag,
                image=naming.image_reference(config.repository, config.image_name, tag),
                staging_image=naming.image_reference(settings.staging_repository, config.image_name, tag),
                dtk_image=toolkit.dtk_image,
                releases=(toolkit.version,),
                warning=naming.tag_mismatch(driver, toolkit.kernel, tag_os, arch, rhel_major=rhel_major)
                or "",
                kernel_module_type=kernel_module.resolve(kernel_module_type, driver),
                aliases=tuple(
                    naming.image_reference(
                        config.repository,
                        config.image_name,
                        naming.build_tag(driver, make_kernel, t, arch, rhel_major=rhel_major),
                    )
                    for t in all_tags
                    if t != tag_os
                ),
            )
    return sorted(by_key.values(), key=lambda b: (b.kernel, b.driver_version))


def alias_lines(builds: Iterable[BuildSpec]) -> str:
    """publish_os_tags' ALIASES input: ``<image> <alias>`` per line, the alias to hold the image's digest."""
    return "\n".join(f"{b.image} {alias}" for b in builds for alias in b.aliases)


def builds_to_run(builds: Sequence[BuildSpec], published: Mapping[str, str], force: bool) -> list[BuildSpec]:
    """Drop images whose tag already exists in the target repository, unless forced."""
    return [b for b in builds if force or not published.get(b.image)]


def _with_release(build: BuildSpec, release: str) -> BuildSpec:
    releases = tuple(sorted({*build.releases, release}, key=ocp_version.sort_key))
    return BuildSpec(**{**asdict(build), "releases": releases})
