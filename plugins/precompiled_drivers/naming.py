"""Naming rules shared with NVIDIA's GPU Operator and its precompiled-driver Makefiles (pure).

Every string here must match upstream character for character: if our tag differs from the one the
operator derives from a node's labels, the operator pulls an image that does not exist and the node
loses its driver. Each rule cites the upstream file it mirrors.
"""

from __future__ import annotations

import enum
import re

from packaging.version import InvalidVersion, Version

from precompiled_drivers import grammar as g
from precompiled_drivers import ocp_version as ocp_version_grammar

__all__ = [
    "OsTagRule",
    "build_arch",
    "build_dir",
    "build_tag",
    "daemonset_name",
    "image_reference",
    "kernel_arch",
    "kernel_variant",
    "machine_arch",
    "make_kernel_version",
    "nfd_kernel_label",
    "operator_image",
    "operator_tag",
    "os_tag",
    "os_tag_rule",
    "os_tag_rule_for",
    "release_os_labels",
    "sanitize_kernel",
    "tag_mismatch",
]

DAEMONSET_PREFIX = "nvidia-driver-daemonset"
BUILD_ARCHES = (*g.ARCHES, "aarch64+64k")

# A full kernel as uname/DTK print it (`...el9_4.aarch64+64k`) or as NFD labels it (`..._64k`).
_KERNEL_RE = re.compile(g.KERNEL_PARTS, re.ASCII)
# kubernetes-sigs/node-feature-discovery source/kernel/kernel.go: characters a label value
# cannot hold become '_', then leading/trailing '-_.' are trimmed.
_NFD_FORBIDDEN = re.compile(r"[^-A-Za-z0-9_.]")
# NVIDIA/gpu-operator controllers/object_controls.go getSanitizedKernelVersion: this exact regex.
_OPERATOR_ARCH_RE = re.compile(r"x86_64(?:_64k)?|aarch64(?:_64k)?")


# --------------------------------------------------------------------------- kernels


def _parse_kernel(kernel: str) -> re.Match[str]:
    match = _KERNEL_RE.fullmatch(kernel) if isinstance(kernel, str) else None
    if match is None:
        raise ValueError(f"kernel {kernel!r} is not {g.KERNEL.expected}")
    return match


def kernel_arch(kernel: str) -> str:
    """Return the CPU arch of a full kernel string: ``x86_64`` or ``aarch64`` (variant ignored)."""
    return _parse_kernel(kernel)["arch"]


def kernel_variant(kernel: str) -> str:
    """Return the kernel flavour suffix: ``""``, ``"64k"`` (aarch64 64k pages) or ``"rt"``."""
    return _parse_kernel(kernel)["variant"] or ""


def make_kernel_version(kernel: str) -> str:
    """The KERNEL_VERSION to pass to NVIDIA's rhel9/rhel10 Makefile for a node kernel.

    The Makefile appends BUILD_ARCH itself (``aarch64+64k`` -> ``.aarch64_64k``), so it must get
    the base kernel with arch and without the 64k suffix: ``...el9_4.aarch64`` (that is also what
    the DTK's KERNEL_VERSION holds).
    """
    match = _parse_kernel(kernel)
    return f"{match['base']}.{match['arch']}"


def nfd_kernel_label(kernel: str) -> str:
    """The value NFD puts in ``feature.node.kubernetes.io/kernel-version.full`` for ``uname -r``.

    kubernetes-sigs/node-feature-discovery source/kernel/kernel.go: ``[^-A-Za-z0-9_.]`` -> ``_``,
    then trim ``-_.``; so ``...aarch64+64k`` is labelled ``...aarch64_64k``.
    """
    return _NFD_FORBIDDEN.sub("_", kernel).strip("-_.")


def sanitize_kernel(kernel: str) -> str:
    """The kernel part of a precompiled driver DaemonSet name, exactly as the operator computes it.

    ``5.14.0-427.37.1.el9_4.x86_64`` -> ``5.14.0-427.37.1.el9.4``. A ``+64k`` kernel is first
    turned into its NFD label form (the operator only ever sees label values).
    """
    label = nfd_kernel_label(kernel)
    # NVIDIA/gpu-operator controllers/object_controls.go getSanitizedKernelVersion (also
    # internal/state/driver.go): drop x86_64|aarch64 (+_64k), '_' -> '.', trim one '.', lower.
    sanitized = _OPERATOR_ARCH_RE.sub("", label).replace("_", ".")
    sanitized = sanitized.removesuffix(".")
    return sanitized.lower()


