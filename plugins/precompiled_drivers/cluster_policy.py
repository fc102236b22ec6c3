"""JSON patches that switch a GPU Operator ClusterPolicy to precompiled drivers, guard them, and undo them.

Pure: no Airflow, no network. The pipeline's inspect step reads the ClusterPolicy; the functions here turn
what it read into RFC 6902 JSON patch documents that a pod applies with ``kubectl patch --type=json``.
Every patch starts with a ``test`` operation on the value read, so a concurrent change makes the API server
reject the whole patch (HTTP 422) instead of silently overwriting someone else's edit.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from precompiled_drivers import grammar as g

DRIVER_FIELDS = ("usePrecompiled", "repository", "image", "version")

DRIVER_PATH = "/spec/driver"

# The fields the operator joins into `<repository>/<image>:<version>-<kernel>-<os tag>`, with their shape
# (grammar.py). The CRD says `pattern: '[a-zA-Z0-9\-]+'` for the image, but Kubernetes (like JSON Schema)
# applies patterns unanchored, so the API server accepts `bad/name`: the whole value must match, and we
# enforce that ourselves.
_DRIVER_VALUES = (
    ("spec.driver.repository", g.REPOSITORY),
    ("spec.driver.image", g.IMAGE_NAME),
    ("spec.driver.version", g.DRIVER_VERSION),
)

_UNSET = "<unset>"
_REMOVED = "<removed>"


class PolicyError(ValueError):
    """A ClusterPolicy cannot be patched as asked; the message names the field and the fix."""


def driver_spec(policy: Mapping[str, Any]) -> dict[str, Any]:
    """Return a deep copy of ``spec.driver`` ({} when the policy has no driver section)."""
    driver = (policy.get("spec") or {}).get("driver")
    return copy.deepcopy(dict(driver)) if driver else {}


def has_driver_section(policy: Mapping[str, Any]) -> bool:
    """Whether ``spec.driver`` exists at all (the CRD requires it, but a test server may not enforce that)."""
    spec = policy.get("spec") or {}
    return isinstance(spec, Mapping) and "driver" in spec


def check_precompiled_compatible(policy: Mapping[str, Any]) -> None:
    """Raise PolicyError when the policy enables a component that precompiled drivers do not support.

    NVIDIA's precompiled driver images ship without the GPUDirect Storage (nvidia-fs) and GDRCopy kernel
    modules, and the operator refuses that combination.
    """
    spec = policy.get("spec") or {}
    problems = [
        f"spec.{key}.enabled is true: {what} is not supported with precompiled drivers; "
        f"set spec.{key}.enabled to false, or keep the compiled driver (usePrecompiled: false)"
        for key, what in (("gds", "GPUDirect Storage (GDS)"), ("gdrcopy", "GDRCopy"))
        if (spec.get(key) or {}).get("enabled") is True
    ]
    if problems:
        raise PolicyError("; ".join(problems))


def check_driver_values(*, repository: str, image: str, version: str) -> None:
    """Raise PolicyError naming the first driver field that the operator could not turn into an image ref."""
    for (field, grammar), value in zip(_DRIVER_VALUES, (repository, image, version), strict=True):
        if not grammar.matches(value):
            raise PolicyError(f"{field}: {value!r} is not valid; expected {grammar.expected}")


def _guard(value: Mapping[str, Any], path: str = DRIVER_PATH) -> dict[str, Any]:
    return {"op": "test", "path": path, "value": copy.deepcopy(dict(value))}


def enable_patch(
    previous_driver: Mapping[str, Any] | None, *, repository: str, image: str, version: str
) -> list[dict[str, Any]]:
    """JSON patch that turns on precompiled drivers with the given repository/image/version.

    ``previous_driver`` is ``spec.driver`` as read by the inspect step. The first op tests that the whole
    section is still exactly that value (any concurrent edit of the driver section fails the patch); then one
    add/replace op per field of DRIVER_FIELDS. Pass None when the policy had no driver section at all: JSON
    patch cannot test for absence, so the patch is a single ``add /spec/driver`` (the CRD requires
    ``spec.driver``, so on a real API server this case does not arise).
    """
    check_driver_values(repository=repository, image=image, version=version)
    wanted: dict[str, Any] = {
        "usePrecompiled": True,
        "repository": repository,
        "image": image,
        "version": version,
    }
    if previous_driver is None:
        return [{"op": "add", "path": DRIVER_PATH, "value": wanted}]
    ops = [_guard(previous_driver)]
    for field in DRIVER_FIELDS:
        op = "replace" if field in previous_driver else "add"
        ops.append({"op": op, "path": f"{DRIVER_PATH}/{field}", "value": wanted[field]})
    return ops


def plan_enable(
    policy: Mapping[str, Any], *, repository: str, image: str, version: str
) -> list[dict[str, Any]]:
    """Check the policy can run precompiled drivers and return the guarded enable patch for it."""
    check_precompiled_compatible(policy)
    previous = driver_spec(policy) if has_driver_section(policy) else None
    return enable_patch(previous, repository=repository, image=image, version=version)


def disable_patch(current_driver: Mapping[str, Any]) -> list[dict[str, Any]]:
    """JSON patch that disables precompiled drivers the way NVIDIA documents it.

    Guarded by a test of the whole current section, sets ``usePrecompiled: false`` and removes
    version/image/repository (only those present: removing a missing member fails a JSON patch).
    """
    op = "replace" if "usePrecompiled" in current_driver else "add"
    ops = [_guard(current_driver), {"op": op, "path": f"{DRIVER_PATH}/usePrecompiled", "value": False}]
    ops += [
        {"op": "remove", "path": f"{DRIVER_PATH}/{field}"}
        for field in ("version", "image", "repository")
        if field in current_driver
    ]
    return ops


def rollback_patch(
    previous_driver: Mapping[str, Any] | None, applied_driver: Mapping[str, Any], path: str = DRIVER_PATH
) -> list[dict[str, Any]]:
    """JSON patch that undoes our enable patch.

    ``applied_driver`` is ``spec.driver`` as our patch left it: the test op makes the rollback fail rather
    than clobber an edit someone made after us. With the previous section known, it is put back whole (every
    field, in its original order); when it is unknown (None), fall back to ``disable_patch``. ``path`` is
    where the section lives (``/spec`` for an NVIDIADriver, whose whole spec is the driver).
    """
    if previous_driver is None:
        return disable_patch(applied_driver)
    return [
        _guard(applied_driver, path),
        {"op": "replace", "path": path, "value": copy.deepcopy(dict(previous_driver))},
    ]


def apply_patch(policy: Mapping[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply ``ops`` to a copy of ``policy`` the way the API server would (for dry-run previews and tests).

    Raises PolicyError when a test op fails (the policy changed since it was read) or an op's path is wrong.
    """
    # Imported here, not at module level: tasks need jsonpatch, parsing the DAG does not.
    import jsonpatch
    import jsonpointer

    try:
        result = jsonpatch.apply_patch(copy.deepcopy(dict(policy)), ops)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise PolicyError(
            f"guard failed: the ClusterPolicy changed since it was read ({exc}); nothing was changed, "
            "re-run the pipeline so it reads the current policy"
        ) from exc
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        raise PolicyError(f"the JSON patch does not apply to this ClusterPolicy: {exc}") from exc
    # jsonpatch may share op values with the result; hand back an independent document.
    return copy.deepcopy(result)


