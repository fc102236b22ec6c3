"""A GPU-operator stand-in: reconciles driver DaemonSets and pods from the ClusterPolicy.

Level-triggered like a controller: every tick (and on ClusterPolicy/Node changes) it compares what the
policy and the GPU nodes ask for with the DaemonSets it made, and converges. Driver pods turn
Running+Ready only when their image exists in the local test registry; else they wait in
ImagePullBackOff (re-checked every tick, as the kubelet retries). Naming: gpu_naming.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import requests

from testcluster import gpu_naming
from testcluster.errors import ApiError
from testcluster.nvd_operator import DRIVERS, GPU_CLUSTERS, NvidiaDriverMode
from testcluster.registry import MANIFEST_ACCEPT
from testcluster.resources import ResourceType, by_kind
from testcluster.store import Store, now_rfc3339, random_suffix

POLICY, NODES, PODS, DAEMONSETS = (by_kind(k) for k in ("ClusterPolicy", "Node", "Pod", "DaemonSet"))
APP = "nvidia-driver-daemonset"
GPU_LABEL = "nvidia.com/gpu.present"
KERNEL_LABEL = "feature.node.kubernetes.io/kernel-version.full"
OS_ID_LABEL = "feature.node.kubernetes.io/system-os_release.ID"
OS_VERSION_LABEL = "feature.node.kubernetes.io/system-os_release.VERSION_ID"
_LOOPBACK = ("127.0.0.1", "localhost")


def _split_ref(image: str) -> tuple[str, str, str]:
    """``host/repo:tag`` or ``host/repo@sha256:..`` -> (host, repo, reference)."""
    host, _, rest = image.partition("/")
    if "@" in rest:
        repo, _, ref = rest.partition("@")
    else:
        repo, _, ref = rest.rpartition(":")
    return host, repo, ref


class OperatorError(RuntimeError):
    """The real operator returns this error from its reconcile and changes nothing (it requeues)."""


class GpuOperator:
    """Pretends to be GPU Operator ``version``; only ever queries registries on 127.0.0.1."""

    def __init__(
        self,
        store: Store,
        loop: asyncio.AbstractEventLoop,
        version: str = "v25.10.0",
        registry: str | None = None,
        namespace: str = "nvidia-gpu-operator",
    ) -> None:
        self.store = store
        self.loop = loop
        self.version = version
        self.registry = registry
        self.namespace = namespace
        self.tick = 0.2  # seconds between reconciles
        self.pull_delay = 0.2  # seconds a new pod stays ContainerCreating
        self.old_pod_grace = 1.5  # seconds old-generation pods outlive a rollout
        # Order in which GPU nodes are listed ("name" as etcd returns them, or "reverse"): the operator's
        # cluster-wide OS tag comes from the first one, which a real cluster does not let us choose.
        self.list_order = "name"
        self.errors: list[str] = []  # what the last reconcile failed with, as the operator logs it
        # Fault injection: images the nodes fail to pull even though the registry has them (a node-side
        # pull failure: its pods stay in ImagePullBackOff, as with a broken mirror or pull secret).
        self.unpullable: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._doomed: dict[tuple[ResourceType, str], float] = {}  # (kind, name) -> delete at
        self._seen: dict[str, float] = {}  # pod uid -> first seen (monotonic)
        # NVIDIADriver mode (nvd_operator.py): the operator runs both controllers side by side.
        self.drivers = NvidiaDriverMode(self)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Seed namespace and operator Deployment, then run the control loop on ``loop``."""
        self.store.put("Namespace", {"metadata": {"name": self.namespace}, "status": {"phase": "Active"}})
        image = f"nvcr.io/nvidia/gpu-operator:{self.version}"
        self.store.put(
            "Deployment",
            {
                "metadata": {
                    "name": "gpu-operator",
                    "namespace": self.namespace,
                    "labels": {"app": "gpu-operator"},
                },
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "gpu-operator"}},
                    "template": {
                        "metadata": {"labels": {"app": "gpu-operator"}},
                        "spec": {"containers": [{"name": "gpu-operator", "image": image}]},
                    },
                },
                "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1},
            },
        )
        self.store.add_listener(self._on_change)
        self.loop.call_soon_threadsafe(self._spawn)

    def _spawn(self) -> None:
        self._task = self.loop.create_task(self._run())

    def stop(self) -> None:
        """Stop the control loop (call on the loop, as TestCluster.stop does)."""
        if self._task is not None:
            self._task.cancel()

    def _on_change(self, etype: str, res: ResourceType, obj: dict, old: dict | None) -> None:
        spec_changed = old is None or obj.get("spec") != old.get("spec")
        labels_changed = old is None or obj["metadata"].get("labels") != old["metadata"].get("labels")
        watched = res.key in (POLICY.key, DRIVERS.key, GPU_CLUSTERS.key)
        if (watched and (spec_changed or etype == "DELETED")) or (res.key == NODES.key and labels_changed):
            self.loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(ApiError):  # an object vanished under us; the next tick converges
                await self._reconcile()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick)

    def reconcile_now(self, timeout: float = 10) -> None:
        """Run one reconcile from another thread and wait for it (tests use it to avoid sleeps)."""
        asyncio.run_coroutine_threadsafe(self._reconcile(), self.loop).result(timeout)

    # -- what the policy asks for ----------------------------------------------------------------
    def gpu_nodes(self) -> list[dict[str, Any]]:
        """GPU nodes in the order this operator's client lists them (``list_order``; see the README)."""
        nodes = [
            n
            for n in self.store.list(NODES)[0]
            if (n["metadata"].get("labels") or {}).get(GPU_LABEL) == "true"
        ]
        nodes.sort(key=lambda n: n["metadata"]["name"], reverse=self.list_order == "reverse")
        return nodes

    def cluster_os_tag(self, nodes: list[dict[str, Any]]) -> str:
        """ONE OS tag for the whole cluster, from the first GPU node listed.

        NVIDIA/gpu-operator controllers/state_manager.go getGPUNodeOSInfo (v26.7; getGPUNodeOSTag in v26.3,
        kernelFullVersion in v25.x): list GPU nodes with client.Limit(1), read that node's ID and VERSION_ID.
        Raises OperatorError with the operator's own wording where it stops reconciling.
        """
        if not nodes:
            raise OperatorError("no nodes found with GPU present")
        labels = nodes[0]["metadata"].get("labels") or {}
        for key in (OS_ID_LABEL, OS_VERSION_LABEL):
            if key not in labels:
                raise OperatorError(
                    f"unable to retrieve OS {'name' if key == OS_ID_LABEL else 'version'} from label {key}"
                )
        try:
            return gpu_naming.os_tag(self.version, labels[OS_ID_LABEL], labels[OS_VERSION_LABEL])
        except ValueError as exc:
            raise OperatorError(str(exc)) from exc

    def desired(self, policy: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """DaemonSet name -> {image, precompiled, nodes} for the policy and the GPU nodes now.

        Raises OperatorError where the real operator stops reconciling the driver state.
        """
        driver = (policy.get("spec") or {}).get("driver") or {}
        # api/nvidia/v1/clusterpolicy_types.go DriverSpec.IsEnabled: nil counts as enabled.
        if driver.get("enabled") is False:
            return {}
        # state_manager.go step(): with useNvidiaDriverCRD the state-driver is skipped and the
        # ClusterPolicy's driver DaemonSets are deleted (orphaning their pods: see _reconcile).
        if driver.get("useNvidiaDriverCRD") is True:
            return {}
        nodes = self.gpu_nodes()
        if not nodes:
            return {}
        tag_os = self.cluster_os_tag(nodes)
        out: dict[str, dict[str, Any]] = {}
        if not driver.get("usePrecompiled"):
            # Compiled: one DaemonSet per OS release, every one pulling <version>-<cluster tag>.
            for node in nodes:
                labels = node["metadata"]["labels"]
                name = f"{APP}-{labels.get(OS_ID_LABEL)}{labels.get(OS_VERSION_LABEL)}"
                entry = out.setdefault(
                    name,
                    {"image": gpu_naming.compiled_image(driver, tag_os), "precompiled": False, "nodes": []},
                )
                entry["nodes"].append(node["metadata"]["name"])
            return out
        # object_controls.go getKernelVersionsMap: kernel label -> the node's raw ID+VERSION_ID.
        kernels: dict[str, str] = {}
        for node in nodes:
            labels = node["metadata"]["labels"]
            kernel = labels.get(KERNEL_LABEL)
            if not kernel:
                raise OperatorError(f"Label.Node {KERNEL_LABEL!r} not found")
            node_os = f"{labels.get(OS_ID_LABEL, '')}{labels.get(OS_VERSION_LABEL, '')}"
            if kernels.get(kernel, node_os) != node_os:
                raise OperatorError(
                    f"different OS versions found for the same kernel version {kernel}, "
                    "unsupported configuration"
                )
            kernels[kernel] = node_os
        # precompiledDriverDaemonsets: one DaemonSet per kernel (Go map order, not under anyone's control;
        # here the listing order). The name strips the arch, so two arches of one kernel release share a
        # name: the DaemonSet is created, then updated, and the kernel processed last wins.
        for kernel, node_os in kernels.items():
            name = gpu_naming.daemonset_name(kernel, node_os, "")
            if not gpu_naming.valid_object_name(name):
                self.errors.append(
                    f"failed to handle Precompiled Driver Daemonset for version {kernel}: DaemonSet.apps "
                    f"{name!r} is invalid: metadata.name: a lowercase RFC 1123 subdomain must consist of "
                    "lower case alphanumeric characters, '-' or '.'"
                )
                continue
            out[name] = {
                "image": gpu_naming.precompiled_image(driver, kernel, tag_os),
                "precompiled": True,
                # transformPrecompiledDriverDaemonset: nodeSelector kernel-version.full = this kernel.
                "selector": {KERNEL_LABEL: kernel},
                "nodes": [
                    n["metadata"]["name"]
                    for n in nodes
                    if n["metadata"]["labels"].get(KERNEL_LABEL) == kernel
                ],
            }
        return out

    # -- reconcile ------------------------------------------------------------------------------
    async def _reconcile(self) -> None:
        policies = self.store.list(POLICY)[0]
        if not policies:
            self._collect_policy_dependents()
            await self._reconcile_drivers()
            return
        policy = policies[0]
        self.errors = []
        try:
            want = self.desired(policy)
        except OperatorError as exc:
            # The operator returns the error and requeues: nothing is changed, the policy says notReady.
            self.errors.append(str(exc))
            self._report(policy, {})
            await self._reconcile_drivers()
            return
        orphan = ((policy.get("spec") or {}).get("driver") or {}).get("useNvidiaDriverCRD") is True
        now = time.monotonic()
        owned = {
            d["metadata"]["name"]: d
            for d in self.store.list(DAEMONSETS, self.namespace)[0]
            if (d["metadata"].get("labels") or {}).get("app") == APP
        }
        pods = [
            p
            for p in self.store.list(PODS, self.namespace)[0]
            if (p["metadata"].get("labels") or {}).get("app") == APP
        ]
        for name in owned:
            if name not in want:
                self._doom(DAEMONSETS, name, now)
                if orphan:
                    continue  # cleanupAllDriverDaemonSets(DeletePropagationOrphan): the pods keep running
                for pod in pods:
                    if pod["metadata"]["labels"].get("nvidia.com/ds") == name:
                        self._doom(PODS, pod["metadata"]["name"], now)
        for name, spec in want.items():
            ds = owned.get(name)
            self._doomed.pop((DAEMONSETS, name), None)
            if ds is None:
                ds = self.store.create(DAEMONSETS, self.namespace, self._daemonset(name, spec))
            elif self._template_of(ds) != self._template(spec):
                ds = self.store.mutate(
                    DAEMONSETS, self.namespace, name, lambda d, s=spec: self._set_template(d, s)
                )
            generation = str(ds["metadata"]["generation"])
            current = [
                p
                for p in pods
                if p["metadata"]["labels"].get("nvidia.com/ds") == name
                and p["metadata"]["labels"].get("pod-template-generation") == generation
            ]
            for pod in pods:
                if pod["metadata"]["labels"].get("nvidia.com/ds") == name and pod not in current:
                    self._doom(PODS, pod["metadata"]["name"], now)
            have_nodes = {p["spec"].get("nodeName") for p in current}
            for node in spec["nodes"]:
                if node not in have_nodes:
                    self.store.create(PODS, self.namespace, self._pod(name, spec, generation, node, ds))
        self.drivers.sync(now)
        await self._pull_images(now)
        self._collect(now)
        self._report(policy, want)
        self.drivers.report()

    def _collect_policy_dependents(self) -> None:
        # The ClusterPolicy is gone: garbage collection deletes what it owned (object_controls.go sets it as
        # controller of every operand object), here its driver DaemonSets and their pods.
        now = time.monotonic()
        for ds in self.store.list(DAEMONSETS, self.namespace)[0]:
            if (ds["metadata"].get("labels") or {}).get("app") == APP:
                self._doom(DAEMONSETS, ds["metadata"]["name"], now)
        for pod in self.store.list(PODS, self.namespace)[0]:
            if (pod["metadata"].get("labels") or {}).get("app") == APP:
                self._doom(PODS, pod["metadata"]["name"], now)

    async def _reconcile_drivers(self) -> None:
        # The NVIDIADriver controller alone (no ClusterPolicy: the GPUCluster stack, or CRs before a policy).
        now = time.monotonic()
        self.drivers.sync(now)
        await self._pull_images(now)
        self._collect(now)
        self.drivers.report()

    def _doom(self, res: ResourceType, name: str, now: float) -> None:
        self._doomed.setdefault((res, name), now + self.old_pod_grace)

    def _collect(self, now: float) -> None:
        for (res, name), when in list(self._doomed.items()):
            if when <= now:
                self._doomed.pop((res, name))
                with contextlib.suppress(ApiError):
                    self.store.delete(res, self.namespace, name)

    @staticmethod
    def _template_of(ds: dict[str, Any]) -> tuple[str, dict[str, str]]:
        pod = ds["spec"]["template"]["spec"]
        return pod["containers"][0]["image"], pod.get("nodeSelector") or {}

    @staticmethod
    def _template(spec: dict[str, Any]) -> tuple[str, dict[str, str]]:
        return spec["image"], spec.get("selector") or {}

    @staticmethod
    def _labels(name: str, spec: dict[str, Any]) -> dict[str, str]:
        labels = {"app": APP, "app.kubernetes.io/component": "nvidia-driver", "nvidia.com/ds": name}
        if spec["precompiled"]:
            labels["nvidia.com/precompiled"] = "true"
        return labels

    def _set_template(self, ds: dict[str, Any], spec: dict[str, Any]) -> None:
        ds["spec"]["template"]["spec"]["containers"][0]["image"] = spec["image"]
        ds["spec"]["template"]["spec"]["nodeSelector"] = spec.get("selector") or {}

    def _daemonset(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        labels = self._labels(name, spec)
        return {
            "metadata": {"name": name, "namespace": self.namespace, "labels": labels},
            "spec": {
                "selector": {"matchLabels": {"app": APP, "nvidia.com/ds": name}},
                "updateStrategy": {"type": "OnDelete"},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "nodeSelector": spec.get("selector") or {},
                        "containers": [{"name": "nvidia-driver-ctr", "image": spec["image"]}],
                    },
                },
            },
        }

    def _pod(
        self, name: str, spec: dict[str, Any], generation: str, node: str, ds: dict[str, Any]
    ) -> dict[str, Any]:
        labels = {**self._labels(name, spec), "pod-template-generation": generation}
        owner = {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "name": name,
            "uid": ds["metadata"]["uid"],
            "controller": True,
        }
        container = {"name": "nvidia-driver-ctr", "image": spec["image"]}
        waiting = {"waiting": {"reason": "ContainerCreating"}}
        return {
            "metadata": {"name": f"{name}-{random_suffix()}", "labels": labels, "ownerReferences": [owner]},
            "spec": {"nodeName": node, "containers": [container]},
            "status": {
                "phase": "Pending",
                "containerStatuses": [self._cstatus(container, waiting, False, "")],
            },
        }

    @staticmethod
    def _cstatus(
        container: dict[str, Any], state: dict[str, Any], ready: bool, image_id: str
    ) -> dict[str, Any]:
        return {
            "name": container["name"],
            "image": container["image"],
            "imageID": image_id,
            "ready": ready,
            "started": ready,
            "restartCount": 0,
            "state": state,
        }

    # -- image pulls ----------------------------------------------------------------------------
    def _digest(self, image: str) -> str | None:
        host, repo, ref = _split_ref(image)
        if host.split(":")[0] not in _LOOPBACK or (self.registry and host != self.registry):
            return None  # never reach beyond this machine: other registries are unpullable here
        try:
            resp = requests.head(
                f"http://{host}/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_ACCEPT}, timeout=3
            )
        except requests.RequestException:
            return None
        return resp.headers.get("Docker-Content-Digest") if resp.status_code == 200 else None

    async def _pull_images(self, now: float) -> None:
        # Every driver pod, of the ClusterPolicy's DaemonSets and of the NVIDIADriver ones (whose app label is
        # their DaemonSet's name): both carry app.kubernetes.io/component=nvidia-driver.
        pods = [
            p
            for p in self.store.list(PODS, self.namespace)[0]
            if (p["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "nvidia-driver"
        ]
        for pod in pods:
            status = (pod.get("status") or {}).get("containerStatuses") or [{}]
            if status[0].get("ready") or (PODS, pod["metadata"]["name"]) in self._doomed:
                continue
            if not self._old_enough(pod):
                continue
            container = pod["spec"]["containers"][0]
            precompiled = pod["metadata"]["labels"].get("nvidia.com/precompiled") == "true"
            digest = await self.loop.run_in_executor(None, self._digest, container["image"])
            if container["image"] in self.unpullable:
                digest = None
            if digest is None and not precompiled:
                digest = "sha256:" + "0" * 64  # compiled mode: the driver is built on the node
            if digest:
                _, repo, _ = _split_ref(container["image"])
                host = container["image"].split("/")[0]
                image_id = f"{host}/{repo}@{digest}"
                status = {
                    "phase": "Running",
                    "startTime": now_rfc3339(),
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [
                        self._cstatus(container, {"running": {"startedAt": now_rfc3339()}}, True, image_id)
                    ],
                }
            else:
                waiting = {
                    "waiting": {
                        "reason": "ImagePullBackOff",
                        "message": f'Back-off pulling image "{container["image"]}"',
                    }
                }
                status = {
                    "phase": "Pending",
                    "conditions": [{"type": "Ready", "status": "False"}],
                    "containerStatuses": [self._cstatus(container, waiting, False, "")],
                }
            if status != pod.get("status"):
                with contextlib.suppress(ApiError):
                    self.store.mutate(
                        PODS, self.namespace, pod["metadata"]["name"], lambda p, s=status: p.update(status=s)
                    )

    def _old_enough(self, pod: dict[str, Any]) -> bool:
        # creationTimestamp has second precision; first sight gives the sub-second ContainerCreating.
        first = self._seen.setdefault(pod["metadata"]["uid"], time.monotonic())
        return time.monotonic() - first >= self.pull_delay

    # -- status ---------------------------------------------------------------------------------
    def _report(self, policy: dict[str, Any], want: dict[str, dict[str, Any]]) -> None:
        pods = [
            p
            for p in self.store.list(PODS, self.namespace)[0]
            if (p["metadata"].get("labels") or {}).get("app") == APP
            and (PODS, p["metadata"]["name"]) not in self._doomed
            and p["metadata"]["labels"].get("nvidia.com/ds") in want  # orphans belong to nobody
        ]
        expected = sum(len(spec["nodes"]) for spec in want.values())
        ready = [
            p for p in pods if ((p.get("status") or {}).get("containerStatuses") or [{}])[0].get("ready")
        ]
        for name in want:
            ds_pods = [p for p in ready if p["metadata"]["labels"].get("nvidia.com/ds") == name]
            self._ds_status(name, len(want[name]["nodes"]), len(ds_pods))
        error = "; ".join(self.errors)
        ok = not error and len(ready) == expected and len(pods) == expected
        state = "ready" if ok else "notReady"
        # metav1.Condition, as the CRD requires: type, status, reason, message, lastTransitionTime.
        since = now_rfc3339()
        message = error or ("all driver pods are ready" if ok else "driver pods are not ready yet")
        conditions = [
            {
                "type": "Ready",
                "status": "True" if state == "ready" else "False",
                "reason": "Reconciled" if state == "ready" else "DriverNotReady",
                "message": message,
                "lastTransitionTime": since,
            },
            {
                "type": "Error",
                "status": "True" if error else "False",
                "reason": "ReconcileFailed" if error else ("Ready" if ok else "DriverNotReady"),
                "message": message,
                "lastTransitionTime": since,
            },
        ]
        old = policy.get("status") or {}
        old_message = next(
            (c.get("message") for c in old.get("conditions") or [] if c["type"] == "Error"), None
        )
        if old.get("state") != state or old_message != message:
            new_status = {**old, "state": state, "namespace": self.namespace, "conditions": conditions}
            with contextlib.suppress(ApiError):
                self.store.mutate(
                    POLICY, None, policy["metadata"]["name"], lambda p: p.update(status=new_status)
                )

    def _ds_status(self, name: str, desired: int, ready: int) -> None:
        status = {
            "desiredNumberScheduled": desired,
            "currentNumberScheduled": desired,
            "updatedNumberScheduled": desired,
            "numberReady": ready,
            "numberAvailable": ready,
        }
        ds = self.store.find(DAEMONSETS, self.namespace, name)
        if ds is not None and ds.get("status") != status:
            with contextlib.suppress(ApiError):
                self.store.mutate(DAEMONSETS, self.namespace, name, lambda d: d.update(status=status))
