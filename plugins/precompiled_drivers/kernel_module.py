"""Which kernel modules a precompiled image must carry: open or proprietary (pure).

NVIDIA's precompiled entrypoint has no run-time switch, so the image decides: the build passes
``DRIVER_OPEN`` to NVIDIA/gpu-driver-container ``rhel{9,10}/precompiled/Makefile`` (default ``false``,
proprietary). The ClusterPolicy says what the cluster wants in ``spec.driver.kernelModuleType``
(``auto`` by default in NVIDIA's CRD, ``open``, ``proprietary``); for ``auto`` the compiled driver
container asks nvidia-installer and falls back to the driver branch, open from 560 on
(``rhel9/nvidia-driver`` ``_resolve_kernel_type_from_driver_branch``). Without a GPU to ask at build
time the branch rule is the one we can apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

OPEN = "open"
PROPRIETARY = "proprietary"
TYPES = ("auto", OPEN, PROPRIETARY)
OPEN_FROM_BRANCH = 560
# The image label that records the module type, so a tag built with the other type is not reused.
LABEL = "io.github.precompiled-drivers.kernel-module-type"


class ModuleTypeError(ValueError):
    """spec.driver.kernelModuleType holds a value NVIDIA's CRD does not allow."""


def requested(policy: Mapping[str, Any] | None) -> str:
    """``spec.driver.kernelModuleType`` of a ClusterPolicy, ``auto`` when unset (the CRD's default)."""
    driver = ((policy or {}).get("spec") or {}).get("driver") or {}
    value = driver.get("kernelModuleType") or "auto"
    if value not in TYPES:
        raise ModuleTypeError(
            f"spec.driver.kernelModuleType is {value!r}; NVIDIA's CRD allows {', '.join(TYPES)}: "
            "fix the ClusterPolicy"
        )
    return str(value)


def resolve(kernel_module_type: str, driver_version: str) -> str:
    """``open`` or ``proprietary`` for one driver version: ``auto`` is open from the 560 branch on."""
    if kernel_module_type in (OPEN, PROPRIETARY):
        return kernel_module_type
    if kernel_module_type != "auto":
        raise ModuleTypeError(f"kernel module type {kernel_module_type!r} is not one of {', '.join(TYPES)}")
    branch = int(driver_version.split(".")[0])
    return OPEN if branch >= OPEN_FROM_BRANCH else PROPRIETARY


def driver_open(module_type: str) -> str:
    """The Makefile's ``DRIVER_OPEN`` value for a resolved module type."""
    return "true" if module_type == OPEN else "false"
