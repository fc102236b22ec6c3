"""Shared helpers for the test cluster's own tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kubernetes import client, config

from testcluster import TestCluster


def core_api(cluster: TestCluster) -> client.CoreV1Api:
    """An official-client CoreV1Api built from the cluster's kubeconfig."""
    return client.CoreV1Api(config.new_client_from_config(str(cluster.kubeconfig_path)))


def custom_api(cluster: TestCluster) -> client.CustomObjectsApi:
    """An official-client CustomObjectsApi built from the cluster's kubeconfig."""
    return client.CustomObjectsApi(config.new_client_from_config(str(cluster.kubeconfig_path)))


def kpo_pod(name: str, task_id: str, sidecar: bool = True, **labels: str) -> dict[str, Any]:
    """A pod shaped like KPO's: container ``base`` (+ the XCom sidecar and its emptyDir)."""
    mount = [{"name": "xcom", "mountPath": "/airflow/xcom"}]
    containers: list[dict[str, Any]] = [
        {
            "name": "base",
            "image": "tool:1",
            "command": ["bash", "-c", "true"],
            "volumeMounts": mount if sidecar else [],
        }
    ]
    if sidecar:
        containers.append(
            {
                "name": "airflow-xcom-sidecar",
                "image": "alpine:3",
                "command": ["sh", "-c", "sleep"],
                "volumeMounts": mount,
            }
        )
    return {
        "metadata": {"name": name, "labels": {"task_id": task_id, **labels}},
        "spec": {"containers": containers, "volumes": [{"name": "xcom", "emptyDir": {}}] if sidecar else []},
    }


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll until ``predicate()`` is truthy; return its value or fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