_MISSING = object()


def _show(value: Any) -> str:
    return json.dumps(value, separators=(",", ":")) if value is not _MISSING else _UNSET


def describe_patch(ops: list[dict[str, Any]]) -> str:
    """One line per changed driver field, ``spec.driver.<field>: old -> new``, plus the guard in use."""
    import jsonpatch  # here, not at module level: parsing the DAG does not need it
    import jsonpointer

    guard = next((op for op in ops if op.get("op") == "test" and op.get("path") == DRIVER_PATH), None)
    before = dict(guard["value"]) if guard else {}
    doc = {"spec": {"driver": before}} if guard else {"spec": {}}
    try:
        after = jsonpatch.apply_patch(doc, ops)["spec"].get("driver", {})
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        return f"unreadable patch ({exc}): {json.dumps(ops)}"
    lines = [
        f"spec.driver.{key}: {_show(before.get(key, _MISSING))} -> "
        + (_show(after[key]) if key in after else _REMOVED)
        for key in list(before) + [k for k in after if k not in before]
        if before.get(key, _MISSING) != after.get(key, _MISSING)
    ]
    if not lines:
        lines.append("no change to spec.driver")
    lines.append(
        "guard: spec.driver must still equal the value read before"
        if guard
        else "guard: none (spec.driver was absent; JSON patch cannot test for absence)"
    )
    return "\n".join(lines)


def upgrade_policy_note(policy: Mapping[str, Any]) -> str:
    """How fast GPU nodes switch to a new driver: ``spec.driver.upgradePolicy`` as the operator reads it.

    Defaults are the CRD's (nvidia.com_clusterpolicies.yaml): autoUpgrade false, maxParallelUpgrades 1
    (0 = no limit), maxUnavailable 25%, drain off, drain and pod deletion timeouts 300 s. The driver
    DaemonSet is OnDelete (assets/state-driver/0500_daemonset.yaml) and without autoUpgrade the upgrade
    controller does nothing (controllers/upgrade_controller.go reconcileClusterPolicyDriverUpgrades).
    """
    upgrade = driver_spec(policy).get("upgradePolicy") or {}
    if upgrade.get("autoUpgrade") is not True:
        return (
            "spec.driver.upgradePolicy.autoUpgrade is off: the GPU Operator restarts no driver pod; a driver "
            "DaemonSet whose image changes (OnDelete) keeps its running pods until each is deleted by hand "
            "or its node reboots, and verification waits for that"
        )
    parallel = upgrade.get("maxParallelUpgrades", 1)
    drain = upgrade.get("drain") or {}
    pod_deletion = upgrade.get("podDeletion") or {}
    if drain.get("enable") is True:
        drained = (
            f"nodes are drained first (timeout {drain.get('timeoutSeconds', 300)} s"
            + (", force" if drain.get("force") is True else "")
            + ")"
        )
    else:
        drained = "nodes are not drained (GPU pods are deleted, timeout "
        drained += f"{pod_deletion.get('timeoutSeconds', 300)} s)"
    return (
        "spec.driver.upgradePolicy: autoUpgrade on, "
        + (f"{parallel} node(s) at a time" if parallel else "every node at once (maxParallelUpgrades 0)")
        + f", at most {upgrade.get('maxUnavailable', '25%')} unavailable; {drained}"
    )
