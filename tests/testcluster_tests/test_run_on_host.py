"""run_on_host: a pod's static script runs here with its env, mounted secrets and a kubeconfig."""

from __future__ import annotations

import json

from helpers import core_api, kpo_pod, wait_for
from kubernetes.stream import stream

from testcluster import Scenario, TestCluster

SCRIPT = """#!/usr/bin/env bash
set -euo pipefail
echo "token file says: $(cat "$TOKEN_FILE")"
echo "user from env: ${REG_USER}"
nodes=$(kubectl get nodes -o jsonpath='{.items[*].metadata.name}')
echo "nodes: ${nodes}"
printf '{"nodes": "%s", "mode": "%s"}' "$nodes" "$MODE" > "${XCOM_RETURN:-/airflow/xcom/return.json}"
exit "${EXIT_WITH:-0}"
"""


def host_pod(name: str, exit_with: str = "0") -> dict:
    pod = kpo_pod(name, "verify")
    base = pod["spec"]["containers"][0]
    base["command"] = ["bash", "-c", SCRIPT, "verify"]
    base["env"] = [
        {"name": "TOKEN_FILE", "value": "/run/secrets/push/token"},
        {"name": "REG_USER", "valueFrom": {"secretKeyRef": {"name": "push", "key": "user"}}},
        {"name": "MODE", "value": "check"},
        {"name": "EXIT_WITH", "value": exit_with},
    ]
    base["volumeMounts"].append({"name": "push", "mountPath": "/run/secrets/push", "readOnly": True})
    base["terminationMessagePolicy"] = "FallbackToLogsOnError"
    pod["spec"]["volumes"].append({"name": "push", "secret": {"secretName": "push"}})
    return pod


def test_script_reads_mounted_secret_uses_kubectl_and_writes_xcom(test_cluster: TestCluster) -> None:
    test_cluster.store.add_secret("push", {"token": "s3cr3t", "user": "robot"})
    test_cluster.store.add_node("gpu-a", "5.14.0-427.50.1.el9_4.x86_64")
    test_cluster.scenarios.set("verify", Scenario(run_on_host=True))
    api = core_api(test_cluster)
    api.create_namespaced_pod("default", host_pod("v"))
    wait_for(
        lambda: api.read_namespaced_pod("v", "default").status.container_statuses[0].state.terminated, 30
    )

    log = api.read_namespaced_pod_log("v", "default", container="base")
    assert "token file says: s3cr3t" in log
    assert "user from env: robot" in log
    assert "nodes: gpu-a" in log
    pod = api.read_namespaced_pod("v", "default")
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0
    out = stream(
        api.connect_get_namespaced_pod_exec,
        "v",
        "default",
        container="airflow-xcom-sidecar",
        command=["/bin/sh", "-c", "cat /airflow/xcom/return.json"],
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    out.run_forever(timeout=5)
    assert json.loads(out.read_all()) == {"nodes": "gpu-a", "mode": "check"}


def test_script_exit_code_and_fallback_termination_message(test_cluster: TestCluster) -> None:
    test_cluster.store.add_secret("push", {"token": "t", "user": "u"})
    test_cluster.scenarios.set("verify", Scenario(run_on_host=True))
    api = core_api(test_cluster)
    api.create_namespaced_pod("default", host_pod("v", exit_with="4"))
    term = wait_for(
        lambda: api.read_namespaced_pod("v", "default").status.container_statuses[0].state.terminated, 30
    )
    assert term.exit_code == 4
    assert "user from env: u" in term.message
