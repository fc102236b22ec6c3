"""The simulated world the pipeline talks to, on the local test cluster.

Shared by the end-to-end tests and ``make demo``. What cannot run here (``oc adm release info``, a DTK
image, a podman build) is simulated by scenario callbacks; everything else runs for real on the host:
``kubectl`` against the test server (inspect, patch, verify, rollback) and ``skopeo`` against a real
registry (check, push). The GPU-operator stand-in then pulls what the pipeline published.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from precompiled_drivers import procedure
from testcluster import Scenario, ScenarioResult
from testcluster.cluster import TestCluster
from testcluster.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "nvidia-precompiled-drivers"
OPERATOR_NAMESPACE = "nvidia-gpu-operator"

# release -> (DTK KERNEL_VERSION on x86_64, RHEL_VERSION), as /etc/driver-toolkit-release.json would say.
# The aarch64 payload of a release ships the same kernel build: `.x86_64` becomes `.aarch64`.
RELEASES: dict[str, tuple[str, str]] = {
    "4.18.12": ("5.14.0-427.50.1.el9_4.x86_64", "9.4"),
    "4.18.14": ("5.14.0-427.55.1.el9_4.x86_64", "9.4"),
    "4.19.3": ("5.14.0-570.12.1.el9_6.x86_64", "9.6"),
    "4.19.5": ("5.14.0-570.19.1.el9_6.x86_64", "9.6"),
    "4.20.3": ("5.14.0-570.39.1.el9_6.x86_64", "9.6"),
    "4.20.4": ("5.14.0-570.42.2.el9_6.x86_64", "9.6"),
}
# Releases whose payload also carries driver-toolkit-10 (openshift/driver-toolkit
# manifests/image-references-rhel10, Dockerfile.rhel10): its kernel and RHEL_VERSION.
RELEASES_RHEL10: dict[str, tuple[str, str]] = {
    "4.20.4": ("6.12.0-55.20.1.el10_0.x86_64", "10.0"),
}
STREAM = "driver-toolkit"
STREAM_10 = "driver-toolkit-10"
# Pipeline arch -> kubernetes.io/arch (GOARCH) of nodes and single-arch images.
GOARCH = {"x86_64": "amd64", "aarch64": "arm64"}

# Secret values planted so tests can prove they never leak (fake, like everything here).
SECRET_VALUES = {
    "rhsm_org": "org-8c1f2e44",
    "rhsm_key": "activation-key-5d3a9b7e",
    "pull_auth": "cGlwZWxpbmU6cHVsbC1zZWNyZXQtdmFsdWUtOTk=",  # pipeline:pull-secret-value-99
    "push_auth": "cGlwZWxpbmU6cHVzaC1zZWNyZXQtdmFsdWUtNDI=",  # pipeline:push-secret-value-42
}


# Pod steps simulated by scenario callbacks: they need a release payload, a DTK image or a podman build.
SIMULATED_STEPS = ("resolve_driver_toolkit", "inspect_driver_toolkit", "build_driver_image")
# Every other pod step runs its real script on the host (kubectl against the test server, real skopeo).
HOST_STEPS = tuple(s.task_id for s in procedure.pod_steps() if s.task_id not in SIMULATED_STEPS)


def dtk_image(version: str, arch: str = "x86_64", stream: str = STREAM) -> str:
    """A stable, fake DTK pull spec by digest for a release, arch and stream (a single-arch image)."""
    seed = f"dtk-{version}" if (arch, stream) == ("x86_64", STREAM) else f"{stream}-{version}-{arch}"
    digest = hashlib.sha256(seed.encode()).hexdigest()
    return f"quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:{digest}"


def toolkit_release_file(kernel_x86: str, rhel: str, arch: str) -> dict[str, str]:
    """``/etc/driver-toolkit-release.json`` of a DTK, in the format openshift/driver-toolkit writes.

    Dockerfile (and Dockerfile.rhel10), last layer: KERNEL_VERSION is ``rpm -q --qf
    "%{VERSION}-%{RELEASE}.%{ARCH}" kernel-devel``, RT_KERNEL_VERSION the same for kernel-rt-core plus
    ``+rt``, RHEL_VERSION dnf's releasever. kernel-rt is installed on x86_64 only, so on aarch64 rpm's
    message ``package kernel-rt-core is not installed`` is what RT_KERNEL_VERSION holds. The 64k kernel
    (kernel-64k-devel, aarch64) has the same version and is not named in the file.
    """
    kernel = kernel_x86.removesuffix(".x86_64") + f".{arch}"
    rt = f"{kernel}+rt" if arch == "x86_64" else "package kernel-rt-core is not installed"
    return {"KERNEL_VERSION": kernel, "RT_KERNEL_VERSION": rt, "RHEL_VERSION": rhel}


def kube_connection(cluster: TestCluster) -> str:
    """The Airflow ``kubernetes`` connection (JSON form) that reaches ``cluster``'s API server."""
    return json.dumps(
        {"conn_type": "kubernetes", "extra": {"kube_config_path": str(cluster.kubeconfig_path)}}
    )


