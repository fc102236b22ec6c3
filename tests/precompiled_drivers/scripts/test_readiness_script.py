"""record_readiness.sh with real kubectl against the test cluster: creates, then replaces, the ConfigMap."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from precompiled_drivers import readiness
from testcluster import TestCluster

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "plugins" / "precompiled_drivers" / "scripts" / "record_readiness.sh"
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
    cluster: TestCluster, tmp_path: Path, doc: dict, run_id: str
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
    }
    proc = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
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
    test_cluster.faults.fail_next(f"/api/v1/namespaces/{NS}/configmaps", n=5, status=403, method="POST")
    proc, result = run(test_cluster, tmp_path, document(True), "run-1")
    assert proc.returncode == 1 and result == {}
    assert "ERROR: could not create configmap/precompiled-drivers-readiness" in proc.stderr
    assert "get/update on that ConfigMap and create on configmaps" in proc.stderr
