"""Patch semantics: RFC 6902 JSON patch (with ``test``), RFC 7386 merge patch.

Strategic merge patch is treated as a merge patch: lists are replaced, not merged by key. That is
enough for the label patches clients send and is one of the documented differences from Kubernetes.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer

from testcluster.errors import ApiError

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 merge patch: objects merge recursively, ``null`` deletes, the rest replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def apply_patch(obj: dict[str, Any], content_type: str, patch: Any) -> dict[str, Any]:
    """Return the patched copy of ``obj``; raise ApiError as the real server would answer."""
    media = content_type.split(";")[0].strip().lower()
    if media == JSON_PATCH:
        if not isinstance(patch, list):
            raise ApiError(400, "json patch must be a list of operations")
        try:
            return jsonpatch.JsonPatch(patch).apply(obj)
        except jsonpatch.JsonPatchTestFailed as exc:
            # kube-apiserver answers a failed `test` operation with 422 Invalid.
            raise ApiError(
                422, f"the server rejected our request due to an error in our request: {exc}"
            ) from exc
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            raise ApiError(
                422, f"the server rejected our request due to an error in our request: {exc}"
            ) from exc
    if media in (MERGE_PATCH, STRATEGIC_PATCH):
        if not isinstance(patch, dict):
            raise ApiError(400, "merge patch must be a JSON object")
        return merge_patch(obj, patch)
    raise ApiError(415, f"the body of the request was in an unknown format: {media}")
