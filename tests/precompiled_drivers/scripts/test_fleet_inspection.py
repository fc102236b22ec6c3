"""Three test clusters (separate API servers) inspected by inspect_cluster.sh with real kubectl, in
parallel, plus one that is unreachable; fleet planning on what they said: the shared kernel is built once,
the unreachable cluster is skipped and named, the others are planned."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

from precompiled_drivers import fleet, fleet_plan
from precompiled_drivers.config import run_config
from precompiled_drivers.plan import Toolkit
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import script
from testcluster import TestCluster
from testcluster.cluster import write_kubeconfig
from testcluster.fleet import seed_member

ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = ROOT / ".venv" / "bin"
K417 = "5.14.0-427.40.1.el9_4.x86_64"
K418 = "5.14.0-427.50.1.el9_4.x86_64"  # dev (4.18.12) and prod-a (4.18.13): the shared kernel
DTK = "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:" + "a" * 64
REPO = "quay.io/acme/nvidia"
FLEET = [
    {"name": "dev", "conn_id": "k8s_dev", "channel": "stable-4.18", "wave": 1},
    {"name": "prod-a", "conn_id": "k8s_prod_a", "channel": "stable-4.18", "wave": 2},
    {"name": "prod-b", "conn_id": "k8s_prod_b", "channel": "stable-4.17", "wave": 2},
    {"name": "edge", "conn_id": "k8s_edge", "channel": "stable-4.18", "wave": 3},
]
MEMBERS = {
    "dev": ("4.18.12", (("gpu-0", K418, "rhcos", "4.18"),)),
    "prod-a": ("4.18.13", (("gpu-0", K418, "rhcos", "4.18"), ("gpu-1", K418, "rhcos", "4.18"))),
    "prod-b": ("4.17.20", (("gpu-0", K417, "rhcos", "4.17"),)),
}


def closed_port() -> int:
    """A port nothing listens on (bound, then released): an unreachable API server."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_inspection(kubeconfig: Path, workdir: Path) -> tuple[subprocess.Popen[str], Path]:
    """inspect_cluster.sh as its pod runs it (lib.sh + the script), against one cluster's kubeconfig."""
    xcom = workdir / "return.json"
    env = {
        "PATH": f"{VENV_BIN}:/usr/bin:/bin",
        "HOME": str(workdir),
        "XCOM_RETURN": str(xcom),
        "KUBECONFIG": str(kubeconfig),
        "POLICY_NAME": "gpu-cluster-policy",
        "OPERATOR_NAMESPACE": "nvidia-gpu-operator",
        "OPERATOR_DEPLOYMENT": "gpu-operator",
        "API_ATTEMPTS": "1",
    }
    command = ["bash", "-c", script("inspect_cluster.sh"), "inspect_cluster.sh"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, xcom


def test_three_clusters_start_are_inspected_in_parallel_and_planned_as_one_fleet(
    test_clusters: dict[str, TestCluster], tmp_path: Path
) -> None:
    assert len({c.url for c in test_clusters.values()}) == 3, "each cluster has its own API server"
    for name, (version, nodes) in MEMBERS.items():
        seed_member(test_clusters[name], version, nodes)
        test_clusters[name].enable_operator("v26.7.0")
    kubeconfigs = {name: c.kubeconfig_path for name, c in test_clusters.items()}
    kubeconfigs["edge"] = write_kubeconfig(
        tmp_path / "edge" / "kubeconfig", f"http://127.0.0.1:{closed_port()}", "t"
    )

    # Every inspection starts before any is awaited: the fleet's clusters are inspected in parallel.
    running = {}
    for name, kubeconfig in kubeconfigs.items():
        (tmp_path / name).mkdir(exist_ok=True)
        running[name] = start_inspection(kubeconfig, tmp_path / name)
    xcoms, stderr = {}, {}
    for name, (proc, xcom) in running.items():
        _out, stderr[name] = proc.communicate(timeout=120)
        xcoms[name] = json.loads(xcom.read_text()) if proc.returncode == 0 else None
    assert xcoms["edge"] is None and "127.0.0.1" in stderr["edge"], stderr["edge"]
    for name in MEMBERS:
        assert xcoms[name] is not None, stderr[name]
        assert xcoms[name]["cluster_version"] == MEMBERS[name][0]
        assert xcoms[name]["cluster_channel"] == f"stable-{MEMBERS[name][0].rsplit('.', 1)[0]}"

    settings = Settings.from_env({"PRECOMPILED_DRIVERS_CLUSTERS": json.dumps(FLEET)}).validate()
    inspected = fleet_plan.inspect_results(settings.fleet(), xcoms)
    assert {i.cluster.name: i.reachable for i in inspected} == {
        "dev": True,
        "prod-a": True,
        "prod-b": True,
        "edge": False,
    }
    assert [i.error for i in inspected if not i.reachable] == ["cluster edge (k8s_edge) was not inspected"]
    by_name = {i.cluster.name: i.state for i in inspected if i.state is not None}
    assert by_name["prod-a"].kernels == (K418,) and by_name["prod-a"].operator_version == "v26.7.0"

    params = {"driver_versions": ["570.158.01"], "cuda_version": "12.8.1", "repository": REPO}
    cfg = run_config({**params, "driver_repo_ref": "main"}, settings)
    releases = fleet_plan.fleet_releases(cfg, inspected)
    assert [(r.version, r.clusters) for r in releases] == [
        ("4.17.20", ("prod-b",)),
        ("4.18.12", ("dev",)),
        ("4.18.13", ("prod-a",)),
    ]
    toolkits = [
        Toolkit("4.17.20", "x86_64", DTK, K417, "", "9.4"),
        Toolkit("4.18.12", "x86_64", DTK, K418, "", "9.4"),
        Toolkit("4.18.13", "x86_64", DTK, K418, "", "9.4"),
    ]
    builds = fleet_plan.plan_fleet_builds(cfg, settings, inspected, releases, toolkits)
    assert [(b.spec.kernel, b.clusters) for b in builds] == [(K417, ("prod-b",)), (K418, ("dev", "prod-a"))]
    waves = fleet.waves(settings.fleet())
    assert [w.names for w in waves] == [("dev",), ("prod-a", "prod-b"), ("edge",)]
    assert [s for _n, s, _w in fleet_plan.wave_states(waves, {"dev": fleet_plan.VERIFIED})] == [
        "verified",
        "running",
        "waiting",
    ]