def daemonset_name(kernel: str, os_id: str, os_version_id: str) -> str:
    """The driver DaemonSet the operator creates for a kernel in precompiled mode.

    NVIDIA/gpu-operator controllers/object_controls.go transformPrecompiledDriverDaemonset:
    ``nvidia-driver-daemonset-<sanitized kernel>-<ID><VERSION_ID>``; the OS part comes from
    getKernelVersionsMap (raw ID+VERSION_ID, not the OS tag rule), e.g. ``...-el9.4-rhcos4.16``.
    Raises ValueError when the result is not a valid object name (the operator would fail too).
    """
    name = f"{DAEMONSET_PREFIX}-{sanitize_kernel(kernel)}-{os_id}{os_version_id}"
    if not g.DNS_SUBDOMAIN.matches(name):
        raise ValueError(
            f"DaemonSet name {name!r} for kernel {kernel!r} is not a valid DNS-1123 subdomain; "
            "the GPU Operator cannot create it (RT kernels sanitize to '..')"
        )
    return name


# --------------------------------------------------------------------------- OS tag


class OsTagRule(enum.Enum):
    """How the installed GPU Operator turns node os_release labels into the image OS tag."""

    # NVIDIA/gpu-operator controllers/object_controls.go kernelFullVersion: ID+VERSION_ID.
    AS_IS = "ID+VERSION_ID (operator < v26.3)"
    # NVIDIA/gpu-operator controllers/state_manager.go getGPUNodeOSTag (PR #2044):
    # "If the OS is RockyLinux or RHEL 10 & above, we will omit the minor version".
    ROCKY_RHEL10_MAJOR = "ID+VERSION_ID, major only for rocky and rhel>=10 (v26.3 <= operator < v26.7)"
    # NVIDIA/gpu-operator controllers/state_manager.go getGPUNodeOSInfo (PR #2497, issue #2471):
    # case "ol", "rocky", "rhel": strings.Split(osVersion, ".")[0].
    MAJOR = "ID+major VERSION_ID for rhel/rocky/ol (operator >= v26.7)"

    @property
    def label(self) -> str:
        """Human name of the rule, for logs and the run report."""
        return self.value


def _operator_release(operator_version: str) -> tuple[int, int]:
    text = operator_version.strip() if isinstance(operator_version, str) else ""
    try:
        version = Version(text.removeprefix("v"))
    except InvalidVersion:
        version = None
    if not text or version is None:
        raise ValueError(
            f"operator version {operator_version!r} is not like v26.7.0, 26.7.0 or v25.10.1 "
            "(the OS tag rule depends on it)"
        )
    # Rules change with a minor release; a v26.7.0-rc build already carries the v26.7 rule.
    release = (*version.release, 0)
    return release[0], release[1]


def os_tag_rule_for(operator_version: str) -> OsTagRule:
    """The OsTagRule in force for an operator version (``v26.7.0``, ``26.7.0``, ``v25.10.1``)."""
    release = _operator_release(operator_version)
    if release >= (26, 7):
        return OsTagRule.MAJOR
    if release >= (26, 3):
        return OsTagRule.ROCKY_RHEL10_MAJOR
    return OsTagRule.AS_IS


def os_tag_rule(operator_version: str) -> str:
    """Human name of the OS tag rule the given operator version applies (say it in reports)."""
    return os_tag_rule_for(operator_version).label


def os_tag(os_id: str, os_version_id: str, operator_version: str) -> str:
    """The OS tag the installed operator appends to the driver image for a node.

    ``os_id``/``os_version_id`` are the node's NFD labels ``system-os_release.ID`` and
    ``.VERSION_ID`` (``rhcos``/``4.18`` up to OpenShift 4.18, ``rhel``/``9.6`` from 4.19).
    Raises ValueError where the operator itself refuses the labels (v26.3.x and a non-numeric major).
    """
    if not os_id or not os_version_id:
        raise ValueError(f"os_id {os_id!r} and os_version_id {os_version_id!r} must both be set")
    rule = os_tag_rule_for(operator_version)
    major = os_version_id.split(".")[0]
    if rule is OsTagRule.MAJOR and os_id in ("rhel", "rocky", "ol"):
        return f"{os_id}{major}"
    if rule is OsTagRule.ROCKY_RHEL10_MAJOR:
        # v26.3 getGPUNodeOSTag: strconv.Atoi(major) for every OS, before the rocky/rhel check; on a
        # non-number the operator stops reconciling ("error processing OS major version").
        if not major.isascii() or not major.isdigit():
            raise ValueError(
                f"the GPU Operator {operator_version} refuses VERSION_ID {os_version_id!r}: "
                f"error processing OS major version {major!r} (it must start with a number)"
            )
        if os_id == "rocky" or (os_id == "rhel" and int(major) >= 10):
            return f"{os_id}{major}"
    return f"{os_id}{os_version_id}"


