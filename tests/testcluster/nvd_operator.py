"""The GPU-operator stand-in's NVIDIADriver mode: one driver DaemonSet per node pool of each NVIDIADriver CR.

Transcribed from NVIDIA/gpu-operator at main a22dbf6 (Aug 2026; the v26.7 line):

- which configuration is active: ``controllers/active_config.go`` resolveActiveConfig and
  ``controllers/nvidiadriver_controller.go`` Reconcile (a ClusterPolicy without ``useNvidiaDriverCRD``
  disables every CR; a GPUCluster alone, or a ClusterPolicy with the flag, enables them);
- node routing: ``internal/nvidiadriver/nvidiadriver.go`` AssignOwners (label
  ``nvidia.com/gpu-operator.driver.owner``, fails closed on a node two CRs select), run by
  ``controllers/nodelabeling_controller.go`` in that mode only;
- conflicts: ``internal/validator/validator.go`` nodeSelectorValidator.Validate (every CR reports the first
  conflicting node, reason ConflictingNodeSelector, and nothing is synced);
- pools: ``internal/state/nodepool.go`` getNodePools/getOSTag (per pool OS tag, major only for ol/rocky/rhel);
- names and images: ``internal/state/driver.go`` getDriverAppName, getDriverImagePath,
  cleanupStaleDriverDaemonsets; ``api/nvidia/v1alpha1/nvidiadriver_types.go``
  GetPrecompiledImagePath/GetImagePath;
  ``internal/image/image.go`` ImagePath; ``manifests/state-driver/0500_daemonset.yaml`` labels;
- status: ``nvidiadriver_controller.go`` updateCrStatus + ``internal/conditions/nvidiadriver.go`` (Ready/Error
  conditions), ``internal/state/state_skel.go`` isDaemonSetReady.

The CRD's immutable fields (422) are enforced by the API server: ``crd_rules.py``.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from testcluster.errors import ApiError
from testcluster.resources import by_kind
from testcluster.store import now_rfc3339, random_suffix

if TYPE_CHECKING:
    from testcluster.gpu_operator import GpuOperator

DRIVERS, GPU_CLUSTERS, POLICY, NODES, PODS, DAEMONSETS, VERSIONS = (
    by_kind(k)
    for k in ("NVIDIADriver", "GPUCluster", "ClusterPolicy", "Node", "Pod", "DaemonSet", "ClusterVersion")
)
GPU_LABEL = "nvidia.com/gpu.present"
OWNER_LABEL = "nvidia.com/gpu-operator.driver.owner"  # internal/consts/consts.go NVIDIADriverOwnerLabel
KERNEL_LABEL = "feature.node.kubernetes.io/kernel-version.full"
OS_ID_LABEL = "feature.node.kubernetes.io/system-os_release.ID"
OS_VERSION_LABEL = "feature.node.kubernetes.io/system-os_release.VERSION_ID"
OS_MAJOR_LABEL = "feature.node.kubernetes.io/system-os_release.VERSION_ID.major"
OSTREE_LABEL = "feature.node.kubernetes.io/system-os_release.OSTREE_VERSION"
COMPONENT = "nvidia-driver"
# k8s.io/apimachinery pkg/util/rand SafeEncodeString's alphabet.
_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"
_APP_NAME_MAX = 63
_ARCH = re.compile(r"x86_64(?:_64k)?|aarch64(?:_64k)?")


class SyncError(RuntimeError):
    """A reconcile of one CR failed: (reason, message) as the condition updater writes them."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def string_hash(text: str) -> str:
    """internal/utils/utils.go GetStringHash: FNV-1a 32 of ``text``, decimal, through SafeEncodeString."""
    value = 0x811C9DC5
    for byte in text.encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_ALPHANUMS[ord(ch) % len(_ALPHANUMS)] for ch in str(value))


def os_tag(os_id: str, version_id: str) -> str:
    """internal/state/nodepool.go getOSTag: major VERSION_ID only for ol, rocky and rhel."""
    return (
        f"{os_id}{version_id.split('.')[0]}" if os_id in ("ol", "rocky", "rhel") else f"{os_id}{version_id}"
    )


