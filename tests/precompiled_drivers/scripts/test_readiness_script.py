"""record_readiness.sh with real kubectl against the test cluster: creates, then replaces, the ConfigMap."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from precompiled_drivers import readiness
from precompiled_drivers.steps.base import script
from testcluster import TestCluster

ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = ROOT / ".venv" / "bin"
NS = "nvidia-precompiled-drivers"


def document(ready: bool) -> dict:
    release = readiness.ReleaseReadiness(
        "4.18.14",
        "x86_64",
        "upgrade target",
        ready,
        ("quay.io/acme/nvidia:t",),
        () if ready else ("quay.io/acme/nvidia:t",),
    )
    return readiness.summary([release], "570.158.01")


def run(
    cluster: TestCluster, tmp_path: Path, doc: dict, run_id: str, **extra: str
) -> tuple[subprocess.CompletedProcess[str], dict]:
    xcom = tmp_path / run_id / "return.json"
    manifest = readiness.configmap(doc, namespace=NS, run_id=run_id)
    env = {
        "PATH": f"{VENV_BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "XCOM_RETURN": str(xcom),
        "KUBECONFIG": str(cluster.kubeconfig_path),
        "CONFIGMAP_NAME": readiness.CONFIGMAP_NAME,
        "NAMESPACE": NS,
        "CONFIGMAP_JSON": json.dumps(manifest),
        **extra,
    }
    # As the pod runs it: lib.sh, then the script, one text (steps/base.py script()).
    command = ["bash", "-c", script("record_readiness.sh"), "record_readiness.sh"]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    return proc, (json.loads(xcom.read_text()) if xcom.exists() else {})


def test_creates_then_replaces_the_configmap(test_cluster: TestCluster, tmp_path: Path) -> None:
    proc, result = run(test_cluster, tmp_path, document(False), "run-1")
    assert proc.returncode == 0, proc.stderr
    assert result == {"configmap": f"{NS}/precompiled-drivers-readiness", "action": "created"}
    stored = test_cluster.store.get_object("ConfigMap", readiness.CONFIGMAP_NAME, NS)
    assert stored["data"]["4.18.14-x86_64"] == "NOT ready: missing quay.io/acme/nvidia:t"
    assert stored["metadata"]["annotations"]["precompiled-drivers.github.io/run-id"] == "run-1"

    proc, result = run(test_cluster, tmp_path, document(True), "run-2")
    assert proc.returncode == 0, proc.stderr
    assert result["action"] == "updated"
    stored = test_cluster.store.get_object("ConfigMap", readiness.CONFIGMAP_NAME, NS)
    assert stored["data"]["4.18.14-x86_64"] == "ready (1 image(s) in the registry)"
    assert json.loads(stored["data"]["readiness.json"]) == json.loads(json.dumps(document(True)))
    assert stored["metadata"]["annotations"]["precompiled-drivers.github.io/run-id"] == "run-2"


def test_a_refused_write_fails_naming_what_the_service_account_needs(
    test_cluster: TestCluster, tmp_path: Path
) -> None:
    # Forbidden is final: refused at once, not retried.
    test_cluster.faults.fail_next(f"/api/v1/namespaces/{NS}/configmaps", n=1, status=403, method="POST")
    proc, result = run(test_cluster, tmp_path, document(True), "run-1")
    assert proc.returncode == 1 and result == {}
    assert "ERROR: could not create configmap/precompiled-drivers-readiness" in proc.stderr
    assert "get/update on that ConfigMap and create on configmaps" in proc.stderr
    assert test_cluster.store.get_object("ConfigMap", readiness.CONFIGMAP_NAME, NS) is None


def test_a_transient_api_error_is_retried(test_cluster: TestCluster, tmp_path: Path) -> None:
    test_cluster.faults.fail_next(f"/api/v1/namespaces/{NS}/configmaps", n=1, status=503, method="POST")
    proc, result = run(test_cluster, tmp_path, document(True), "run-1", API_RETRY_SECONDS="0")
    assert proc.returncode == 0, proc.stderr
    assert result["action"] == "created"
