"""What happened on the test cluster during a run, recorded as it happens: pods and ClusterPolicy writes.

The store calls its listeners after every change (``Store.add_listener``); this keeps, per pod, when it
was created, when its base container stopped working (terminated, or the pod ended or was deleted) and
its labels and ``IMAGE``; and every ClusterPolicy version whose ``spec`` changed (the API server bumps
``metadata.generation`` exactly then). Tests then assert "no two build pods for one image at once",
"nothing left behind" and "the ClusterPolicy was written once" on real events, not on end states.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from testcluster.cluster import TestCluster


@dataclass
class PodLife:
    """One pod's life as the store saw it (epoch seconds)."""

    name: str
    labels: dict[str, str]
    env: dict[str, str]
    created: float
    ended: float | None = None  # base container terminated, pod Succeeded/Failed, or deleted
    deleted: float | None = None

    @property
    def task_id(self) -> str:
        """The Airflow task the pod belongs to (KPO's ``task_id`` label)."""
        return self.labels.get("task_id", "")

    def overlaps(self, other: PodLife) -> bool:
        """True when both pods were working at one instant."""
        end_self = self.ended if self.ended is not None else float("inf")
        end_other = other.ended if other.ended is not None else float("inf")
        return self.created < end_other and other.created < end_self


@dataclass
class ClusterHistory:
    """Pods in ``namespace`` and ClusterPolicy ``policy`` spec changes, from the moment it is attached."""

    cluster: TestCluster
    namespace: str
    policy: str = "gpu-cluster-policy"
    pods: dict[str, PodLife] = field(default_factory=dict)
    # (epoch seconds, generation, spec.driver after the change) of every spec change of the policy
    policy_writes: list[tuple[float, int, dict[str, Any]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self) -> ClusterHistory:
        """Start recording (store listeners cannot be removed: one history per cluster)."""
        self.cluster.store.add_listener(self._on_change)
        return self

    def _on_change(self, etype: str, res: Any, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        now = time.time()
        meta = obj.get("metadata") or {}
        with self._lock:
            if res.kind == "ClusterPolicy" and meta.get("name") == self.policy and etype == "MODIFIED":
                if old is not None and obj.get("spec") != old.get("spec"):
                    driver = copy.deepcopy((obj.get("spec") or {}).get("driver") or {})
                    self.policy_writes.append((now, int(meta.get("generation", 0)), driver))
            elif res.kind == "Pod" and meta.get("namespace") == self.namespace:
                self._on_pod(etype, obj, meta, now)

    def _on_pod(self, etype: str, obj: dict[str, Any], meta: dict[str, Any], now: float) -> None:
        name = meta["name"]
        life = self.pods.get(name)
        if life is None:
            containers = (obj.get("spec") or {}).get("containers") or [{}]
            env = {e["name"]: e.get("value", "") for e in containers[0].get("env") or []}
            life = self.pods[name] = PodLife(name, dict(meta.get("labels") or {}), env, now)
        status = obj.get("status") or {}
        base_done = any(
            "terminated" in (cs.get("state") or {})
            for cs in status.get("containerStatuses") or []
            if cs.get("name") == "base"
        )
        if life.ended is None and (
            etype == "DELETED" or base_done or status.get("phase") in ("Succeeded", "Failed")
        ):
            life.ended = now
        if etype == "DELETED":
            life.deleted = now

    # -- questions tests ask ------------------------------------------------------------------------
    def of_task(self, task_id: str) -> list[PodLife]:
        """Pods of one step, oldest first."""
        with self._lock:
            return sorted((p for p in self.pods.values() if p.task_id == task_id), key=lambda p: p.created)

    def overlapping(self, task_id: str, key: str = "IMAGE") -> list[tuple[str, str, str]]:
        """(env[key], pod, pod) for every two pods of ``task_id`` working on the same ``key`` at once."""
        pods = self.of_task(task_id)
        return [
            (a.env.get(key, ""), a.name, b.name)
            for i, a in enumerate(pods)
            for b in pods[i + 1 :]
            if a.env.get(key) == b.env.get(key) and a.overlaps(b)
        ]

    def left_behind(self) -> list[str]:
        """Names of the step pods still in the namespace (the store's view, not the recording's)."""
        pods = self.cluster.store.list_objects("Pod", self.namespace)
        return sorted(p["metadata"]["name"] for p in pods)
