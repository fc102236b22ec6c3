"""What the API server enforces for the custom resources beyond storing them: CRD defaults and CEL rules.

Only the NVIDIADriver CRD has rules the pipeline meets (NVIDIA/gpu-operator
``config/crd/bases/nvidia.com_nvidiadrivers.yaml``, generated from the ``+kubebuilder:validation:XValidation``
markers in ``api/nvidia/v1alpha1/nvidiadriver_types.go``):

- ``spec.driverType`` and ``spec.usePrecompiled``: ``self == oldSelf`` (immutable). A transition rule runs
  only when the field is in both the old and the new object (apiextensions-apiserver CEL validation), so
  adding ``usePrecompiled`` to a CR that never had it is accepted, as on a real cluster.
- ``spec``: a ``default: true`` CR must not have a non-empty ``nodeSelector``.
- Defaults: ``spec.default: false``, ``spec.driverType: gpu`` (structural defaulting, applied on write).
"""

from __future__ import annotations

from typing import Any

from testcluster.errors import ApiError
from testcluster.resources import ResourceType

_IMMUTABLE = {
    field: f"{field} is an immutable field. Please create a new NvidiaDriver resource instead when you "
    "want to change this setting."
    for field in ("driverType", "usePrecompiled")
}
_DEFAULTS = {"default": False, "driverType": "gpu"}


def _cel_type(value: Any) -> str:
    # apiextensions reports a CEL failure with the value's OpenAPI type, not the value itself.
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    return "object" if isinstance(value, dict) else type(value).__name__


def admit(res: ResourceType, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
    """Default ``new`` in place and raise ApiError 422 where the CRD's CEL rules refuse the write."""
    if res.kind != "NVIDIADriver":
        return
    spec = new.get("spec")
    if not isinstance(spec, dict):
        return
    for key, value in _DEFAULTS.items():
        spec.setdefault(key, value)
    name = (new.get("metadata") or {}).get("name", "")
    causes: list[str] = []
    old_spec = (old or {}).get("spec") or {}
    if old is not None:
        for field, message in _IMMUTABLE.items():
            if field in spec and field in old_spec and spec[field] != old_spec[field]:
                causes.append(f'spec.{field}: Invalid value: "{_cel_type(spec[field])}": {message}')
    if spec.get("default") is True and spec.get("nodeSelector"):
        causes.append('spec: Invalid value: "object": default NVIDIADriver must not use nodeSelector')
    if causes:
        raise ApiError(422, f'{res.kind}.{res.group} "{name}" is invalid: ' + ", ".join(causes))