def sanitized_kernel(kernel: str) -> str:
    """internal/state/driver.go getSanitizedKernelVersion (kernel-version label, pool key)."""
    stripped = _ARCH.sub("", kernel).replace("_", ".")
    return stripped.removesuffix(".").lower()


@dataclass
class Pool:
    """One internal/state/nodepool.go nodePool plus the nodes in it."""

    os_tag: str
    kernel: str = ""
    rhcos: str = ""
    selector: dict[str, str] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)


def app_name(driver_type: str, uid: str, pool: Pool) -> str:
    """driver.go getDriverAppName: ``nvidia-<type>-driver-<osTag>-<hash(uid[-kernel|-rhcos])>``."""
    text = uid + (f"-{pool.kernel}" if pool.kernel else f"-{pool.rhcos}" if pool.rhcos else "")
    digest = string_hash(text)
    prefix = f"nvidia-{driver_type}-driver-{pool.os_tag}"
    name = f"{prefix}-{digest}"
    if len(name) > _APP_NAME_MAX:
        name = f"{prefix[: _APP_NAME_MAX - len(digest) - 1]}-{digest}"
    return name


def image_path(spec: dict[str, Any], pool: Pool) -> str:
    """getDriverImagePath -> GetPrecompiledImagePath / GetImagePath, with internal/image ImagePath's rules."""
    repository, image, version = (str(spec.get(k) or "") for k in ("repository", "image", "version"))
    if not repository and not version:
        if not image:
            raise SyncError("ReconcileFailed", "empty image path provided through both CR and ENV ")
        path = image  # kbld-style image given whole
    elif not (repository and image and version):
        raise SyncError(
            "ReconcileFailed",
            "invalid image specification: repository, image and version must all be set "
            f"(repository={repository}, image={image}, version={version})",
        )
    else:
        path = (
            f"{repository}/{image}@{version}"
            if version.startswith("sha256:")
            else f"{repository}/{image}:{version}"
        )
    if spec.get("usePrecompiled") is True:
        if "sha256:" in path:
            raise SyncError(
                "ReconcileFailed", "specifying image digest is not supported when precompiled is enabled"
            )
        return f"{path}-{pool.kernel}-{pool.os_tag}"
    return path if "sha256:" in path else f"{path}-{pool.os_tag}"


def selector_of(cr: dict[str, Any]) -> dict[str, str]:
    """api/.../nvidiadriver_types.go GetNodeSelector: no nodeSelector means every GPU node."""
    selector = (cr.get("spec") or {}).get("nodeSelector")
    return {GPU_LABEL: "true"} if selector is None else dict(selector)


