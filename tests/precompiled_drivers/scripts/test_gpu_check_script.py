"""check_gpu_workload.sh with real kubectl against the test cluster: its kubelet runs the check pods.

The GPU-operator stand-in runs a (compiled-mode) driver pod on every GPU node; the kubelet stand-in gives
GPUs only where one runs Ready and plays NVIDIA's vectorAdd / nvidia-smi (testcluster/gpuworkload.py).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from precompiled_drivers.settings import Settings
from precompiled_drivers.steps import check_gpu_workload as step
from precompiled_drivers.steps.base import script
from testcluster import TestCluster

ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = ROOT / ".venv" / "bin"
NS = "nvidia-precompiled-drivers"
OPERATOR_NS = "nvidia-gpu-operator"
K_A = "5.14.0-427.50.1.el9_4.x86_64"
K_B = "5.14.0-570.12.1.el9_6.x86_64"
NODES_A = {"gpu-a1", "gpu-a2"}


def run_check(
    cluster: TestCluster, tmp_path: Path, settings: Settings, kernels: list[str], timeout: int = 30
) -> tuple[subprocess.CompletedProcess[str], Any]:
    """Run the script as its pod does (``bash -c`` lib.sh + script), with the env the step builds."""
    env = step.env(settings, kernels, dry_run=False)
    assert env is not None
    env.update(TIMEOUT_SECONDS=str(timeout), POLL_SECONDS="1")
    xcom = tmp_path / f"xcom-{time.monotonic_ns()}" / "return.json"
    proc = subprocess.run(
        ["bash", "-c", script("check_gpu_workload.sh"), "check_gpu_workload.sh"],
        env={
            **env,
            "HOME": str(tmp_path),
            "TMPDIR": str(tmp_path),
            "PATH": f"{VENV_BIN}:/usr/bin:/bin",
            "KUBECONFIG": str(cluster.kubeconfig_path),
            "XCOM_RETURN": str(xcom),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc, json.loads(xcom.read_text()) if xcom.exists() else None


def check_pods(cluster: TestCluster) -> list[dict[str, Any]]:
    return [
        p for p in cluster.store.list_objects("Pod", NS) if step.KERNEL_POD_LABEL in p["metadata"]["labels"]
    ]


@pytest.fixture
def gpu_cluster(test_cluster: TestCluster) -> TestCluster:
    """Two GPU kernels (two nodes on A, one on B), one CPU node on A, driver pods Ready on every GPU node."""
    store = test_cluster.store
    store.put("Namespace", {"metadata": {"name": NS}, "status": {"phase": "Active"}})
    store.add_node("cpu-a0", K_A, "rhel", "9.4", gpu=False)
    store.add_node("gpu-a1", K_A, "rhel", "9.4")
    store.add_node("gpu-a2", K_A, "rhel", "9.4")
    store.add_node("gpu-b1", K_B, "rhel", "9.6")
    driver = {"enabled": True, "usePrecompiled": False, "repository": "nvcr.io/nvidia", "image": "driver"}
    store.put(
        "ClusterPolicy",
        {"metadata": {"name": "gpu-cluster-policy"}, "spec": {"driver": {**driver, "version": "550.90.07"}}},
    )
    operator = test_cluster.enable_operator("v25.10.0", namespace=OPERATOR_NS)
    operator.reconcile_now()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        policy = store.get_object("ClusterPolicy", "gpu-cluster-policy") or {}
        if (policy.get("status") or {}).get("state") == "ready":
            break
        time.sleep(0.1)
    else:
        pytest.fail("the driver pods did not become ready")
    return test_cluster


def test_vectoradd_passes_on_one_gpu_node_of_every_kernel(gpu_cluster: TestCluster, tmp_path: Path) -> None:
    proc, result = run_check(gpu_cluster, tmp_path, Settings(), [K_A, K_B])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert result["checked"] is True
    assert result["image"] == Settings().gpu_check_image
    kernels = result["kernels"]
    assert set(kernels) == {K_A, K_B}
    assert kernels[K_A]["status"] == kernels[K_B]["status"] == "ok"
    assert kernels[K_A]["node"] in NODES_A  # a GPU node of that kernel, never the CPU node
    assert kernels[K_B]["node"] == "gpu-b1"
    assert kernels[K_A]["output"] == kernels[K_B]["output"] == "Test PASSED"
    assert kernels[K_A]["pod"].startswith("gpu-check-")
    assert "Checked: a CUDA workload ran on one GPU of every kernel." in proc.stdout
    assert "Copy output data from the CUDA device to the host memory" in proc.stdout  # the whole log
    assert check_pods(gpu_cluster) == [], "succeeded check pods are deleted"


def test_a_broken_gpu_on_one_node_fails_that_kernel_and_names_node_and_output(
    gpu_cluster: TestCluster, tmp_path: Path
) -> None:
    gpu_cluster.kubelet.gpu_faults["gpu-b1"] = "unknown error"
    proc, result = run_check(gpu_cluster, tmp_path, Settings(), [K_A, K_B])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert result["checked"] is False
    assert result["kernels"][K_A]["status"] == "ok"
    failed = result["kernels"][K_B]
    assert failed["status"] == "failed"
    assert failed["node"] == "gpu-b1"
    assert failed["output"] == "Failed to allocate device vector A (error code unknown error)!"
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (
        f"ERROR: GPU workload check failed on kernel {K_B} (node gpu-b1, pod {failed['pod']}): failed: "
        "Failed to allocate device vector A (error code unknown error)!"
    )
    # The failed pod is kept for `kubectl logs`; the one that passed is gone.
    assert [p["metadata"]["name"] for p in check_pods(gpu_cluster)] == [failed["pod"]]


def test_no_ready_driver_leaves_the_pod_pending_and_the_check_times_out(
    test_cluster: TestCluster, tmp_path: Path
) -> None:
    """No GPU Operator: no driver pod, so no node advertises a GPU and the scheduler keeps the pod Pending."""
    test_cluster.store.put("Namespace", {"metadata": {"name": NS}, "status": {"phase": "Active"}})
    test_cluster.store.add_node("gpu-a1", K_A, "rhel", "9.4")
    proc, result = run_check(test_cluster, tmp_path, Settings(), [K_A], timeout=3)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    kernel = result["kernels"][K_A]
    assert (kernel["status"], kernel["node"]) == ("timeout", "-")
    assert kernel["output"].startswith("not done within 3s: Pending")
    assert "Insufficient nvidia.com/gpu" in kernel["output"]
    assert "ERROR: GPU workload check failed on kernel" in proc.stderr
    assert check_pods(test_cluster) == [], "an unfinished check pod is deleted (it would take a GPU later)"


def test_nvidia_smi_instead_of_the_sample(gpu_cluster: TestCluster, tmp_path: Path) -> None:
    settings = Settings(gpu_check_command="nvidia-smi -L")
    proc, result = run_check(gpu_cluster, tmp_path, settings, [K_B])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert result["kernels"][K_B]["output"].startswith("GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-")


@pytest.mark.parametrize(
    ("checks", "message"),
    [
        ("", "CHECKS must list one line per kernel"),
        ('bad"kernel {}', "is not a kernel release"),
        (f"{K_A} not-json", "needs a check pod as JSON"),
    ],
)
def test_malformed_input_is_refused_before_any_pod(
    test_cluster: TestCluster, tmp_path: Path, checks: str, message: str
) -> None:
    proc = subprocess.run(
        ["bash", "-c", script("check_gpu_workload.sh"), "check_gpu_workload.sh"],
        env={
            "NAMESPACE": NS,
            "CHECKS": checks,
            "PATH": f"{VENV_BIN}:/usr/bin:/bin",
            "KUBECONFIG": str(test_cluster.kubeconfig_path),
            "XCOM_RETURN": str(tmp_path / "x" / "return.json"),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert message in proc.stderr
    assert test_cluster.store.list_objects("Pod", NS) == []