def release_os_labels(ocp_version: str, rhel_version: str) -> tuple[str, str]:
    """The ``(ID, VERSION_ID)`` a node of an OpenShift release reports, to build before an upgrade.

    RHCOS reports ``rhcos``/``4.y`` up to 4.18 and ``rhel``/``<RHEL x.y>`` from 4.19 (openshift/os
    moved os-release to RHEL's); ``rhel_version`` is the DTK's RHEL_VERSION, e.g. ``9.6``.
    """
    try:
        ocp = ocp_version_grammar.parse(ocp_version)
    except ValueError as exc:
        raise ValueError(f"OpenShift version {exc}") from None
    rhel_major, rhel_minor = _rhel(rhel_version)
    major, minor = ocp.major, ocp.minor
    if (major, minor) <= (4, 18):
        return "rhcos", f"{major}.{minor}"
    return "rhel", f"{rhel_major}.{rhel_minor}"


def _rhel(rhel_version: str) -> tuple[int, int]:
    """``9.6`` -> ``(9, 6)``; ValueError when it is not a RHEL x.y."""
    if not g.RHEL_VERSION.matches(rhel_version):
        raise ValueError(f"RHEL version {rhel_version!r} is not {g.RHEL_VERSION.expected}")
    major, minor = rhel_version.split(".")
    return int(major), int(minor)


# --------------------------------------------------------------------------- image references


def image_reference(repository: str, image: str, tag: str) -> str:
    """``repository/image:tag``: how the operator (resolveDriverTag) and our pushes spell an image."""
    return f"{repository.rstrip('/')}/{image}:{tag}"


def operator_tag(version: str, kernel: str, os_tag: str) -> str:
    """The tag the operator looks for on a node: ``<version>-<kernel-version.full label>-<os tag>``."""
    return f"{version}-{nfd_kernel_label(kernel)}-{os_tag}"


def operator_image(repository: str, image: str, version: str, kernel: str, os_tag: str) -> str:
    """The full reference the operator pulls for a node: ``repository/image:version-kernel-ostag``.

    NVIDIA/gpu-operator controllers/object_controls.go resolveDriverTag: precompiled images are
    ``Repository + "/" + Image + ":" + Version + "-" + <kernel-version.full label>`` then
    ``"-" + osTag``. ``kernel`` may be given as uname prints it; the label form is used.
    """
    if not (repository and image and version and os_tag):
        raise ValueError("repository, image, version and os_tag must all be set")
    if version.startswith("sha256:"):
        # The operator would build 'repo/image:sha256:...-<kernel>', not a valid reference.
        raise ValueError("precompiled mode needs a driver version tag, not a digest")
    return image_reference(repository, image, operator_tag(version, kernel, os_tag))


def build_dir(rhel_version: str) -> str:
    """NVIDIA/gpu-driver-container directory whose Makefile builds for a RHEL ``x.y``."""
    major = _rhel(rhel_version)[0] if g.RHEL_VERSION.matches(rhel_version) else None
    # NVIDIA/gpu-driver-container rhel8/precompiled, rhel9/precompiled, rhel10/precompiled.
    if major not in (8, 9, 10):
        raise ValueError(f"RHEL version {rhel_version!r}: no NVIDIA precompiled recipe (8.x, 9.x, 10.x)")
    return f"rhel{major}/precompiled"


