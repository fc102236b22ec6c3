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


def sanitize_kernel(kernel: str) -> str:
    """``5.14.0-427.37.1.el9_4.x86_64`` -> ``5.14.0-427.37.1.el9.4`` (arch out, ``_``->``.``, lower)."""
    return _ARCH.sub("", kernel).replace("_", ".").rstrip(".").lower()


def _version_tuple(operator_version: str) -> tuple[int, ...]:
    numbers = re.findall(r"\d+", operator_version)
    return tuple(int(n) for n in numbers[:3]) if numbers else (999,)


def os_tag(operator_version: str, os_id: str, version_id: str) -> str:
    """OS part of the image tag: ID+VERSION_ID as is; from v26.7 the major only for rhel/rocky/ol."""
    if _version_tuple(operator_version) >= _MAJOR_ONLY_FROM and os_id in _MAJOR_ONLY_OS:
        return f"{os_id}{version_id.split('.')[0]}"
    return f"{os_id}{version_id}"


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