def pod_env(pod: Mapping[str, Any]) -> dict[str, str]:
    """The base container's plain environment variables."""
    container = pod["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container.get("env") or []}


def update_graph(channel: str, versions: list[str], edges: list[tuple[str, str]]) -> dict[str, Any]:
    """A Cincinnati-shaped graph document (``nodes``/``edges``/``conditionalEdges``)."""
    nodes = [
        {
            "version": v,
            "payload": "quay.io/openshift-release-dev/ocp-release@sha256:"
            + hashlib.sha256(v.encode()).hexdigest(),
            "metadata": {"io.openshift.upgrades.graph.release.channels": channel},
        }
        for v in versions
    ]
    index = {v: i for i, v in enumerate(versions)}
    return {
        "version": 1,
        "nodes": nodes,
        "edges": [[index[a], index[b]] for a, b in edges],
        "conditionalEdges": [],
    }


class GraphServer:
    """Serves update-graph documents on 127.0.0.1 (``GET /graph?channel=&arch=``)."""

    def __init__(self, graphs: Mapping[str, dict[str, Any]]) -> None:
        graphs_by_channel = dict(graphs)
        self.requests = 0  # graph requests served, so a test can wait for a poll
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                doc = graphs_by_channel.get((query.get("channel") or [""])[0])
                body = json.dumps(doc or {"version": 1, "nodes": [], "edges": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._graphs = graphs_by_channel
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/graph"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def set_graph(self, channel: str, doc: dict[str, Any]) -> None:
        """Serve ``doc`` for ``channel`` from the next request on (a new release appears)."""
        self._graphs[channel] = doc

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@dataclass
class World:
    """Seeds the cluster, installs the step scenarios and gives the env that points Airflow at it."""

    cluster: TestCluster
    registry: Registry
    operator_version: str = "v26.7.0"
    releases: dict[str, tuple[str, str]] = field(default_factory=lambda: dict(RELEASES))
    releases_rhel10: dict[str, tuple[str, str]] = field(default_factory=lambda: dict(RELEASES_RHEL10))
    # (task_id, what it was for, node it ran on, its nodeSelector) of every DTK inspection and build
    placements: list[tuple[str, str, str, dict[str, str]]] = field(default_factory=list)
    builds: list[str] = field(default_factory=list)  # staging refs built, in order
    step_seconds: float = 0.2
    # Every pod step Running for exactly this long (host steps do their real work inside it); for bench/.
    fixed_seconds: float | None = None
    # (epoch seconds, task_id, run_id label) of every pod run so far (fixed_seconds only)
    pods: list[tuple[float, str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # A fleet's cluster names (their task groups) whose pods this cluster may run: its own, for the
    # hub also the others' (none for one cluster: task ids without a group).
    groups: tuple[str, ...] = ()

    @property
    def repository(self) -> str:
        """Where the pipeline publishes (what the ClusterPolicy will point at)."""
        return f"{self.registry.host}/nvidia"

    @property
    def staging_repository(self) -> str:
        """Stand-in for the OpenShift internal registry."""
        return f"{self.registry.host}/staging"

    def install(self) -> World:
        """Operator stand-in, Secrets, and one scenario per step."""
        self.cluster.enable_operator(
            self.operator_version, registry=self.registry.host, namespace=OPERATOR_NAMESPACE
        )
        store = self.cluster.store
        store.put("Namespace", {"metadata": {"name": NAMESPACE}, "status": {"phase": "Active"}})
        auths = {"auths": {self.registry.host: {"auth": SECRET_VALUES["push_auth"]}}}
        store.add_secret(
            "precompiled-drivers-push-secret", {".dockerconfigjson": json.dumps(auths)}, NAMESPACE
        )
        pull = {"auths": {"quay.io": {"auth": SECRET_VALUES["pull_auth"]}}}
        store.add_secret(
            "precompiled-drivers-pull-secret", {".dockerconfigjson": json.dumps(pull)}, NAMESPACE
        )
        store.add_secret(
            "precompiled-drivers-rhsm",
            {"org": SECRET_VALUES["rhsm_org"], "activationkey": SECRET_VALUES["rhsm_key"]},
            NAMESPACE,
        )
        return self.set_scenarios()

    def add_secret_files(self, name: str, files: Mapping[str, bytes]) -> None:
        """A Secret holding binary files (``data`` base64, as the API server stores it)."""
        data = {k: base64.b64encode(v).decode() for k, v in files.items()}
        self.cluster.store.put(
            "Secret", {"metadata": {"name": name, "namespace": NAMESPACE}, "type": "Opaque", "data": data}
        )

    def set_scenarios(self) -> World:
        """(Re)install one scenario per step, e.g. after changing ``fixed_seconds`` between runs."""
        host = Scenario(run_on_host=True, pending=0.05)
        simulated = dict(zip(SIMULATED_STEPS, (self.resolve, self.inspect_dtk, self.build), strict=True))
        for step in HOST_STEPS:
            if self.fixed_seconds is None:
                self._set(step, host)
            else:
                simulated[step] = self.on_host
        seconds = self.step_seconds if self.fixed_seconds is None else self.fixed_seconds
        pending = 0.1 if self.fixed_seconds is None else 0.05
        for step, action in simulated.items():
            self._set(step, Scenario(action=self._counted(step, action), duration=seconds, pending=pending))
        return self

    def _set(self, step: str, scenario: Scenario) -> None:
        # KPO labels a pod with its full task id (provider operators/pod.py _get_ti_pod_labels: "task_id"),
        # group included: a fleet's cluster steps run as "<cluster>.<step>".
        for task_id in (step, *(f"{group}.{step}" for group in self.groups)):
            self.cluster.scenarios.set(task_id, scenario)

    def _counted(self, step: str, action: Any) -> Any:
        def run(pod: dict[str, Any]) -> ScenarioResult:
            labels = pod["metadata"].get("labels") or {}
            with self._lock:
                self.pods.append((time.time(), step, labels.get("run_id", "")))
            return action(pod)

        return run

    def on_host(self, pod: dict[str, Any]) -> ScenarioResult:
        """Run the step's real script here, as a ``run_on_host`` scenario would, inside a fixed duration."""
        from testcluster import hostrun

        base = pod["spec"]["containers"][0]
        with tempfile.TemporaryDirectory(prefix="step-") as tmp:
            pod_dir = Path(tmp)
            mounts = hostrun.mount_map(base, hostrun.materialise_volumes(self.cluster.store, pod, pod_dir))
            (pod_dir / "home").mkdir()
            env = hostrun.host_env(
                hostrun.container_env(self.cluster.store, pod, base, mounts),
                self.cluster.kubeconfig_path,
                mounts,
                pod_dir / "home",
            )
            command = list(base.get("command") or []) + list(base.get("args") or [])
            done = subprocess.run(
                command, env=env, cwd=pod_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            out = hostrun.host_path(f"{hostrun.XCOM_MOUNT_PATH}/return.json", mounts)
            text = out.read_text() if out is not None and out.exists() else ""
        xcom = json.loads(text) if text.strip() else None
        return ScenarioResult(exit_code=done.returncode, xcom=xcom, logs=done.stdout.splitlines())

    # -- simulated steps --------------------------------------------------------------------------
    def resolve(self, pod: dict[str, Any]) -> ScenarioResult:
        """``oc adm release info --image-for=driver-toolkit[-10]``: DTK pull specs per known release.

        Each DTK of an arch payload is a single-arch image: the kubelet learns its arch, so a pod that
        runs it on a node of another arch fails with ``exec format error`` as on a real cluster.
        """
        env = pod_env(pod)
        version, arch = env["RELEASE_VERSION"], env["RELEASE_ARCH"]
        if version not in self.releases:
            return ScenarioResult(exit_code=1, logs=[f"error: release {env['RELEASE_IMAGE']} not found"])
        image = dtk_image(version, arch)
        image_10 = dtk_image(version, arch, STREAM_10) if version in self.releases_rhel10 else ""
        for ref in filter(None, (image, image_10)):
            self.cluster.kubelet.image_arches[ref] = GOARCH[arch]
        result = {
            "version": version,
            "arch": arch,
            "release_image": env["RELEASE_IMAGE"],
            "dtk_image": image,
            "dtk_image_10": image_10,
        }
        logs = [f"driver-toolkit: {image}"]
        logs.append(
            f"driver-toolkit-10: {image_10}" if image_10 else "driver-toolkit-10: not in this release"
        )
        return ScenarioResult(xcom=result, logs=logs)

    def _placed(self, pod: dict[str, Any], task: str, what: str) -> None:
        spec = pod["spec"]
        with self._lock:
            self.placements.append(
                (task, what, spec.get("nodeName", ""), dict(spec.get("nodeSelector") or {}))
            )

    def inspect_dtk(self, pod: dict[str, Any]) -> ScenarioResult:
        """``cat /etc/driver-toolkit-release.json`` in the DTK image (and driver-toolkit-10's, copied by the
        pod's init container); the kubelet already refused a DTK of another arch than its node."""
        env = pod_env(pod)
        version, arch = env["RELEASE_VERSION"], env["RELEASE_ARCH"]
        self._placed(pod, "inspect_driver_toolkit", f"{version}-{arch}")
        assert pod["spec"]["containers"][0]["image"] == env["DTK_IMAGE"] == dtk_image(version, arch), (
            "the step must run in the release's DTK image"
        )
        kernel, rhel = self.releases[version]
        toolkit = toolkit_release_file(kernel, rhel, arch)
        result = {"version": version, "arch": arch, "dtk_image": env["DTK_IMAGE"], "toolkit": toolkit}
        inits = {c["image"] for c in pod["spec"].get("initContainers") or []}
        if version in self.releases_rhel10:
            image_10 = dtk_image(version, arch, STREAM_10)
            if image_10 not in inits or env.get("DTK_IMAGE_10") != image_10:
                return ScenarioResult(
                    exit_code=1, logs=[f"ERROR: driver-toolkit-10 of {version} was not copied"]
                )
            kernel_10, rhel_10 = self.releases_rhel10[version]
            result["dtk_image_10"] = image_10
            result["toolkit_10"] = toolkit_release_file(kernel_10, rhel_10, arch)
        return ScenarioResult(
            xcom=result, logs=[json.dumps(result["toolkit"]), json.dumps(result.get("toolkit_10"))]
        )

    def build(self, pod: dict[str, Any]) -> ScenarioResult:
        """``make image`` + push to staging: a small real image lands in the registry."""
        env = pod_env(pod)
        self._placed(pod, "build_driver_image", env["TAG"])
        node = pod["spec"].get("nodeName", "")
        node_arch = self.cluster.kubelet.labels_of(node).get("kubernetes.io/arch")
        target_arch = GOARCH[env["BUILD_ARCH"].split("+", 1)[0]]
        if node_arch != target_arch:
            # NVIDIA's recipe has no cross-compilation: podman pulls the single-arch DTK base image with
            # a platform warning, then the first RUN step cannot exec.
            return ScenarioResult(
                exit_code=2,
                logs=[
                    f"WARNING: image platform (linux/{target_arch}) does not match the expected platform "
                    f"(linux/{node_arch})",
                    "exec container process `/bin/sh`: Exec format error",
                    'Error: building at STEP "RUN ...": while running runtime: exit status 1',
                    "make: *** [Makefile] Error 1",
                ],
            )
        # build_driver_image.sh's key handling: the Secure Boot key pair from the pod's mounted (optional)
        # Secret volume, both files or neither; refused without it when signing is required.
        keys = self._mounted_module_keys(pod)
        if keys is None and env.get("REQUIRE_MODULE_SIGNING") == "true":
            return ScenarioResult(
                exit_code=2, logs=["ERROR: module signing is required but no key pair is mounted"]
            )
        module_key = hashlib.sha256(keys["public_key.der"]).hexdigest() if keys else ""
        staging = env["STAGING_IMAGE"]
        repo_and_tag = staging.split("/", 1)[1]
        repo, tag = repo_and_tag.rsplit(":", 1)
        # The real build labels the image with its kernel module type, the key it signed the modules with
        # and the plan's provenance labels (build_driver_image.sh, its FROM-only `podman build --label`).
        labels = {env["MODULE_TYPE_LABEL"]: env["KERNEL_MODULE_TYPE"]}
        labels[env["MODULE_KEY_LABEL"]] = (
            module_key or "none (NVIDIA throw-away key: Secure Boot nodes refuse these modules)"
        )
        labels.update(
            line.split("=", 1) for line in env.get("PROVENANCE_LABELS", "").splitlines() if "=" in line
        )
        digest = self.registry.push_test_image(repo, tag, labels)
        with self._lock:
            self.builds.append(staging)
        logs = [
            f"make -C {env['BUILD_DIR']} image KERNEL_VERSION={env['KERNEL_VERSION']} OS_TAG={env['OS_TAG']} "
            f"DRIVER_OPEN={env['DRIVER_OPEN']}",
            f"staged {staging}@{digest}",
        ]
        result = {
            "image": env["IMAGE"],
            "tag": env["TAG"],
            "staging_image": staging,
            "digest": digest,
            "module_key_sha256": module_key,
        }
        return ScenarioResult(xcom=result, logs=logs)

    def _mounted_module_keys(self, pod: dict[str, Any]) -> dict[str, bytes] | None:
        """The files of the build pod's module signing volume as the kubelet would mount them (None: none)."""
        from testcluster import hostrun

        base = pod["spec"]["containers"][0]
        env = pod_env(pod)
        with tempfile.TemporaryDirectory(prefix="build-") as tmp:
            mounts = hostrun.mount_map(base, hostrun.materialise_volumes(self.cluster.store, pod, Path(tmp)))
            folder = hostrun.host_path(env.get("MODULE_SIGNING_DIR", "/nonexistent"), mounts)
            files = {
                name: (folder / name).read_bytes()
                for name in ("private_key.priv", "public_key.der")
                if folder is not None and (folder / name).is_file()
            }
        return files if len(files) == 2 else None

    # -- Airflow side -----------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """Environment for the Airflow process: the connection and the installation settings."""
        return {
            "AIRFLOW_CONN_KUBERNETES_DEFAULT": kube_connection(self.cluster),
            "PRECOMPILED_DRIVERS_NAMESPACE": NAMESPACE,
            "PRECOMPILED_DRIVERS_OPERATOR_NAMESPACE": OPERATOR_NAMESPACE,
            "PRECOMPILED_DRIVERS_STAGING_REPOSITORY": self.staging_repository,
            "PRECOMPILED_DRIVERS_TARGET_REPOSITORY": self.repository,
            "PRECOMPILED_DRIVERS_REGISTRY_TLS_VERIFY": "false",
            "PRECOMPILED_DRIVERS_POLL_SECONDS": "1",
            "PRECOMPILED_DRIVERS_STARTUP_TIMEOUT_SECONDS": "60",
            # Never reach the real update graph from here.
            "AIRFLOW_VAR_PRECOMPILED_DRIVERS_LOOKAHEAD": "false",
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        }

    def params(self, **overrides: Any) -> dict[str, Any]:
        """Form values for a run."""
        params: dict[str, Any] = {
            "ocp_versions": ["4.19.3"],
            "driver_versions": ["570.158.01", "580.65.06"],
            "verify_timeout_minutes": 1,
        }
        params.update(overrides)
        return params

    def policy_driver(self) -> dict[str, Any]:
        """The ClusterPolicy's spec.driver as the test server holds it."""
        policy = self.cluster.store.get_object("ClusterPolicy", "gpu-cluster-policy") or {}
        return policy.get("spec", {}).get("driver", {})
