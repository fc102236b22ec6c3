"""Check a ClusterPolicy against NVIDIA's ClusterPolicy CRD schema, for tests only.

Moved out of ``precompiled_drivers.cluster_policy``: the pipeline never validates against the CRD (the API
server does), and importing ``jsonschema`` there put it on the DAG's parse path. ``jsonschema`` is a
test dependency. The CRD is the one NVIDIA ships (gpu-operator
``config/crd/bases/nvidia.com_clusterpolicies.yaml``), read from the shared reference directory by the
tests that use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema

from precompiled_drivers.cluster_policy import PolicyError

# NVIDIA/gpu-operator config/crd/bases/nvidia.com_clusterpolicies.yaml: the served version, and
# spec.driver.image's `pattern: '[a-zA-Z0-9\-]+'` (applied whole here, as the operator needs it).
VERSION = "v1"
IMAGE_NAME_RE = re.compile(r"[a-zA-Z0-9-]+")


def strip_extensions(schema: Any) -> Any:
    """Drop ``x-kubernetes-*`` keys and map OpenAPI's ``nullable`` to a JSON Schema null type."""
    if isinstance(schema, list):
        return [strip_extensions(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    out = {k: strip_extensions(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if out.pop("nullable", False) is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def crd_schema(crd: Mapping[str, Any], version: str = VERSION) -> dict[str, Any]:
    """The ``openAPIV3Schema`` of ``version`` in a CustomResourceDefinition, ready for jsonschema."""
    for entry in (crd.get("spec") or {}).get("versions") or []:
        if entry.get("name") == version:
            return strip_extensions(entry["schema"]["openAPIV3Schema"])
    raise PolicyError(f"the CRD has no version {version!r}")


def _schema_errors(policy: Mapping[str, Any], schema: Mapping[str, Any]) -> Iterator[str]:
    # OpenAPI v3.0 schemas are a dialect of JSON Schema draft 4 (boolean exclusiveMinimum etc.).
    validator = jsonschema.Draft4Validator(schema)
    for error in sorted(validator.iter_errors(policy), key=lambda e: [str(p) for p in e.absolute_path]):
        where = ".".join(str(p) for p in error.absolute_path) or "<root>"
        yield f"{where}: {error.message}"


def validate_policy(policy: Mapping[str, Any], crd: Mapping[str, Any]) -> None:
    """Validate a ClusterPolicy against the CRD's v1 schema, plus the anchored ``spec.driver.image`` rule.

    Raises PolicyError listing every failing path. Kubernetes extensions (``x-kubernetes-*``) are ignored;
    ``format`` is not checked (the API server checks only a few formats).
    """
    errors = list(_schema_errors(policy, crd_schema(crd)))
    image = ((policy.get("spec") or {}).get("driver") or {}).get("image")
    if isinstance(image, str) and not IMAGE_NAME_RE.fullmatch(image):
        errors.append(
            f"spec.driver.image: {image!r} must fully match '[a-zA-Z0-9-]+' "
            "(the CRD pattern is unanchored, but the operator appends ':<tag>' to '<repository>/<image>')"
        )
    if errors:
        raise PolicyError("ClusterPolicy is not valid:\n  " + "\n  ".join(errors))
