"""The object store: one dict per kind, a global resourceVersion, watch history and change listeners.

Thread-safe: the HTTP server, the kubelet and the test thread all write to it. Watchers and listeners
are plain callbacks called after the lock is released; they must not block (they hand work to a loop).
"""

from __future__ import annotations

import base64
import copy
import secrets
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from testcluster import crd_rules, patching
from testcluster.errors import ApiError, not_found
from testcluster.resources import ResourceType, by_kind
from testcluster.selectors import Matcher

Obj = dict[str, Any]
# (event type, resource, object, previous object or None)
Listener = Callable[[str, ResourceType, Obj, Obj | None], None]
_HISTORY_LIMIT = 20000


def now_rfc3339() -> str:
    """Current UTC time as the API server writes timestamps (seconds precision, ``Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def random_suffix(length: int = 5) -> str:
    """Lower-case alphanumerics like the suffixes of generateName (no vowels, as Kubernetes does)."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))


class _Watch:
    def __init__(self, res: ResourceType, namespace: str | None, match: Matcher, deliver: Callable) -> None:
        self.res = res
        self.namespace = namespace
        self.match = match
        self.deliver = deliver

    def wants(self, res: ResourceType, obj: Obj) -> bool:
        if res.key != self.res.key:
            return False
        if self.namespace and obj["metadata"].get("namespace") != self.namespace:
            return False
        return self.match(obj)


