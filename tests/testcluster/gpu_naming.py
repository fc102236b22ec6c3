"""The GPU Operator's own naming rules, transcribed from its behaviour (NVIDIA/gpu-operator).

Written independently of the product's naming module on purpose and never importing it: if the
product computes a different tag or name, its pods here never get their image.
"""

from __future__ import annotations

import re

# The operator strips the arch (incl. 64k-page variants) before using a kernel in an object name.
_ARCH = re.compile(r"(?:x86_64|aarch64)(?:[_+]64k)?")
_MAJOR_ONLY_FROM = (26, 7)
_MAJOR_ONLY_OS = ("rhel", "rocky", "ol")
_ROCKY_RHEL10_FROM = (26, 3)
# apimachinery IsDNS1123Subdomain: what the API server accepts as a DaemonSet name.
_DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def sanitize_kernel(kernel: str) -> str:
    """``5.14.0-427.37.1.el9_4.x86_64`` -> ``5.14.0-427.37.1.el9.4`` (arch out, ``_``->``.``, lower)."""
    return _ARCH.sub("", kernel).replace("_", ".").rstrip(".").lower()


def _version_tuple(operator_version: str) -> tuple[int, ...]:
    numbers = re.findall(r"\d+", operator_version)
    return tuple(int(n) for n in numbers[:3]) if numbers else (999,)


def os_tag(operator_version: str, os_id: str, version_id: str) -> str:
    """OS part of the image tag, by operator release; raises ValueError where the operator errors out.

    v26.7 state_manager.go getGPUNodeOSInfo: major only for ol/rocky/rhel. v26.3 getGPUNodeOSTag:
    strconv.Atoi of the major for every OS (error on a non-number), major only for rocky and rhel >= 10.
    Older (object_controls.go kernelFullVersion): ID+VERSION_ID as is.
    """
    release = _version_tuple(operator_version)
    major = version_id.split(".")[0]
    if release >= _MAJOR_ONLY_FROM:
        return f"{os_id}{major}" if os_id in _MAJOR_ONLY_OS else f"{os_id}{version_id}"
    if release >= _ROCKY_RHEL10_FROM:
        if not re.fullmatch(r"[+-]?[0-9]+", major):
            raise ValueError(
                f'error processing OS major version {major}: strconv.Atoi: parsing "{major}": invalid syntax'
            )
        if os_id == "rocky" or (os_id == "rhel" and int(major) >= 10):
            return f"{os_id}{major}"
    return f"{os_id}{version_id}"


def valid_object_name(name: str) -> bool:
    """Whether the API server accepts ``name`` for a DaemonSet (DNS-1123 subdomain, at most 253)."""
    return len(name) <= 253 and _DNS1123.fullmatch(name) is not None


def daemonset_name(kernel: str, os_id: str, version_id: str) -> str:
    """``nvidia-driver-daemonset-<sanitized kernel>-<os id><version id>``."""
    return f"nvidia-driver-daemonset-{sanitize_kernel(kernel)}-{os_id}{version_id}"


def precompiled_image(driver: dict, kernel: str, tag_os: str) -> str:
    """``<repository>/<image>:<version>-<kernel full>-<os tag>``; by digest: ``...@sha256:...`` as is."""
    base = f"{driver.get('repository', '')}/{driver.get('image', '')}"
    version = str(driver.get("version", ""))
    if version.startswith("sha256:"):
        return f"{base}@{version}"
    return f"{base}:{version}-{kernel}-{tag_os}"


def compiled_image(driver: dict, tag_os: str) -> str:
    """The non-precompiled driver image: ``<repository>/<image>:<version>-<os tag>``."""
    base = f"{driver.get('repository', '')}/{driver.get('image', '')}"
    version = str(driver.get("version", ""))
    if version.startswith("sha256:"):
        return f"{base}@{version}"
    return f"{base}:{version}-{tag_os}"
