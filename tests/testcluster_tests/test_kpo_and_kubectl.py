"""The strongest proofs: an unmodified KubernetesPodOperator run, and real kubectl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from testcluster import Scenario, TestCluster
from testcluster.resources import by_kind

HERE = Path(__file__).parent
KUBECTL = str(Path(sys.executable).parent / "kubectl")
POLICY = {
    "metadata": {"name": "gpu-cluster-policy"},
    "spec": {"driver": {"enabled": True, "usePrecompiled": False, "version": "550.90.07"}},
    "status": {"state": "notReady"},
}


def kubectl(cluster: TestCluster, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "KUBECONFIG": str(cluster.kubeconfig_path)}
    return subprocess.run([KUBECTL, *args], env=env, capture_output=True, text=True, timeout=60)


def test_real_kubernetes_pod_operator_reads_scenario_xcom(test_cluster: TestCluster, tmp_path: Path) -> None:
    test_cluster.scenarios.set(
        "build", Scenario(logs=["building", "built"], duration=0.3, xcom={"digest": "sha256:ab"})
    )
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps(
            {"conn_type": "kubernetes", "extra": {"kube_config_path": str(test_cluster.kubeconfig_path)}}
        ),
    }
    proc = subprocess.run(
        [sys.executable, str(HERE / "kpo_run.py"), "build", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT="))
    assert json.loads(result.removeprefix("RESULT=")) == {"digest": "sha256:ab"}
    assert "built" in proc.stdout + proc.stderr  # KPO followed the base container's log
    assert test_cluster.store.list_objects("Pod") == []  # KPO deleted its pod when done


def test_kubectl_get_patch_wait(test_cluster: TestCluster, tmp_path: Path) -> None:
    test_cluster.store.put("ClusterPolicy", POLICY)
    test_cluster.store.put(
        "Pod",
        {
            "metadata": {"name": "drv", "namespace": "default", "labels": {"app": "d"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        },
    )
    got = kubectl(
        test_cluster, tmp_path, "get", "pods", "-l", "app=d", "-o", "jsonpath={.items[*].metadata.name}"
    )
    assert (got.returncode, got.stdout) == (0, "drv")
    table = kubectl(test_cluster, tmp_path, "get", "pods", "-l", "app=d")
    assert table.returncode == 0 and table.stdout.split()[:5] == [
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
    ]

    guarded = [
        {"op": "test", "path": "/spec/driver/usePrecompiled", "value": True},
        {"op": "replace", "path": "/spec/driver/version", "value": "570.1"},
    ]
    failed = kubectl(
        test_cluster,
        tmp_path,
        "patch",
        "clusterpolicy",
        "gpu-cluster-policy",
        "--type=json",
        "-p",
        json.dumps(guarded),
    )
    assert failed.returncode != 0
    assert (
        test_cluster.store.get_object("ClusterPolicy", "gpu-cluster-policy")["spec"]["driver"]["version"]
        == "550.90.07"
    )

    guarded[0]["value"] = False
    ok = kubectl(
        test_cluster,
        tmp_path,
        "patch",
        "clusterpolicy",
        "gpu-cluster-policy",
        "--type=json",
        "-p",
        json.dumps(guarded),
    )
    assert ok.returncode == 0, ok.stderr
    listed = kubectl(test_cluster, tmp_path, "get", "clusterpolicy", "-o", "json")
    assert json.loads(listed.stdout)["items"][0]["spec"]["driver"]["version"] == "570.1"

    def become_ready() -> None:
        test_cluster.store.mutate(
            by_kind("ClusterPolicy"), None, "gpu-cluster-policy", lambda o: o["status"].update(state="ready")
        )

    timer = threading.Timer(0.5, become_ready)
    timer.start()
    waited = kubectl(
        test_cluster,
        tmp_path,
        "wait",
        "--for=jsonpath={.status.state}=ready",
        "clusterpolicy/gpu-cluster-policy",
        "--timeout=20s",
    )
    timer.join()
    assert waited.returncode == 0, waited.stderr
    assert "condition met" in waited.stdout


def test_kubectl_wait_times_out_when_not_ready(test_cluster: TestCluster, tmp_path: Path) -> None:
    test_cluster.store.put("ClusterPolicy", POLICY)
    waited = kubectl(
        test_cluster,
        tmp_path,
        "wait",
        "--for=jsonpath={.status.state}=ready",
        "clusterpolicy/gpu-cluster-policy",
        "--timeout=1s",
    )
    assert waited.returncode != 0