class Store:
    """In-memory objects of every kind in ``resources.RESOURCES``."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self._rv = 0
        self._history: list[tuple[int, ResourceType, str, Obj]] = []
        self._watches: list[_Watch] = []
        self._listeners: list[Listener] = []

    # -- plumbing -------------------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(type, res, obj, old)`` after every change (ADDED/MODIFIED/DELETED)."""
        self._listeners.append(listener)

    @property
    def resource_version(self) -> str:
        """The latest resourceVersion handed out (what a list returns in its metadata)."""
        with self._lock:
            return str(self._rv)

    def _bucket(self, res: ResourceType) -> dict[tuple[str, str], Obj]:
        return self._objects.setdefault(res.key, {})

    @staticmethod
    def _ns(res: ResourceType, namespace: str | None) -> str:
        return (namespace or "default") if res.namespaced else ""

    def _commit(self, res: ResourceType, etype: str, obj: Obj, old: Obj | None) -> Obj:
        """Store a new version (caller holds the lock); returns what to notify with."""
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if etype == "DELETED":
            self._bucket(res).pop(key, None)
        else:
            self._bucket(res)[key] = obj
        snapshot = copy.deepcopy(obj)
        self._history.append((self._rv, res, etype, snapshot))
        del self._history[:-_HISTORY_LIMIT]
        return snapshot

    def _notify(self, res: ResourceType, etype: str, obj: Obj, old: Obj | None) -> None:
        with self._lock:
            watches = [w for w in self._watches if w.wants(res, obj)]
        for watch in watches:
            watch.deliver({"type": etype, "object": copy.deepcopy(obj)})
        for listener in list(self._listeners):
            listener(etype, res, copy.deepcopy(obj), old)

    # -- reads ----------------------------------------------------------------------------------
    def get(self, res: ResourceType, namespace: str | None, name: str) -> Obj:
        """Return a copy of one object; ApiError 404 when absent."""
        with self._lock:
            obj = self._bucket(res).get((self._ns(res, namespace), name))
            if obj is None:
                raise not_found(f"{res.plural}.{res.group}" if res.group else res.plural, name)
            return copy.deepcopy(obj)

    def find(self, res: ResourceType, namespace: str | None, name: str) -> Obj | None:
        """Like ``get`` but None when absent."""
        try:
            return self.get(res, namespace, name)
        except ApiError:
            return None

    def list(
        self, res: ResourceType, namespace: str | None = None, match: Matcher | None = None
    ) -> tuple[list[Obj], str]:
        """Return (copies of matching objects sorted by namespace/name, list resourceVersion)."""
        with self._lock:
            items = [
                copy.deepcopy(obj)
                for (ns, _), obj in sorted(self._bucket(res).items())
                if (not namespace or not res.namespaced or ns == namespace) and (match is None or match(obj))
            ]
            return items, str(self._rv)

    # -- writes ---------------------------------------------------------------------------------
    def create(self, res: ResourceType, namespace: str | None, body: Obj) -> Obj:
        """Create an object (409 when the name exists); fills uid, timestamps, generation."""
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiError(422, "name or generateName is required")
            meta["name"] = meta["generateName"] + random_suffix()
        ns = self._ns(res, namespace or meta.get("namespace"))
        if res.namespaced:
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        obj["apiVersion"] = res.group_version
        obj["kind"] = res.kind
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        meta["generation"] = 1
        crd_rules.admit(res, None, obj)
        if res.kind == "Pod":
            # Defaulting the real server does: a new pod is Pending until the kubelet reports.
            obj.setdefault("status", {"phase": "Pending", "qosClass": "BestEffort"})
        with self._lock:
            if (ns, meta["name"]) in self._bucket(res):
                raise ApiError(409, f'{res.plural} "{meta["name"]}" already exists', "AlreadyExists")
            snapshot = self._commit(res, "ADDED", obj, None)
        self._notify(res, "ADDED", snapshot, None)
        return copy.deepcopy(snapshot)

    def replace(
        self, res: ResourceType, namespace: str | None, name: str, body: Obj, subresource: str = ""
    ) -> Obj:
        """PUT semantics: 409 when body's resourceVersion is stale; status vs main resource split."""
        with self._lock:
            old = self.get(res, namespace, name)
            wanted_rv = (body.get("metadata") or {}).get("resourceVersion")
            if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    f'Operation cannot be fulfilled on {res.plural} "{name}": the object has been '
                    "modified; please apply your changes to the latest version and try again",
                )
            new = copy.deepcopy(body)
            if subresource == "":
                crd_rules.admit(res, old, new)
            return self._write(res, old, new, subresource)

    def patch(
        self,
        res: ResourceType,
        namespace: str | None,
        name: str,
        content_type: str,
        patch: Any,
        subresource: str = "",
    ) -> Obj:
        """Apply a JSON/merge patch atomically (the read and the write hold the same lock)."""
        with self._lock:
            old = self.get(res, namespace, name)
            new = patching.apply_patch(old, content_type, patch)
            wanted_rv = (new.get("metadata") or {}).get("resourceVersion")
            if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
                raise ApiError(
                    409, f'Operation cannot be fulfilled on {res.plural} "{name}": stale resourceVersion'
                )
            if subresource == "":
                crd_rules.admit(res, old, new)
            return self._write(res, old, new, subresource)

    def mutate(self, res: ResourceType, namespace: str | None, name: str, fn: Callable[[Obj], None]) -> Obj:
        """Internal write (kubelet, operator): ``fn`` edits a copy in place, status included."""
        with self._lock:
            old = self.get(res, namespace, name)
            new = copy.deepcopy(old)
            fn(new)
            return self._write(res, old, new, "internal")

    def _write(self, res: ResourceType, old: Obj, new: Obj, subresource: str) -> Obj:
        # Identity fields never change through a write.
        meta = new.setdefault("metadata", {})
        for field in ("name", "namespace", "uid", "creationTimestamp", "generation"):
            if field in old["metadata"]:
                meta[field] = old["metadata"][field]
        new["apiVersion"], new["kind"] = res.group_version, res.kind
        if subresource == "status":
            # The status subresource changes status only.
            new = {**copy.deepcopy(old), "status": new.get("status", {})}
        elif subresource == "" and "status" in res.subresources:
            # The main resource ignores status changes when a status subresource exists.
            new["status"] = copy.deepcopy(old.get("status"))
            if new["status"] is None:
                new.pop("status")
        if new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        snapshot = self._commit(res, "MODIFIED", new, old)
        # Notify after the caller's lock is released would be cleaner; RLock keeps it safe here
        # because watchers and listeners only enqueue work.
        self._notify(res, "MODIFIED", snapshot, old)
        return copy.deepcopy(snapshot)

    def delete(
        self, res: ResourceType, namespace: str | None, name: str, preconditions: Obj | None = None
    ) -> Obj:
        """Delete at once (no graceful termination, no finalizers); returns the last state.

        ``preconditions`` (DeleteOptions' ``uid`` / ``resourceVersion``) must match the stored object, else
        409 Conflict, as k8s.io/apiserver pkg/storage/interfaces.go ``Preconditions.Check`` words it.
        """
        with self._lock:
            old = self.get(res, namespace, name)
            meta = old["metadata"]
            for key, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
                wanted = (preconditions or {}).get(key)
                if wanted and wanted != meta.get(key):
                    raise ApiError(
                        409,
                        f'Operation cannot be fulfilled on {res.plural} "{name}": Precondition failed: '
                        f"{label} in precondition: {wanted}, {label} in object meta: {meta.get(key)}",
                        "Conflict",
                    )
            obj = copy.deepcopy(old)
            obj["metadata"]["deletionTimestamp"] = now_rfc3339()
            snapshot = self._commit(res, "DELETED", obj, old)
        self._notify(res, "DELETED", snapshot, old)
        return copy.deepcopy(snapshot)

    # -- watch ----------------------------------------------------------------------------------
    def watch(
        self,
        res: ResourceType,
        namespace: str | None,
        match: Matcher,
        since: str | None,
        deliver: Callable[[dict[str, Any]], None],
        initial_events_end: bool = False,
    ) -> Callable[[], None]:
        """Register a watch; replay what it missed; return the function that cancels it.

        ``since`` empty or "0": synthetic ADDED for every current object (what the server does).
        Otherwise every change after that resourceVersion; 410 Gone when it fell out of history.
        ``initial_events_end`` (``sendInitialEvents=true``, what kubectl wait asks): after the replay,
        a BOOKMARK annotated ``k8s.io/initial-events-end`` tells the client its cache is complete.
        """
        with self._lock:
            if not since or since == "0":
                replay = [{"type": "ADDED", "object": obj} for obj in self.list(res, namespace, match)[0]]
            else:
                start = int(since)
                if self._history and start < self._history[0][0] - 1:
                    raise ApiError(410, f"too old resource version: {since}", "Expired")
                replay = []
                for rv, hres, etype, obj in self._history:
                    in_ns = not namespace or obj["metadata"].get("namespace") == namespace
                    if rv > start and hres.key == res.key and in_ns and match(obj):
                        replay.append({"type": etype, "object": copy.deepcopy(obj)})
            watch = _Watch(res, namespace, match, deliver)
            self._watches.append(watch)
            for event in replay:
                deliver(event)
            if initial_events_end:
                meta = {
                    "resourceVersion": str(self._rv),
                    "annotations": {"k8s.io/initial-events-end": "true"},
                }
                deliver(
                    {
                        "type": "BOOKMARK",
                        "object": {"kind": res.kind, "apiVersion": res.group_version, "metadata": meta},
                    }
                )

        def cancel() -> None:
            with self._lock:
                if watch in self._watches:
                    self._watches.remove(watch)

        return cancel

    # -- helpers for tests and the stand-ins ----------------------------------------------------
    def get_object(self, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        """Return a copy of an object by kind name (``"Pod"``, ``"ClusterPolicy"``), None when absent."""
        return self.find(by_kind(kind), namespace, name)

    def list_objects(
        self, kind: str, namespace: str | None = None, match: Matcher | None = None
    ) -> list[Obj]:
        """Copies of every object of a kind (optionally in one namespace, filtered by ``match``)."""
        return self.list(by_kind(kind), namespace, match)[0]

    def put(self, kind: str, body: Obj) -> Obj:
        """Create or replace an object by kind name, ignoring resourceVersion (seeding helper)."""
        res = by_kind(kind)
        ns = body.get("metadata", {}).get("namespace")
        name = body["metadata"]["name"]
        if self.find(res, ns, name) is None:
            return self.create(res, ns, body)
        with self._lock:
            old = self.get(res, ns, name)
            return self._write(res, old, copy.deepcopy(body), "internal")

    def add_node(
        self,
        name: str,
        kernel: str,
        os_id: str = "rhel",
        os_version_id: str = "9.6",
        gpu: bool = True,
        extra_labels: dict[str, str] | None = None,
    ) -> Obj:
        """Add a Node with the NFD labels the pipeline and the GPU operator read (plus ``extra_labels``)."""
        major, _, minor = os_version_id.partition(".")
        labels = {
            "kubernetes.io/hostname": name,
            "feature.node.kubernetes.io/kernel-version.full": kernel,
            "feature.node.kubernetes.io/system-os_release.ID": os_id,
            "feature.node.kubernetes.io/system-os_release.VERSION_ID": os_version_id,
            # NFD's system source splits VERSION_ID too; the NVIDIADriver node pools select on .major
            # (gpu-operator internal/state/nodepool.go getNodePools).
            "feature.node.kubernetes.io/system-os_release.VERSION_ID.major": major,
            **(extra_labels or {}),
        }
        if minor:
            labels["feature.node.kubernetes.io/system-os_release.VERSION_ID.minor"] = minor
        if gpu:
            labels["nvidia.com/gpu.present"] = "true"
        arch = "arm64" if "aarch64" in kernel else "amd64"
        labels["kubernetes.io/arch"] = arch
        return self.put(
            "Node",
            {
                "metadata": {"name": name, "labels": labels},
                "status": {"nodeInfo": {"kernelVersion": kernel, "architecture": arch, "osImage": os_id}},
            },
        )

    def add_secret(self, name: str, data: dict[str, str], namespace: str = "default") -> Obj:
        """Add an Opaque Secret from plain strings (stored base64 in ``data`` like the real server)."""
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        return self.put(
            "Secret",
            {"metadata": {"name": name, "namespace": namespace}, "type": "Opaque", "data": encoded},
        )