def _matches(labels: dict[str, str], selector: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _labels(node: dict[str, Any]) -> dict[str, str]:
    return node["metadata"].get("labels") or {}


class NvidiaDriverMode:
    """Reconciles every NVIDIADriver CR on each tick of the GpuOperator it belongs to."""

    def __init__(self, operator: GpuOperator) -> None:
        self.op = operator
        self.store = operator.store
        self.errors: dict[str, SyncError] = {}  # CR name -> what its last reconcile failed with
        self.disabled: str | None = None  # why every CR is disabled, when it is
        self.wants: dict[str, dict[str, dict[str, Any]]] = {}  # CR name -> DaemonSet name -> spec

    # -- which mode ---------------------------------------------------------------------------
    def active(self) -> bool:
        """Reconcile's gate: False (CRs disabled) under a ClusterPolicy without useNvidiaDriverCRD."""
        policies = self.store.list(POLICY)[0]
        policy = policies[0] if policies else None
        if (
            policy is not None
            and (((policy.get("spec") or {}).get("driver") or {}).get("useNvidiaDriverCRD")) is not True
        ):
            self.disabled = "useNvidiaDriverCRD is not enabled in ClusterPolicy"
            return False
        self.disabled = None
        return True

    # -- node routing and validation ----------------------------------------------------------
    def assign_owners(self, drivers: list[dict[str, Any]]) -> str | None:
        """nvidiadriver.go AssignOwners: label each GPU node with its CR; on a conflict change nothing."""
        defaults = [d["metadata"]["name"] for d in drivers if (d.get("spec") or {}).get("default") is True]
        pools = [d for d in drivers if (d.get("spec") or {}).get("default") is not True]
        if len(defaults) > 1:
            return f"multiple default NVIDIADrivers found: {defaults}"
        gpu_nodes = [n for n in self.store.list(NODES)[0] if _labels(n).get(GPU_LABEL) == "true"]
        desired: dict[str, str] = {}
        for node in gpu_nodes:
            owners = [d["metadata"]["name"] for d in pools if _matches(_labels(node), selector_of(d))]
            if len(owners) > 1:
                return f"multiple NVIDIADrivers match the same node {node['metadata']['name']}: {owners}"
            desired[node["metadata"]["name"]] = owners[0] if owners else (defaults[0] if defaults else "")
        for node in gpu_nodes:
            name, want = node["metadata"]["name"], desired[node["metadata"]["name"]]
            if _labels(node).get(OWNER_LABEL, "") == want and (want or OWNER_LABEL not in _labels(node)):
                continue

            def relabel(n: dict[str, Any], w: str = want) -> None:
                labels = n["metadata"].setdefault("labels", {})
                if w:
                    labels[OWNER_LABEL] = w
                else:
                    labels.pop(OWNER_LABEL, None)

            with contextlib.suppress(ApiError):
                self.store.mutate(NODES, None, name, relabel)
        return None

    def validate(self, drivers: list[dict[str, Any]]) -> SyncError | None:
        """validator.go Validate, run for each CR on the whole list (every CR reports the same conflict)."""
        for driver in drivers:
            spec = driver.get("spec") or {}
            if OWNER_LABEL in (spec.get("nodeSelector") or {}):
                return SyncError(
                    "ConflictingNodeSelector",
                    f'NVIDIADriver "{driver["metadata"]["name"]}" nodeSelector cannot use reserved label '
                    f'"{OWNER_LABEL}"',
                )
        defaults = sorted(
            d["metadata"]["name"] for d in drivers if (d.get("spec") or {}).get("default") is True
        )
        if len(defaults) > 1:
            return SyncError("ReconcileFailed", f"multiple default NVIDIADrivers found: {defaults}")
        owners: dict[str, list[str]] = {}
        nodes = self.store.list(NODES)[0]
        for driver in drivers:
            if (driver.get("spec") or {}).get("default") is True:
                continue
            for node in nodes:
                if not _matches(_labels(node), selector_of(driver)):
                    continue
                names = owners.setdefault(node["metadata"]["name"], [])
                names.append(driver["metadata"]["name"])
                if len(names) > 1:
                    return SyncError(
                        "ConflictingNodeSelector",
                        "multiple NVIDIADrivers match the same node "
                        f"{node['metadata']['name']}: {sorted(names)}",
                    )
        return None

    # -- pools --------------------------------------------------------------------------------
    def pools(self, cr: dict[str, Any], openshift: bool) -> list[Pool]:
        """nodepool.go getNodePools: the CR's nodes (selector + gpu.present + owner label), grouped."""
        spec = cr.get("spec") or {}
        selector = {
            **(spec.get("nodeSelector") or {}),
            GPU_LABEL: "true",
            OWNER_LABEL: cr["metadata"]["name"],
        }
        precompiled = spec.get("usePrecompiled") is True
        found: dict[str, Pool] = {}
        for node in self.store.list(NODES)[0]:
            labels = _labels(node)
            if not _matches(labels, selector) or OS_ID_LABEL not in labels or OS_VERSION_LABEL not in labels:
                continue  # "Could not find NFD label for node. Is NFD installed?"
            tag = os_tag(labels[OS_ID_LABEL], labels[OS_VERSION_LABEL])
            pool = Pool(tag, selector={**selector, OS_ID_LABEL: labels[OS_ID_LABEL]})
            key = tag
            if not tag.endswith(labels[OS_VERSION_LABEL]):
                if OS_MAJOR_LABEL not in labels:
                    continue
                pool.selector[OS_MAJOR_LABEL] = labels[OS_MAJOR_LABEL]
            else:
                pool.selector[OS_VERSION_LABEL] = labels[OS_VERSION_LABEL]
            if precompiled:
                if KERNEL_LABEL not in labels:
                    continue
                pool.kernel = pool.selector[KERNEL_LABEL] = labels[KERNEL_LABEL]
                key = f"{tag}-{sanitized_kernel(pool.kernel)}"
            elif openshift:
                if OSTREE_LABEL not in labels:
                    continue
                pool.rhcos = pool.selector[OSTREE_LABEL] = labels[OSTREE_LABEL]
                key = pool.rhcos
            # The first node of a pool names it; the others join through its selector.
            found.setdefault(key, pool)
        for pool in found.values():
            pool.nodes = [
                n["metadata"]["name"]
                for n in self.store.list(NODES)[0]
                if _matches(_labels(n), pool.selector)
            ]
        return list(found.values())

    def desired(self, cr: dict[str, Any], openshift: bool) -> dict[str, dict[str, Any]]:
        """DaemonSet name -> {image, precompiled, selector, nodes, labels} for one CR (getManifestObjects)."""
        spec = cr.get("spec") or {}
        if spec.get("usePrecompiled") is True and any(
            (spec.get(k) or {}).get("enabled") is True for k in ("gds", "gdrcopy")
        ):
            raise SyncError(
                "ReconcileFailed",
                "GPUDirect Storage driver (nvidia-fs) and/or GDRCopy driver is not supported along with "
                "pre-compiled NVIDIA drivers",
            )
        out: dict[str, dict[str, Any]] = {}
        for pool in self.pools(cr, openshift):
            try:
                image = image_path(spec, pool)
            except SyncError as exc:
                raise SyncError(
                    "ReconcileFailed",
                    "Error syncing state state-driver: failed to create k8s objects from manifests: "
                    f"failed to construct driver spec: failed to get driver image path: {exc}",
                ) from exc
            name = app_name(str(spec.get("driverType") or "gpu"), cr["metadata"]["uid"], pool)
            labels = {
                "app": name,
                "nvidia.com/node.os-version": pool.os_tag,
                "nvidia.com/precompiled": "true" if spec.get("usePrecompiled") is True else "false",
                "app.kubernetes.io/component": COMPONENT,
            }
            if pool.kernel:
                labels["nvidia.com/precompiled.kernel-version"] = sanitized_kernel(pool.kernel)
            out[name] = {
                "image": image,
                "precompiled": spec.get("usePrecompiled") is True,
                "selector": pool.selector,
                "nodes": pool.nodes,
                "labels": labels,
            }
        return out

    # -- reconcile ----------------------------------------------------------------------------
    def sync(self, now: float) -> None:
        """One pass of the NVIDIADriver controller over every CR; pods are pulled by the GpuOperator."""
        drivers = self.store.list(DRIVERS)[0]
        self._collect_orphans({d["metadata"]["uid"] for d in drivers}, now)
        self.errors, self.wants = {}, {}
        if not drivers or not self.active():
            return
        self.assign_owners(drivers)
        conflict = self.validate(drivers)
        if conflict is not None:
            self.errors = {d["metadata"]["name"]: conflict for d in drivers}
            return  # Reconcile returns before syncing: the DaemonSets stay as they are
        openshift = bool(self.store.list(VERSIONS)[0])
        for cr in drivers:
            name = cr["metadata"]["name"]
            try:
                want = self.desired(cr, openshift)
            except SyncError as exc:
                self.errors[name] = exc
                continue
            self.wants[name] = want
            self._apply(cr, want, now)

    def _owned(self, uid: str) -> dict[str, dict[str, Any]]:
        return {
            d["metadata"]["name"]: d
            for d in self.store.list(DAEMONSETS, self.op.namespace)[0]
            if any(o.get("uid") == uid for o in d["metadata"].get("ownerReferences") or [])
        }

    def _pods(self, ds_name: str) -> list[dict[str, Any]]:
        return [
            p
            for p in self.store.list(PODS, self.op.namespace)[0]
            if (p["metadata"].get("labels") or {}).get("app") == ds_name
        ]

    def _collect_orphans(self, live: set[str], now: float) -> None:
        # Garbage collection: DaemonSets (and their pods) whose NVIDIADriver owner is gone.
        for ds in self.store.list(DAEMONSETS, self.op.namespace)[0]:
            refs = [o for o in ds["metadata"].get("ownerReferences") or [] if o.get("kind") == "NVIDIADriver"]
            if refs and refs[0]["uid"] not in live:
                self._delete_ds(ds["metadata"]["name"], now)

    def _delete_ds(self, name: str, now: float) -> None:
        self.op._doom(DAEMONSETS, name, now)
        for pod in self._pods(name):
            self.op._doom(PODS, pod["metadata"]["name"], now)

    def _apply(self, cr: dict[str, Any], want: dict[str, dict[str, Any]], now: float) -> None:
        owned = self._owned(cr["metadata"]["uid"])
        for name in owned:
            if name not in want:  # cleanupStaleDriverDaemonsets
                self._delete_ds(name, now)
        owner = {
            "apiVersion": DRIVERS.group_version,
            "kind": "NVIDIADriver",
            "name": cr["metadata"]["name"],
            "uid": cr["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
        for name, spec in want.items():
            self.op._doomed.pop((DAEMONSETS, name), None)
            ds = owned.get(name) or self.store.find(DAEMONSETS, self.op.namespace, name)
            if ds is None:
                ds = self.store.create(DAEMONSETS, self.op.namespace, self._daemonset(name, spec, owner))
            elif self._template_of(ds) != (spec["image"], spec["selector"]):

                def update(d: dict[str, Any], s: dict[str, Any] = spec) -> None:
                    pod_spec = d["spec"]["template"]["spec"]
                    pod_spec["containers"][0]["image"] = s["image"]
                    pod_spec["nodeSelector"] = s["selector"]

                ds = self.store.mutate(DAEMONSETS, self.op.namespace, name, update)
            generation = str(ds["metadata"]["generation"])
            pods = self._pods(name)
            current = [
                p for p in pods if p["metadata"]["labels"].get("pod-template-generation") == generation
            ]
            for pod in pods:
                if pod not in current or pod["spec"].get("nodeName") not in spec["nodes"]:
                    # updateStrategy OnDelete: the upgrade controller deletes the old pods (autoUpgrade).
                    self.op._doom(PODS, pod["metadata"]["name"], now)
            have = {p["spec"].get("nodeName") for p in current}
            for node in spec["nodes"]:
                if node not in have:
                    self.store.create(PODS, self.op.namespace, self._pod(name, spec, generation, node, ds))

    @staticmethod
    def _template_of(ds: dict[str, Any]) -> tuple[str, dict[str, str]]:
        pod = ds["spec"]["template"]["spec"]
        return pod["containers"][0]["image"], pod.get("nodeSelector") or {}

    def _daemonset(self, name: str, spec: dict[str, Any], owner: dict[str, Any]) -> dict[str, Any]:
        return {
            "metadata": {
                "name": name,
                "namespace": self.op.namespace,
                "labels": spec["labels"],
                "ownerReferences": [owner],
            },
            "spec": {
                "selector": {"matchLabels": {"app": name}},
                "updateStrategy": {"type": "OnDelete"},
                "template": {
                    "metadata": {"labels": spec["labels"]},
                    "spec": {
                        "nodeSelector": spec["selector"],
                        "containers": [{"name": "nvidia-driver-ctr", "image": spec["image"]}],
                    },
                },
            },
        }

    def _pod(
        self, name: str, spec: dict[str, Any], generation: str, node: str, ds: dict[str, Any]
    ) -> dict[str, Any]:
        owner = {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "name": name,
            "uid": ds["metadata"]["uid"],
            "controller": True,
        }
        container = {"name": "nvidia-driver-ctr", "image": spec["image"]}
        return {
            "metadata": {
                "name": f"{name}-{random_suffix()}",
                "labels": {**spec["labels"], "pod-template-generation": generation},
                "ownerReferences": [owner],
            },
            "spec": {"nodeName": node, "containers": [container]},
            "status": {
                "phase": "Pending",
                "containerStatuses": [
                    self.op._cstatus(container, {"waiting": {"reason": "ContainerCreating"}}, False, "")
                ],
            },
        }

    # -- status -------------------------------------------------------------------------------
    def report(self) -> None:
        """DaemonSet status, then each CR's status.state and Ready/Error conditions (when they change)."""
        for cr in self.store.list(DRIVERS)[0]:
            name = cr["metadata"]["name"]
            if self.disabled:
                self._set_status(cr, "disabled", "Error", "Reconciled", self.disabled)
            elif name in self.errors:
                exc = self.errors[name]
                self._set_status(cr, "notReady", "Error", exc.reason, str(exc))
            elif name in self.wants:
                ready = all(self._ds_ready(ds, spec) for ds, spec in self.wants[name].items())
                if ready:
                    self._set_status(
                        cr, "ready", "Ready", "Reconciled", "All resources have been successfully reconciled"
                    )
                else:
                    self._set_status(
                        cr, "notReady", "Error", "DriverNotReady", "Waiting for driver pod to be ready"
                    )

    def _ds_ready(self, name: str, spec: dict[str, Any]) -> bool:
        ds = self.store.find(DAEMONSETS, self.op.namespace, name)
        if ds is None:
            return False
        generation = str(ds["metadata"]["generation"])
        pods = [p for p in self._pods(name) if (PODS, p["metadata"]["name"]) not in self.op._doomed]
        ready = [
            p for p in pods if ((p.get("status") or {}).get("containerStatuses") or [{}])[0].get("ready")
        ]
        updated = [p for p in pods if p["metadata"]["labels"].get("pod-template-generation") == generation]
        status = {
            "observedGeneration": ds["metadata"]["generation"],
            "desiredNumberScheduled": len(spec["nodes"]),
            "currentNumberScheduled": len(pods),
            "updatedNumberScheduled": len(updated),
            "numberReady": len(ready),
            "numberAvailable": len(ready),
            "numberUnavailable": max(len(spec["nodes"]) - len(ready), 0),
        }
        if ds.get("status") != status:
            with contextlib.suppress(ApiError):
                self.store.mutate(DAEMONSETS, self.op.namespace, name, lambda d: d.update(status=status))
        # state_skel.go isDaemonSetReady
        if status["desiredNumberScheduled"] == 0 and status["currentNumberScheduled"] == 0:
            return True
        return (
            status["desiredNumberScheduled"] != 0
            and status["desiredNumberScheduled"] == status["numberAvailable"]
            and status["updatedNumberScheduled"] == status["numberAvailable"]
        )

    def _set_status(self, cr: dict[str, Any], state: str, kind: str, reason: str, message: str) -> None:
        old = cr.get("status") or {}
        conditions = [dict(c) for c in old.get("conditions") or []]
        if kind == "Ready":
            wanted = [("Ready", "True", reason, message), ("Error", "False", "Ready", "")]
        else:
            wanted = [("Ready", "False", "Error", ""), ("Error", "True", reason, message)]
        for ctype, cstatus, creason, cmessage in wanted:
            # apimachinery meta.SetStatusCondition: lastTransitionTime moves only when status changes.
            existing = next((c for c in conditions if c["type"] == ctype), None)
            if existing is None:
                existing = {"type": ctype, "lastTransitionTime": now_rfc3339()}
                conditions.append(existing)
            elif existing.get("status") != cstatus:
                existing["lastTransitionTime"] = now_rfc3339()
            existing.update(status=cstatus, reason=creason, message=cmessage)
        new = {**old, "state": state, "conditions": conditions}
        if new != old:
            with contextlib.suppress(ApiError):
                self.store.mutate(DRIVERS, None, cr["metadata"]["name"], lambda c: c.update(status=new))
