"""A kubelet stand-in: moves pods Pending -> Running -> Succeeded/Failed as their scenario says.

Pods owned by a DaemonSet are left to the GPU-operator stand-in. Everything here runs on the
server's event loop; store listeners (any thread) hand work over with ``call_soon_threadsafe``.

Placement and architecture: a pod goes to the first node whose labels match its ``nodeSelector`` (the
kubelet's own ``testcluster-node``, amd64, first, then the store's Nodes by name); a pod no node matches
stays Pending, ``Unschedulable``, as the default scheduler leaves it. A container whose image is known
to be single-arch (``image_arches``) and of another arch than its node fails like runc on CRI-O:
``exec <binary>: exec format error`` in its log, exit code 255 (runc's ``Init`` prints the exec error
to the container's stderr and exits 255). A single-arch manifest pulls on any node (only a manifest
list is matched to the node's platform), so the failure is at exec, not at pull.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from testcluster import gpuworkload, hostrun
from testcluster.errors import ApiError
from testcluster.podlogs import LogBuffer
from testcluster.resources import ResourceType, by_kind
from testcluster.scenarios import ScenarioResult, Scenarios
from testcluster.store import Store, now_rfc3339, random_suffix

PODS = by_kind("Pod")
EVENTS = by_kind("Event")
NODES = by_kind("Node")
SIDECAR = "airflow-xcom-sidecar"
ARCH_LABEL = "kubernetes.io/arch"
EXEC_FORMAT_EXIT = 255


@dataclass
class PodRun:
    """The runtime side of one pod: its volumes on disk, its logs, its process."""

    namespace: str
    name: str
    pod: dict[str, Any]
    pod_dir: Path
    mounts: dict[str, list[tuple[str, Path]]] = field(default_factory=dict)
    logs: dict[str, LogBuffer] = field(default_factory=dict)
    running: set[str] = field(default_factory=set)
    sidecar_killed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    proc: asyncio.subprocess.Process | None = None
    finished: bool = False


def _container_status(container: dict[str, Any], state: dict[str, Any], ready: bool) -> dict[str, Any]:
    return {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": "",
        "containerID": f"testcluster://{container['name']}",
        "ready": ready,
        "started": "running" in state,
        "restartCount": 0,
        "state": state,
    }


def _termination_message(message: str | None, exit_code: int, base: dict[str, Any], log: Any) -> str | None:
    """The container's termination message; with ``FallbackToLogsOnError``, a failing container's log tail.

    As the kubelet does (kuberuntime_container.go, ``getTerminationMessage`` and
    ``readLastStringFromContainerLogs``): the last 80 lines, at most 2048 bytes, only when the
    container wrote no message itself and exited non-zero.
    """
    if message or exit_code == 0 or base.get("terminationMessagePolicy") != "FallbackToLogsOnError":
        return message
    return "".join(f"{line}\n" for _, line in log.lines[-80:])[-2048:] or None


def _terminated(exit_code: int, started: str, message: str | None = None) -> dict[str, Any]:
    term: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": "Completed" if exit_code == 0 else "Error",
        "startedAt": started,
        "finishedAt": now_rfc3339(),
    }
    if message:
        term["message"] = message
    return {"terminated": term}


class Kubelet:
    """Runs every pod created in the store (except DaemonSet pods) according to its scenario."""

    def __init__(self, store: Store, scenarios: Scenarios, workdir: Path, kubeconfig: Path) -> None:
        self.store = store
        self.scenarios = scenarios
        self.workdir = workdir
        self.kubeconfig = kubeconfig
        self.node_name = "testcluster-node"
        self.node_labels = {
            ARCH_LABEL: "amd64",
            "kubernetes.io/os": "linux",
            "kubernetes.io/hostname": self.node_name,
        }
        # image reference -> GOARCH of a single-arch image (e.g. a release payload's DTK). Images not
        # listed are taken as multi-arch manifest lists: they run on any node.
        self.image_arches: dict[str, str] = {}
        # node -> the CUDA error its GPU returns (e.g. "unknown error"): GPU workloads there fail.
        self.gpu_faults: dict[str, str] = {}
        self.runs: dict[tuple[str, str], PodRun] = {}
        self.loop: asyncio.AbstractEventLoop | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start reacting to pod changes; work is done on ``loop``."""
        self.loop = loop
        self.store.add_listener(self._on_change)

    def _on_change(
        self, etype: str, res: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> None:
        if res.key != PODS.key or self.loop is None:
            return
        owners = obj["metadata"].get("ownerReferences") or []
        if any(o.get("kind") == "DaemonSet" for o in owners):
            return
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if etype == "ADDED":
            self.loop.call_soon_threadsafe(self._start, key, obj)
        elif etype == "DELETED":
            self.loop.call_soon_threadsafe(self._forget, key)

    # -- lifecycle ------------------------------------------------------------------------------
    def _start(self, key: tuple[str, str], pod: dict[str, Any]) -> None:
        pod_dir = self.workdir / "pods" / key[0] / f"{key[1]}-{random_suffix()}"
        pod_dir.mkdir(parents=True)
        run = PodRun(key[0], key[1], pod, pod_dir)
        for container in pod["spec"].get("containers") or []:
            run.logs[container["name"]] = LogBuffer()
        self.runs[key] = run
        run.task = asyncio.get_running_loop().create_task(self._run(run))

    def _forget(self, key: tuple[str, str]) -> None:
        run = self.runs.pop(key, None)
        if run is None:
            return
        self._halt(run)
        shutil.rmtree(run.pod_dir, ignore_errors=True)

    def _halt(self, run: PodRun) -> None:
        run.finished = True
        if run.task is not None and not run.task.done():
            run.task.cancel()
        if run.proc is not None and run.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                run.proc.send_signal(signal.SIGKILL)
        for buf in run.logs.values():
            buf.close()
        run.running.clear()

    # -- placement ------------------------------------------------------------------------------
    def nodes(self) -> list[tuple[str, dict[str, str]]]:
        """(name, labels) of every node a pod can land on: this kubelet's own first, then the store's."""
        stored = sorted(
            (n["metadata"]["name"], n["metadata"].get("labels") or {}) for n in self.store.list(NODES)[0]
        )
        return [(self.node_name, self.node_labels), *(n for n in stored if n[0] != self.node_name)]

    def labels_of(self, node: str) -> dict[str, str]:
        """The labels of a node by name ({} when unknown)."""
        return next((labels for name, labels in self.nodes() if name == node), {})

    def _place(self, pod: dict[str, Any]) -> str | None:
        """The node for a pod: its nodeName, else the first whose labels match its nodeSelector."""
        spec = pod["spec"]
        if spec.get("nodeName"):
            return spec["nodeName"]
        selector = spec.get("nodeSelector") or {}
        gpus = self._nodes_with_gpus() if gpuworkload.requests_gpu(pod) else None
        for name, labels in self.nodes():
            if all(labels.get(k) == val for k, val in selector.items()) and (gpus is None or name in gpus):
                return name
        return None

    def _nodes_with_gpus(self) -> set[str]:
        return gpuworkload.nodes_with_gpus(self.store.list(PODS)[0])

    def _gpu_unschedulable_message(self, pod: dict[str, Any]) -> str:
        selector = pod["spec"].get("nodeSelector") or {}
        nodes = self.nodes()
        fit = [n for n, labels in nodes if all(labels.get(k) == v for k, v in selector.items())]
        return gpuworkload.insufficient_message(len(nodes), len(fit))

    def _exec_format_error(self, container: dict[str, Any], node: str) -> str | None:
        """runc's message when the container's image is of another arch than the node, else None."""
        image_arch = self.image_arches.get(container.get("image", ""))
        node_arch = self.labels_of(node).get(ARCH_LABEL)
        if image_arch is None or image_arch == node_arch:
            return None
        binary = (list(container.get("command") or []) + list(container.get("args") or []) or ["sh"])[0]
        # runc resolves a bare name on the container's PATH before exec'ing it.
        path = binary if binary.startswith("/") else f"/usr/bin/{binary}"
        return f"exec {path}: exec format error"

    def _update(self, run: PodRun, status: dict[str, Any], node: str | None = None) -> bool:
        """Merge ``status`` into the pod (and bind it to ``node``); False when the pod is gone."""

        def edit(pod: dict[str, Any]) -> None:
            pod.setdefault("status", {}).update(status)
            if node is not None:
                pod["spec"].setdefault("nodeName", node)

        try:
            run.pod = self.store.mutate(PODS, run.namespace, run.name, edit)
        except ApiError:
            return False
        return True

    def _event(self, run: PodRun, reason: str, message: str, etype: str = "Normal") -> None:
        stamp = now_rfc3339()
        body = {
            "metadata": {"name": f"{run.name}.{random_suffix(10)}", "namespace": run.namespace},
            "involvedObject": {
                "kind": "Pod",
                "name": run.name,
                "namespace": run.namespace,
                "uid": run.pod["metadata"].get("uid"),
            },
            "reason": reason,
            "message": message,
            "type": etype,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": "kubelet", "host": run.pod["spec"].get("nodeName") or self.node_name},
        }
        self.store.create(EVENTS, run.namespace, body)

    def _unschedulable(self, run: PodRun, message: str | None = None) -> None:
        """What the default scheduler leaves on a pod no node fits: Pending, PodScheduled False."""
        count = len(self.nodes())
        message = message or (
            f"0/{count} nodes are available: {count} node(s) didn't match Pod's node affinity/selector. "
            f"preemption: 0/{count} nodes are available: {count} Preemption is not helpful for scheduling."
        )
        condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
        self._update(run, {"phase": "Pending", "conditions": [condition]})
        self._event(run, "FailedScheduling", message, "Warning")

    async def _run(self, run: PodRun) -> None:
        pod = run.pod
        scenario = self.scenarios.for_pod(pod)
        containers = pod["spec"]["containers"]
        base = containers[0]
        node = self._place(pod)
        if node is None and gpuworkload.requests_gpu(pod):
            # The scheduler retries: the pod is bound once a node of its selector has a GPU to give.
            self._unschedulable(run, self._gpu_unschedulable_message(pod))
            while node is None:
                await asyncio.sleep(0.2)
                node = self._place(pod)
        if node is None:
            self._unschedulable(run)
            return
        waiting = {"waiting": {"reason": "ContainerCreating"}}
        if not self._update(
            run,
            {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [_container_status(c, waiting, False) for c in containers],
            },
            node,
        ):
            return
        self._event(run, "Scheduled", f"Successfully assigned {run.namespace}/{run.name} to {node}")
        await asyncio.sleep(scenario.pending)
        if not await self._run_init_containers(run, node):
            return
        volumes = hostrun.materialise_volumes(self.store, pod, run.pod_dir)
        run.mounts = {c["name"]: hostrun.mount_map(c, volumes) for c in containers}
        started = now_rfc3339()
        running = {"running": {"startedAt": started}}
        run.running = {c["name"] for c in containers}
        if not self._update(
            run,
            {
                "phase": "Running",
                "startTime": started,
                "podIP": "10.128.0.10",
                "conditions": [
                    {"type": t, "status": "True"}
                    for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
                ],
                "containerStatuses": [_container_status(c, running, True) for c in containers],
            },
        ):
            return
        for c in containers:
            self._event(run, "Started", f"Started container {c['name']}")
        if scenario.evict_after is not None:
            asyncio.get_running_loop().call_later(scenario.evict_after, self._evict, run)

        exit_code, message = await self._run_base(run, base, scenario)
        run.running.discard(base["name"])
        run.logs[base["name"]].close()
        others = [c for c in containers[1:]]
        statuses = [_container_status(base, _terminated(exit_code, started, message), False)]
        statuses += [_container_status(c, running, True) for c in others]
        if not self._update(run, {"containerStatuses": statuses}):
            return
        if any(c["name"] == SIDECAR for c in others):
            # Like the real sidecar, it keeps the pod Running until KPO kills it over exec.
            await run.sidecar_killed.wait()
        statuses = [statuses[0]] + [_container_status(c, _terminated(0, started), False) for c in others]
        for c in others:
            run.logs[c["name"]].close()
        run.running.clear()
        run.finished = True
        ready = [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}]
        self._update(
            run,
            {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "conditions": ready,
                "containerStatuses": statuses,
            },
        )

    async def _run_init_containers(self, run: PodRun, node: str) -> bool:
        """Init containers run to completion first (their work is the scenario's); False: the pod failed.

        Only the architecture is checked: an init container of another arch than its node fails with
        ``exec format error`` and, as restartPolicy Never has it, the whole pod fails.
        """
        inits = run.pod["spec"].get("initContainers") or []
        if not inits:
            return True
        now = now_rfc3339()
        statuses = []
        failed = None
        for container in inits:
            error = self._exec_format_error(container, node)
            run.logs.setdefault(container["name"], LogBuffer())
            if error and failed is None:
                run.logs[container["name"]].append(error)
                statuses.append(_container_status(container, _terminated(EXEC_FORMAT_EXIT, now), False))
                failed = container["name"]
            elif failed is None:
                statuses.append(_container_status(container, _terminated(0, now), True))
            else:
                statuses.append(
                    _container_status(container, {"waiting": {"reason": "PodInitializing"}}, False)
                )
            run.logs[container["name"]].close()
        if failed is None:
            return self._update(run, {"initContainerStatuses": statuses})
        run.finished = True
        waiting = {"waiting": {"reason": "PodInitializing"}}
        self._update(
            run,
            {
                "phase": "Failed",
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized"},
                ],
                "initContainerStatuses": statuses,
                "containerStatuses": [
                    _container_status(c, waiting, False) for c in run.pod["spec"]["containers"]
                ],
            },
        )
        self._event(run, "Failed", f"Init container {failed} failed: exec format error", "Warning")
        return False

    async def _run_base(self, run: PodRun, base: dict[str, Any], scenario: Any) -> tuple[int, str | None]:
        log = run.logs[base["name"]]
        mounts = run.mounts.get(base["name"], [])
        error = self._exec_format_error(base, run.pod["spec"].get("nodeName") or self.node_name)
        if error is not None:
            # The process never starts: no scenario action, no host command, no XCom file.
            log.append(error)
            return EXEC_FORMAT_EXIT, None
        if gpuworkload.requests_gpu(run.pod) and not scenario.run_on_host and scenario.action is None:
            node = run.pod["spec"].get("nodeName") or self.node_name
            exit_code, lines = gpuworkload.run(base, node, self.gpu_faults.get(node))
            for line in lines:
                await asyncio.sleep(scenario.duration / (len(lines) + 1))
                log.append(line)
            return exit_code, _termination_message(None, exit_code, base, log)
        if scenario.run_on_host:
            env = hostrun.container_env(self.store, run.pod, base, mounts)
            home = run.pod_dir / "home"
            home.mkdir(exist_ok=True)
            command = list(base.get("command") or []) + list(base.get("args") or [])

            def remember(proc: asyncio.subprocess.Process) -> None:
                run.proc = proc

            exit_code = await hostrun.run_on_host(
                command,
                hostrun.host_env(env, self.kubeconfig, mounts, home),
                run.pod_dir,
                log.append,
                remember,
            )
            return exit_code, _termination_message(scenario.termination_message, exit_code, base, log)

        lines = list(scenario.logs)
        step = scenario.duration / (len(lines) + 1)
        began = asyncio.get_running_loop().time()
        for line in lines:
            await asyncio.sleep(step)
            log.append(line)
        result = ScenarioResult()
        if scenario.action is not None:
            action = scenario.action
            outcome = await asyncio.get_running_loop().run_in_executor(None, action, run.pod)
            result = outcome or result
            for line in result.logs or []:
                log.append(line)
        remaining = scenario.duration - (asyncio.get_running_loop().time() - began)
        if remaining > 0:
            await asyncio.sleep(remaining)
        xcom = result.xcom if result.xcom is not None else scenario.xcom
        target = hostrun.host_path(f"{hostrun.XCOM_MOUNT_PATH}/return.json", mounts)
        if xcom is not None and target is not None:
            target.write_text(json.dumps(xcom))
        exit_code = result.exit_code if result.exit_code is not None else scenario.exit_code
        message = result.termination_message or scenario.termination_message
        return exit_code, _termination_message(message, exit_code, base, log)

    # -- used by faults and the exec websocket ---------------------------------------------------
    def _evict(self, run: PodRun) -> None:
        if run.finished or self.runs.get((run.namespace, run.name)) is not run:
            return
        self._halt(run)
        started = (run.pod.get("status") or {}).get("startTime") or now_rfc3339()
        containers = run.pod["spec"]["containers"]
        self._update(
            run,
            {
                "phase": "Failed",
                "reason": "Evicted",
                "message": "The node was low on resource: memory. ",
                "containerStatuses": [
                    _container_status(c, _terminated(137, started), False) for c in containers
                ],
            },
        )
        self._event(run, "Evicted", "The node was low on resource: memory.", "Warning")

    async def _evict_matching(self, target: str) -> int:
        hits = [
            run
            for run in list(self.runs.values())
            if not run.finished
            and (run.name == target or (run.pod["metadata"].get("labels") or {}).get("task_id") == target)
        ]
        for run in hits:
            self._evict(run)
        return len(hits)

    def evict(self, target: str) -> int:
        """Evict unfinished pods named ``target`` or labelled ``task_id=target`` (thread-safe)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(self._evict_matching(target), self.loop).result(10)

    def run_of(self, namespace: str, name: str) -> PodRun | None:
        """The runtime of a pod, None when the kubelet does not run it."""
        return self.runs.get((namespace, name))

    def kill_container(self, run: PodRun, container: str) -> None:
        """Signal a container to stop; only the XCom sidecar reacts (it exits 0)."""
        if container == SIDECAR:
            run.sidecar_killed.set()

    def log_since(self, seconds: int | None) -> datetime | None:
        """Helper for ``sinceSeconds``."""
        if not seconds:
            return None
        return datetime.fromtimestamp(datetime.now(UTC).timestamp() - seconds, UTC)
