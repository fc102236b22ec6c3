"""Planning rules: which releases to resolve, and which driver images to build for them.

Pure functions from validated inputs to plain data; the DAG turns their output into mapped pods.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from precompiled_drivers import kernel_module, naming, os_tag
from precompiled_drivers import validation as v
from precompiled_drivers.config import RunConfig, Target

_RHEL_VERSION = re.compile(r"[0-9]{1,2}\.[0-9]{1,2}")


@dataclass(frozen=True)
class Toolkit:
    """What a release's Driver Toolkit image says about its kernel (``/etc/driver-toolkit-release.json``)."""

    version: str
    arch: str
    dtk_image: str
    kernel: str
    rt_kernel: str
    rhel_version: str


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
    """Form/event targets, plus the cluster's own release and its upgrade targets when asked for."""
    targets = list(config.targets)
    if config.include_cluster_release and cluster_version:
        targets += [Target(cluster_version, arch, "cluster") for arch in config.arches]
    if config.upgrade_lookahead:
        targets += [Target(ver, arch, "upgrade") for ver in upgrade_versions for arch in config.arches]
    seen: set[tuple[str, str]] = set()
    unique = []
    for target in targets:
        if target.key not in seen:
            seen.add(target.key)
            unique.append(target)
    if not unique:
        raise v.ValidationError(
            "ocp_versions",
            [],
            "at least one release: list one in the form, or keep "
            "'Include the cluster's release' on for a cluster that reports its version",
        )
    return sorted(unique, key=lambda t: (v.ocp_sort_key(t.version), t.arch))


def release_image(repository: str, target: Target) -> str:
    """The release payload image, e.g. quay.io/openshift-release-dev/ocp-release:4.18.12-x86_64."""
    return f"{repository}:{target.version}-{target.arch}"


def parse_toolkit(xcom: Mapping[str, Any]) -> Toolkit:
    """Validate what inspect_driver_toolkit read; the DTK file is data from an image, so check it too."""
    where = f"driver toolkit of {xcom.get('version')}-{xcom.get('arch')}"
    release = xcom.get("toolkit")
    if not isinstance(release, Mapping):
        raise v.ValidationError(f"{where}: /etc/driver-toolkit-release.json", release, "a JSON object")
    rhel = str(release.get("RHEL_VERSION", ""))
    # Exactly major.minor: the naming rules (OS labels, build directory) need both parts.
    if not _RHEL_VERSION.fullmatch(rhel):
        raise v.ValidationError(f"{where}: RHEL_VERSION", rhel, "a RHEL version like 9.4")
    rt_kernel = release.get("RT_KERNEL_VERSION") or ""
    if rt_kernel:
        v.kernel(rt_kernel, f"{where}: RT_KERNEL_VERSION")
    return Toolkit(
        version=v.ocp_version(xcom.get("version"), f"{where}: version"),
        arch=v.arch(xcom.get("arch"), f"{where}: arch"),
        dtk_image=v.image_ref(xcom.get("dtk_image"), f"{where}: dtk_image"),
        kernel=v.kernel(release.get("KERNEL_VERSION"), f"{where}: KERNEL_VERSION"),
        rt_kernel=rt_kernel,
        rhel_version=rhel,
    )


def plan_builds(
    config: RunConfig,
    toolkits: Iterable[Toolkit],
    operator_version: str,
    *,
    cluster_os_tags: Iterable[str] = (),
    kernel_module_type: str = "auto",
) -> list[BuildSpec]:
    """One build per (driver version, kernel, build arch); releases sharing a kernel share the image.

    Each image is built with its release's own OS tag and published under every other tag the operator
    may look for: the GPU nodes' tags now (``cluster_os_tags``) and those of every release planned.
    ``kernel_module_type`` is the ClusterPolicy's ``spec.driver.kernelModuleType``.
    """
    toolkits = list(toolkits)
    staging_repository = str(config.settings["staging_repository"])
    release_tags = {
        t.version: os_tag.release_os_tag(t.version, t.rhel_version, operator_version) for t in toolkits
    }
    all_tags = os_tag.tags_to_publish(cluster_os_tags, release_tags.values())
    by_key: dict[tuple[str, str, str], BuildSpec] = {}
    for toolkit in toolkits:
        tag_os = release_tags[toolkit.version]
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
            image_base = f"{config.repository}/{config.image_name}"
            by_key[key] = BuildSpec(
                driver_version=driver,
                kernel=toolkit.kernel,
                rhel_version=toolkit.rhel_version,
                os_tag=tag_os,
                os_tag_rule=naming.os_tag_rule(operator_version),
                build_arch=arch,
                build_dir=naming.build_dir(toolkit.rhel_version),
                tag=tag,
                image=f"{image_base}:{tag}",
                staging_image=f"{staging_repository}/{config.image_name}:{tag}",
                dtk_image=toolkit.dtk_image,
                releases=(toolkit.version,),
                warning=naming.tag_mismatch(driver, toolkit.kernel, tag_os, arch, rhel_major=rhel_major)
                or "",
                kernel_module_type=kernel_module.resolve(kernel_module_type, driver),
                aliases=tuple(
                    f"{image_base}:{naming.build_tag(driver, make_kernel, t, arch, rhel_major=rhel_major)}"
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
    releases = tuple(sorted({*build.releases, release}, key=v.ocp_sort_key))
    return BuildSpec(**{**asdict(build), "releases": releases})