def build_arch(arch: str, kernel: str) -> str:
    """The Makefile BUILD_ARCH for a node kernel: ``x86_64``, ``aarch64`` or ``aarch64+64k``.

    ``arch`` accepts ``amd64``/``arm64`` too. Raises ValueError when the kernel's own arch
    disagrees (cross builds are not supported by NVIDIA's recipe).
    """
    canonical = g.canonical_arch(arch)
    if canonical is None:
        raise ValueError(f"arch {arch!r} is not {g.ARCH_EXPECTED}")
    arch = canonical
    match = _parse_kernel(kernel)
    if match["arch"] != arch:
        raise ValueError(f"kernel {kernel!r} is {match['arch']}, not {arch}")
    # NVIDIA/gpu-driver-container rhel9/precompiled/Makefile: BUILD_ARCH x86_64|aarch64|aarch64+64k.
    return "aarch64+64k" if match["variant"] == "64k" else arch


def machine_arch(build_arch: str) -> str:
    """The node architecture a BUILD_ARCH runs on: ``aarch64+64k`` -> ``aarch64`` (the page size is the
    kernel's, not the machine's)."""
    return build_arch.split("+", 1)[0]


# build_tag/tag_mismatch take a parameter named build_arch (the API asks for it), which hides
# the function inside them.
_build_arch_for = build_arch


def build_tag(driver_version: str, kernel: str, os_tag: str, build_arch: str, *, rhel_major: int = 9) -> str:
    """The image tag NVIDIA's ``rhel{8,9,10}/precompiled`` Makefile gives for these variables.

    ``kernel`` is the KERNEL_VERSION passed to make (use make_kernel_version()). This emulates
    the Makefile's sed expressions literally, quirks included, so tag_mismatch() can catch them.
    """
    if rhel_major == 8:
        # NVIDIA/gpu-driver-container rhel8/precompiled/Makefile:
        #   --tag ...:${DRIVER_VERSION}-${KERNEL_VERSION}-${OS_TAG}  (kernel used verbatim)
        return f"{driver_version}-{kernel}-{os_tag}"
    if rhel_major not in (9, 10):
        raise ValueError(f"no NVIDIA precompiled Makefile for RHEL {rhel_major}")
    if build_arch not in BUILD_ARCHES:
        raise ValueError(f"BUILD_ARCH {build_arch!r} is not one of {', '.join(BUILD_ARCHES)}")
    # NVIDIA/gpu-driver-container rhel9|rhel10/precompiled/Makefile:
    #   TARGET_ARCH = BUILD_ARCH | sed "s/+64k//"
    #   KERNEL_VERSION_NOARCH = KERNEL_VERSION | sed "s/\.${TARGET_ARCH}//"   (first match only)
    #   KERNEL_VERSION_TAG = "${KERNEL_VERSION_NOARCH}.${BUILD_ARCH}" | sed "s/+/_/"   (first '+')
    target_arch = build_arch.replace("+64k", "", 1)
    noarch = kernel.replace(f".{target_arch}", "", 1)
    kernel_tag = f"{noarch}.{build_arch}".replace("+", "_", 1)
    return f"{driver_version}-{kernel_tag}-{os_tag}"


def tag_mismatch(
    driver_version: str,
    kernel: str,
    os_tag: str,
    build_arch: str,
    *,
    rhel_major: int = 9,
) -> str | None:
    """None when the Makefile's tag is the one the operator looks for, else why not and what to do.

    ``kernel`` is the node kernel (uname or NFD label form); the operator looks for
    ``<version>-<kernel label>-<os_tag>``. The Makefile runs with KERNEL_VERSION =
    make_kernel_version(kernel), as the build step passes it, and BUILD_ARCH = ``build_arch``.
    """
    built = build_tag(driver_version, make_kernel_version(kernel), os_tag, build_arch, rhel_major=rhel_major)
    wanted = operator_tag(driver_version, kernel, os_tag)
    if built == wanted:
        return None
    if kernel_variant(kernel) == "rt":
        advice = (
            "NVIDIA's precompiled recipe has no RT build: build for the RT kernel another way, or "
            "keep RT nodes on the operator's compiled driver"
        )
    else:
        expected_arch = _build_arch_for(kernel_arch(kernel), kernel)
        advice = (
            f"run make with KERNEL_VERSION={make_kernel_version(kernel)} "
            f"BUILD_ARCH={expected_arch}, or push the built image also as '{wanted}'"
        )
    return (
        f"Makefile would tag '{built}' but the GPU Operator looks for '{wanted}' on nodes with "
        f"kernel {nfd_kernel_label(kernel)}: {advice}."
    )
