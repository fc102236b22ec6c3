"""The standalone process (demo) and fault injection."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import core_api, kpo_pod, wait_for
from kubernetes.client.exceptions import ApiException

from testcluster import Scenario, TestCluster

TESTS_DIR = Path(__file__).resolve().parents[1]


def test_standalone_process_serves_kubectl_and_stops_by_pid(tmp_path: Path) -> None:
    kubeconfig, pidfile = tmp_path / "kubeconfig", tmp_path / "pid"
    env = {**os.environ, "PYTHONPATH": str(TESTS_DIR), "HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "testcluster",
            "--kubeconfig",
            str(kubeconfig),
            "--pidfile",
            str(pidfile),
            "--registry",
            "--fleet",
            "demo",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("TESTCLUSTER_URL=http://127.0.0.1:"), (
            proc.stderr.read() if proc.poll() else first
        )
        pid = int(pidfile.read_text())
        assert pid == proc.pid
        kubectl = str(Path(sys.executable).parent / "kubectl")
        kenv = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "KUBECONFIG": str(kubeconfig)}
        out = subprocess.run(
            [kubectl, "get", "nodes", "-l", "nvidia.com/gpu.present=true", "-o", "json"],
            env=kenv,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert len(json.loads(out.stdout)["items"]) == 3
        version = subprocess.run(
            [kubectl, "get", "clusterversion", "version", "-o", "jsonpath={.status.desired.version}"],
            env=kenv,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert version.stdout == "4.18.12"
        os.kill(pid, signal.SIGTERM)
        assert proc.wait(15) == 0
        assert not pidfile.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_fail_next_n_requests_then_recover(test_cluster: TestCluster) -> None:
    api = core_api(test_cluster)
    test_cluster.faults.fail_next(r"/pods$", n=2, status=429, method="GET")
    for _ in range(2):
        with pytest.raises(ApiException) as err:
            api.list_namespaced_pod("default")
        assert err.value.status == 429
    assert api.list_namespaced_pod("default").items == []
    test_cluster.faults.fail_next(r"/pods$", n=1, status=500, method="POST")
    with pytest.raises(ApiException) as err:
        api.create_namespaced_pod("default", kpo_pod("p", "x", sidecar=False))
    assert err.value.status == 500
    assert test_cluster.store.list_objects("Pod") == []  # a failed request changed nothing


def test_delay_slows_matching_requests_only(test_cluster: TestCluster) -> None:
    api = core_api(test_cluster)
    test_cluster.faults.delay(r"/namespaces/default/pods", 0.5)
    started = time.monotonic()
    api.list_namespaced_pod("default")
    assert time.monotonic() - started >= 0.5
    started = time.monotonic()
    api.list_node()
    assert time.monotonic() - started < 0.4
    test_cluster.faults.clear()
    started = time.monotonic()
    api.list_namespaced_pod("default")
    assert time.monotonic() - started < 0.4


def test_evict_running_pod_by_task_id_and_by_scenario(test_cluster: TestCluster) -> None:
    api = core_api(test_cluster)
    test_cluster.scenarios.set("long", Scenario(duration=30, logs=["working"]))
    api.create_namespaced_pod("default", kpo_pod("p", "long"))
    wait_for(lambda: api.read_namespaced_pod("p", "default").status.phase == "Running")
    assert test_cluster.faults.evict("long") == 1
    pod = api.read_namespaced_pod("p", "default")
    assert (pod.status.phase, pod.status.reason) == ("Failed", "Evicted")
    assert pod.status.container_statuses[0].state.terminated.exit_code == 137

    test_cluster.scenarios.set("flaky", Scenario(duration=30, evict_after=0.3))
    api.create_namespaced_pod("default", kpo_pod("q", "flaky"))
    wait_for(lambda: api.read_namespaced_pod("q", "default").status.reason == "Evicted")
