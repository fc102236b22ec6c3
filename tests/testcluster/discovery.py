"""API discovery documents (legacy, non-aggregated) and server-side printing tables for kubectl."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from testcluster import resources
from testcluster.resources import ResourceType


def version() -> dict[str, Any]:
    """``GET /version``."""
    return {
        "major": "1",
        "minor": "31",
        "gitVersion": "v1.31.0-testcluster",
        "platform": "linux/amd64",
        "goVersion": "go1.22",
        "compiler": "gc",
    }


def api_versions() -> dict[str, Any]:
    """``GET /api``."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    }


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list() -> dict[str, Any]:
    """``GET /apis``: every non-core group."""
    groups = [_group(name, vs) for name, vs in resources.groups().items() if name]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(name: str) -> dict[str, Any] | None:
    """``GET /apis/<group>``."""
    versions = resources.groups().get(name)
    return _group(name, versions) if versions and name else None


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    """``GET /api/v1`` or ``GET /apis/<group>/<version>``."""
    served = [r for r in resources.RESOURCES if r.group == group and r.version == version]
    if not served:
        return None
    entries: list[dict[str, Any]] = []
    for res in served:
        entries.append(
            {
                "name": res.plural,
                "singularName": res.singular,
                "namespaced": res.namespaced,
                "kind": res.kind,
                "verbs": list(resources.VERBS),
                **({"shortNames": list(res.short_names)} if res.short_names else {}),
            }
        )
        for sub in res.subresources:
            verbs = {"status": ["get", "patch", "update"], "log": ["get"], "exec": ["create", "get"]}[sub]
            kind = {"status": res.kind, "log": "Pod", "exec": "PodExecOptions"}[sub]
            entries.append(
                {
                    "name": f"{res.plural}/{sub}",
                    "singularName": "",
                    "namespaced": res.namespaced,
                    "kind": kind,
                    "verbs": verbs,
                }
            )
    group_version = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": entries,
    }


def _age(obj: dict[str, Any]) -> str:
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return "<unknown>"
    seconds = int(
        (
            datetime.now(UTC) - datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        ).total_seconds()
    )
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def _pod_cells(pod: dict[str, Any]) -> list[Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    ready = sum(1 for s in statuses if s.get("ready"))
    shown = (pod.get("status") or {}).get("reason") or (pod.get("status") or {}).get("phase", "Pending")
    for s in statuses:
        waiting = (s.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            shown = waiting["reason"]
    return [f"{ready}/{total}", shown, 0]


def table(res: ResourceType, items: list[dict[str, Any]], rv: str) -> dict[str, Any]:
    """A ``meta.k8s.io/v1 Table`` as kubectl asks for with ``Accept: ...;as=Table``."""
    columns = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
    if res.kind == "Pod":
        columns += [
            {"name": n, "type": t, "format": "", "description": n, "priority": 0}
            for n, t in (("Ready", "string"), ("Status", "string"), ("Restarts", "integer"))
        ]
    columns.append({"name": "Age", "type": "string", "format": "", "description": "Age", "priority": 0})
    rows = []
    for obj in items:
        middle = _pod_cells(obj) if res.kind == "Pod" else []
        meta = obj.get("metadata") or {}
        rows.append(
            {
                "cells": [meta.get("name"), *middle, _age(obj)],
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta},
            }
        )
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": columns,
        "rows": rows,
    }
