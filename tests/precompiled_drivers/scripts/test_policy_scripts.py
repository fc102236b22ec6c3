"""The ClusterPolicy scripts (patch, verify, rollback): shellcheck, and real runs with kubectl."""

from __future__ import annotations

import contextlib
import copy
import json
import re
import socket
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from precompiled_drivers import cluster_policy as cp
from precompiled_drivers.steps.base import script
from testcluster import TestCluster
from testcluster.cluster import write_kubeconfig
from testcluster.registry import Registry
from testcluster.resources import by_kind

ROOT = Path(__file__).resolve().parents[3]
SCRIPTS = ROOT / "plugins" / "precompiled_drivers" / "scripts"
VENV_BIN = ROOT / ".venv" / "bin"
POLICY_SCRIPTS = ("patch_cluster_policy.sh", "verify_rollout.sh", "rollback_cluster_policy.sh")


@pytest.mark.parametrize("name", POLICY_SCRIPTS)
def test_shellcheck_clean(name: str) -> None:
    script = SCRIPTS / name
    result = subprocess.run(
        [str(VENV_BIN / "shellcheck"), "--severity=style", "--external-sources", str(script)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", POLICY_SCRIPTS)
def test_script_header(name: str) -> None:
    lines = (SCRIPTS / name).read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines


# --- real runs against the local Kubernetes-API test server ------------------------------------------

POLICY = "gpu-cluster-policy"
NS = "nvidia-gpu-operator"
DRIVER_VERSION = "570.158.01"
IMAGE = "nvidia-gpu-driver"
K_A = "5.14.0-427.50.1.el9_4.x86_64"
K_B = "5.14.0-570.12.1.el9_6.x86_64"
# What the pipeline's naming rules produce for those kernels (transcribed, not computed, so a bug in
# either side shows): sanitized kernel, and the tag GPU Operator v25.10 looks for on rhel 9.4 / 9.6 nodes.
SAN_A, TAG_A = "5.14.0-427.50.1.el9.4", f"{DRIVER_VERSION}-{K_A}-rhel9.4"
# The operator appends ONE OS tag, from the first GPU node listed (gpu-a1, rhel 9.4), to every kernel's
# image (gpu-operator state_manager.go getGPUNodeOSInfo): kernel B's node reports 9.6 but pulls this tag.
SAN_B, TAG_B = "5.14.0-570.12.1.el9.6", f"{DRIVER_VERSION}-{K_B}-rhel9.4"
TAG_B_OWN_OS = f"{DRIVER_VERSION}-{K_B}-rhel9.6"
# The driver DaemonSets the operator names for them: the node's raw ID+VERSION_ID, not the cluster tag
# (object_controls.go transformPrecompiledDriverDaemonset, getKernelVersionsMap).
DS_A, DS_B = f"nvidia-driver-daemonset-{SAN_A}-rhel9.4", f"nvidia-driver-daemonset-{SAN_B}-rhel9.6"

# A compiled-mode driver section in the key order a user would write it.
ORIGINAL_DRIVER: dict[str, Any] = {
    "enabled": True,
    "usePrecompiled": False,
    "repository": "nvcr.io/nvidia",
    "image": "driver",
    "version": "550.90.07",
    "kernelModuleType": "auto",
    "upgradePolicy": {"autoUpgrade": True, "maxParallelUpgrades": 1, "maxUnavailable": "25%"},
    "licensingConfig": {"nlsEnabled": True, "secretName": ""},
}
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def seed_policy(cluster: TestCluster, driver: dict[str, Any] | None = None) -> dict[str, Any]:
    """Put the ClusterPolicy and return it as the pipeline's inspect step would read it."""
    cluster.store.put(
        "ClusterPolicy",
        {
            "apiVersion": "nvidia.com/v1",
            "kind": "ClusterPolicy",
            "metadata": {"name": POLICY},
            "spec": {
                "operator": {"use_ocp_driver_toolkit": True},
                "driver": copy.deepcopy(driver if driver is not None else ORIGINAL_DRIVER),
                "gds": {"enabled": False},
                "gdrcopy": {"enabled": False},
            },
        },
    )
    return current_policy(cluster)


def current_policy(cluster: TestCluster) -> dict[str, Any]:
    policy = cluster.store.get_object("ClusterPolicy", POLICY)
    assert policy is not None
    return policy


def run_script(
    name: str, cluster: TestCluster | None, tmp_path: Path, **env: str
) -> tuple[subprocess.CompletedProcess[str], Any]:
    """Run a script as the pod does (``bash -c`` lib.sh + the script, env only); return the process and
    its parsed XCom (None if absent)."""
    xcom = tmp_path / f"xcom-{name}-{time.monotonic_ns()}" / "return.json"
    full_env = {
        "PATH": f"{VENV_BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "XCOM_RETURN": str(xcom),
        **env,
    }
    if cluster is not None:
        full_env["KUBECONFIG"] = str(cluster.kubeconfig_path)
    proc = subprocess.run(
        ["bash", "-c", script(name), name],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    result = json.loads(xcom.read_text()) if xcom.exists() else None
    return proc, result


def enable_ops(policy: dict[str, Any], repository: str = "quay.io/acme/nvidia") -> list[dict[str, Any]]:
    return cp.plan_enable(policy, repository=repository, image=IMAGE, version=DRIVER_VERSION)


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_patch_applies_and_returns_previous_driver(test_cluster: TestCluster, tmp_path: Path) -> None:
    read = seed_policy(test_cluster)
    ops = enable_ops(read)
    before = utc_now()
    proc, result = run_script(
        "patch_cluster_policy.sh", test_cluster, tmp_path, POLICY_NAME=POLICY, PATCH_JSON=json.dumps(ops),
        DRY_RUN="false",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    after = current_policy(test_cluster)
    assert after["spec"] == cp.apply_patch(read, ops)["spec"]
    assert after["spec"]["driver"]["usePrecompiled"] is True
    assert result["patched"] is True
    assert result["previous_driver"] == ORIGINAL_DRIVER
    assert RFC3339.match(result["patched_at"])
    assert before <= result["patched_at"] <= utc_now()
    # The previous spec is recoverable from the task log as well.
    assert json.loads(proc.stdout.splitlines()[1]) == ORIGINAL_DRIVER
    assert '"op": "test"' in proc.stdout


def test_patch_dry_run_changes_nothing(test_cluster: TestCluster, tmp_path: Path) -> None:
    read = seed_policy(test_cluster)
    proc, result = run_script(
        "patch_cluster_policy.sh", test_cluster, tmp_path, POLICY_NAME=POLICY,
        PATCH_JSON=json.dumps(enable_ops(read)), DRY_RUN="true",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert result == {"previous_driver": ORIGINAL_DRIVER, "patched": False, "patched_at": None}
    assert current_policy(test_cluster)["spec"] == read["spec"]
    assert "DRY_RUN=true" in proc.stdout


def test_patch_without_driver_section_records_null(test_cluster: TestCluster, tmp_path: Path) -> None:
    test_cluster.store.put("ClusterPolicy", {"metadata": {"name": POLICY}, "spec": {"operator": {}}})
    ops = enable_ops(current_policy(test_cluster))
    proc, result = run_script(
        "patch_cluster_policy.sh", test_cluster, tmp_path, POLICY_NAME=POLICY, PATCH_JSON=json.dumps(ops),
        DRY_RUN="false",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert result["previous_driver"] is None
    assert current_policy(test_cluster)["spec"]["driver"]["image"] == IMAGE


def test_guarded_patch_fails_on_concurrent_change(test_cluster: TestCluster, tmp_path: Path) -> None:
    read = seed_policy(test_cluster)
    ops = enable_ops(read)
    # Someone edits the driver section between the pipeline's read and its patch.
    changed = copy.deepcopy(read)
    changed["spec"]["driver"]["version"] = "550.127.05"
    test_cluster.store.put("ClusterPolicy", changed)
    proc, result = run_script(
        "patch_cluster_policy.sh", test_cluster, tmp_path, POLICY_NAME=POLICY, PATCH_JSON=json.dumps(ops),
        DRY_RUN="false",
    )  # fmt: skip
    assert proc.returncode != 0
    assert "changed since the pipeline read it" in proc.stderr
    assert "nothing was overwritten" in proc.stderr
    # The failed step still says it changed nothing (no rollback needed), and what it had read.
    assert result == {"previous_driver": changed["spec"]["driver"], "patched": False, "patched_at": None}
    assert current_policy(test_cluster)["spec"] == changed["spec"]


@pytest.mark.parametrize("compact", [True, False])
def test_patch_recognises_its_patch_applied_by_an_earlier_try(
    test_cluster: TestCluster, tmp_path: Path, compact: bool
) -> None:
    # Try 1 applied the patch and was killed before reporting; try 2 runs the same patch document.
    read = seed_policy(test_cluster)
    ops = enable_ops(read)
    patch = json.dumps(ops, separators=(",", ":")) if compact else json.dumps(ops)
    env = {"POLICY_NAME": POLICY, "PATCH_JSON": patch, "DRY_RUN": "false"}
    first, _ = run_script("patch_cluster_policy.sh", test_cluster, tmp_path, **env)
    assert first.returncode == 0, first.stderr
    applied = current_policy(test_cluster)
    proc, result = run_script("patch_cluster_policy.sh", test_cluster, tmp_path, **env)
    assert proc.returncode == 0, proc.stderr
    assert "An earlier try had already applied the patch" in proc.stdout
    assert "Invalid" in proc.stderr or "test" in proc.stderr  # the guard did refuse the repeat
    assert current_policy(test_cluster) == applied  # not written again
    assert result["patched"] is True
    # Verification then checks the running driver pods (they run the new images or it times out).
    assert result["patched_at"] == "1970-01-01T00:00:00Z"


def test_patch_refuses_a_concurrent_change_to_other_values_on_retry(
    test_cluster: TestCluster, tmp_path: Path
) -> None:
    # Try 1 applied the patch, then someone changed the driver section: not "already applied".
    read = seed_policy(test_cluster)
    ops = enable_ops(read)
    env = {"POLICY_NAME": POLICY, "PATCH_JSON": json.dumps(ops), "DRY_RUN": "false"}
    first, _ = run_script("patch_cluster_policy.sh", test_cluster, tmp_path, **env)
    assert first.returncode == 0, first.stderr
    changed = current_policy(test_cluster)
    changed["spec"]["driver"]["version"] = "580.65.06"
    test_cluster.store.put("ClusterPolicy", changed)
    proc, result = run_script("patch_cluster_policy.sh", test_cluster, tmp_path, **env)
    assert proc.returncode == 1
    assert "changed since the pipeline read it" in proc.stderr
    assert result["patched"] is False
    assert current_policy(test_cluster)["spec"] == changed["spec"]


def test_patch_reports_missing_policy(test_cluster: TestCluster, tmp_path: Path) -> None:
    proc, result = run_script(
        "patch_cluster_policy.sh", test_cluster, tmp_path, POLICY_NAME="no-such-policy", PATCH_JSON="[]",
        DRY_RUN="false",
    )  # fmt: skip
    assert proc.returncode == 1
    assert "could not read ClusterPolicy 'no-such-policy'" in proc.stderr
    assert result == {"previous_driver": None, "patched": False, "patched_at": None}


def test_patch_rejects_bad_dry_run_value(tmp_path: Path) -> None:
    proc, _ = run_script(
        "patch_cluster_policy.sh", None, tmp_path, POLICY_NAME=POLICY, PATCH_JSON="[]", DRY_RUN="yes"
    )
    assert proc.returncode == 2
    assert "DRY_RUN must be 'true' or 'false'" in proc.stderr


def patch_via_script(cluster: TestCluster, tmp_path: Path, ops: list[dict[str, Any]]) -> dict[str, Any]:
    proc, result = run_script(
        "patch_cluster_policy.sh", cluster, tmp_path, POLICY_NAME=POLICY, PATCH_JSON=json.dumps(ops),
        DRY_RUN="false",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return result


def test_rollback_restores_previous_driver_byte_for_byte(test_cluster: TestCluster, tmp_path: Path) -> None:
    read = seed_policy(test_cluster)
    patch_proc, _ = run_script(
        "patch_cluster_policy.sh", test_cluster, tmp_path, POLICY_NAME=POLICY,
        PATCH_JSON=json.dumps(enable_ops(read)), DRY_RUN="false",
    )  # fmt: skip
    assert patch_proc.returncode == 0, patch_proc.stderr
    applied = cp.driver_spec(current_policy(test_cluster))
    ops = cp.rollback_patch(cp.driver_spec(read), applied)
    proc, result = run_script(
        "rollback_cluster_policy.sh", test_cluster, tmp_path, POLICY_NAME=POLICY, PATCH_JSON=json.dumps(ops)
    )
    assert proc.returncode == 0, proc.stderr
    restored = current_policy(test_cluster)["spec"]["driver"]
    assert restored == ORIGINAL_DRIVER
    assert current_policy(test_cluster)["spec"] == read["spec"]
    # kubectl re-encodes a patch with sorted keys (as a real API server stores maps), so byte-for-byte
    # means: the server renders the restored section exactly as it rendered the original one.
    rendered_before = patch_proc.stdout.splitlines()[1]
    rendered_after = proc.stdout.splitlines()[proc.stdout.splitlines().index(
        f"Restored spec.driver of clusterpolicy/{POLICY}:") + 1]  # fmt: skip
    assert rendered_after == rendered_before
    assert rendered_before == json.dumps(ORIGINAL_DRIVER, sort_keys=True, separators=(",", ":"))
    assert result["rolled_back"] is True
    assert result["driver_before"] == applied
    assert result["driver_after"] == ORIGINAL_DRIVER


def test_rollback_from_the_patch_steps_xcom(test_cluster: TestCluster, tmp_path: Path) -> None:
    read = seed_policy(test_cluster)
    result = patch_via_script(test_cluster, tmp_path, enable_ops(read))
    # kubectl prints maps with sorted keys: equal content, not necessarily the same order.
    ops = cp.rollback_patch(result["previous_driver"], cp.driver_spec(current_policy(test_cluster)))
    proc, _ = run_script(
        "rollback_cluster_policy.sh", test_cluster, tmp_path, POLICY_NAME=POLICY, PATCH_JSON=json.dumps(ops)
    )
    assert proc.returncode == 0, proc.stderr
    assert current_policy(test_cluster)["spec"]["driver"] == ORIGINAL_DRIVER


def test_rollback_with_unknown_previous_disables_precompiled(
    test_cluster: TestCluster, tmp_path: Path
) -> None:
    read = seed_policy(test_cluster)
    patch_via_script(test_cluster, tmp_path, enable_ops(read))
    ops = cp.rollback_patch(None, cp.driver_spec(current_policy(test_cluster)))
    proc, _ = run_script(
        "rollback_cluster_policy.sh", test_cluster, tmp_path, POLICY_NAME=POLICY, PATCH_JSON=json.dumps(ops)
    )
    assert proc.returncode == 0, proc.stderr
    driver = current_policy(test_cluster)["spec"]["driver"]
    assert driver["usePrecompiled"] is False
    assert not {"repository", "image", "version"} & set(driver)


def test_rollback_refuses_to_overwrite_a_later_change(test_cluster: TestCluster, tmp_path: Path) -> None:
    read = seed_policy(test_cluster)
    patch_via_script(test_cluster, tmp_path, enable_ops(read))
    ops = cp.rollback_patch(cp.driver_spec(read), cp.driver_spec(current_policy(test_cluster)))
    later = current_policy(test_cluster)
    later["spec"]["driver"]["version"] = "580.65.06"
    test_cluster.store.put("ClusterPolicy", later)
    proc, result = run_script(
        "rollback_cluster_policy.sh", test_cluster, tmp_path, POLICY_NAME=POLICY, PATCH_JSON=json.dumps(ops)
    )
    assert proc.returncode == 1
    assert "someone changed spec.driver after the pipeline's patch" in proc.stderr
    assert result is None
    assert current_policy(test_cluster)["spec"]["driver"] == later["spec"]["driver"]


# --- transient API errors: lib.sh's kubectl_retry, as the patch and rollback scripts use it ------------

POLICY_PATH = rf"/apis/nvidia\.com/v1/clusterpolicies/{POLICY}$"
TRANSIENT = re.compile(r"Transient API error \(attempt \d+ of \d+\)")


def patched_policy(cluster: TestCluster, tmp_path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The policy read before the pipeline's patch, and the rollback of that patch (applied by the script)."""
    read = seed_policy(cluster)
    patch_via_script(cluster, tmp_path, enable_ops(read))
    return read, cp.rollback_patch(cp.driver_spec(read), cp.driver_spec(current_policy(cluster)))


def test_rollback_retries_transient_api_errors(test_cluster: TestCluster, tmp_path: Path) -> None:
    _read, ops = patched_policy(test_cluster, tmp_path)
    faults = test_cluster.faults
    faults.fail_next(POLICY_PATH, n=1, status=500, method="GET")  # reading the policy
    # Then the rollback patch: 503, then 429 (client-go retries a 429 by itself only with a Retry-After
    # header, which this fault does not send).
    faults.fail_next(POLICY_PATH, n=1, status=503, method="PATCH")
    faults.fail_next(POLICY_PATH, n=1, status=429, method="PATCH")
    proc, result = run_script(
        "rollback_cluster_policy.sh", test_cluster, tmp_path, POLICY_NAME=POLICY, PATCH_JSON=json.dumps(ops),
        API_RETRY_SECONDS="0",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(TRANSIENT.findall(proc.stderr)) == 3, proc.stderr
    assert current_policy(test_cluster)["spec"]["driver"] == ORIGINAL_DRIVER
    assert result["rolled_back"] is True
    assert result["driver_after"] == ORIGINAL_DRIVER


def test_rollback_retries_its_nothing_to_undo_check(test_cluster: TestCluster, tmp_path: Path) -> None:
    """The patch never landed: a transient error on the `test` of the previous spec must not turn into a
    rollback whose guard then refuses (the step would fail for nothing)."""
    read = seed_policy(test_cluster)
    would_set = cp.driver_spec(cp.apply_patch(read, enable_ops(read)))
    ops = cp.rollback_patch(cp.driver_spec(read), would_set)
    test_cluster.faults.fail_next(POLICY_PATH, n=1, status=500, method="PATCH")
    proc, result = run_script(
        "rollback_cluster_policy.sh", test_cluster, tmp_path, POLICY_NAME=POLICY, PATCH_JSON=json.dumps(ops),
        PREVIOUS_DRIVER_JSON=json.dumps(cp.driver_spec(read)), API_RETRY_SECONDS="0",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "nothing to roll back" in proc.stdout
    assert result == {"rolled_back": False, "driver_before": ORIGINAL_DRIVER, "driver_after": ORIGINAL_DRIVER}
    assert current_policy(test_cluster)["spec"] == read["spec"]


def test_rollback_gives_up_after_api_attempts(test_cluster: TestCluster, tmp_path: Path) -> None:
    _read, ops = patched_policy(test_cluster, tmp_path)
    applied = current_policy(test_cluster)["spec"]["driver"]
    test_cluster.faults.fail_next(POLICY_PATH, n=3, status=500, method="PATCH")
    proc, result = run_script(
        "rollback_cluster_policy.sh", test_cluster, tmp_path, POLICY_NAME=POLICY, PATCH_JSON=json.dumps(ops),
        API_ATTEMPTS="3", API_RETRY_SECONDS="0",
    )  # fmt: skip
    assert proc.returncode == 1
    assert len(TRANSIENT.findall(proc.stderr)) == 2, proc.stderr  # three attempts: two retries
    assert "rollback of clusterpolicy/gpu-cluster-policy was rejected" in proc.stderr
    assert result is None
    assert current_policy(test_cluster)["spec"]["driver"] == applied


@pytest.mark.parametrize("status", [409, 422, 403])
def test_rollback_never_retries_a_refusal(test_cluster: TestCluster, tmp_path: Path, status: int) -> None:
    _read, ops = patched_policy(test_cluster, tmp_path)
    applied = current_policy(test_cluster)["spec"]["driver"]
    test_cluster.faults.fail_next(POLICY_PATH, n=5, status=status, method="PATCH")
    proc, result = run_script(
        "rollback_cluster_policy.sh", test_cluster, tmp_path, POLICY_NAME=POLICY, PATCH_JSON=json.dumps(ops),
        API_RETRY_SECONDS="0",
    )  # fmt: skip
    test_cluster.faults.clear()
    assert proc.returncode == 1
    assert not TRANSIENT.search(proc.stderr), proc.stderr
    assert "rollback of clusterpolicy/gpu-cluster-policy was rejected" in proc.stderr
    assert result is None
    assert current_policy(test_cluster)["spec"]["driver"] == applied


def test_rollback_guard_refusal_is_not_retried(test_cluster: TestCluster, tmp_path: Path) -> None:
    """The real 422 of a failed `test` guard (someone changed spec.driver since): final at once."""
    _read, ops = patched_policy(test_cluster, tmp_path)
    later = current_policy(test_cluster)
    later["spec"]["driver"]["version"] = "580.65.06"
    test_cluster.store.put("ClusterPolicy", later)
    proc, _ = run_script(
        "rollback_cluster_policy.sh", test_cluster, tmp_path, POLICY_NAME=POLICY, PATCH_JSON=json.dumps(ops),
        API_RETRY_SECONDS="0",
    )  # fmt: skip
    assert proc.returncode == 1
    assert "The request is invalid" in proc.stderr  # kubectl's words for the API server's 422
    assert not TRANSIENT.search(proc.stderr), proc.stderr
    assert current_policy(test_cluster)["spec"]["driver"] == later["spec"]["driver"]


def late_listener(target: str, delay: float) -> str:
    """A 127.0.0.1 address that refuses connections for ``delay`` seconds, then forwards to ``target``."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # closed: until the listener starts, connecting is refused
    host, target_port = target.removeprefix("http://").split(":")

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def serve() -> None:
        time.sleep(delay)
        server = socket.create_server(("127.0.0.1", port))
        while True:
            client, _ = server.accept()
            upstream = socket.create_connection((host, int(target_port)))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{port}"


def test_rollback_retries_when_the_api_server_refuses_connections(
    test_cluster: TestCluster, tmp_path: Path
) -> None:
    _read, ops = patched_policy(test_cluster, tmp_path)
    kubeconfig = write_kubeconfig(tmp_path / "late" / "kubeconfig", late_listener(test_cluster.url, 1.5), "t")
    proc, result = run_script(
        "rollback_cluster_policy.sh", None, tmp_path, POLICY_NAME=POLICY, PATCH_JSON=json.dumps(ops),
        KUBECONFIG=str(kubeconfig), API_RETRY_SECONDS="1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "refused" in proc.stderr
    assert TRANSIENT.search(proc.stderr), proc.stderr
    assert current_policy(test_cluster)["spec"]["driver"] == ORIGINAL_DRIVER
    assert result["rolled_back"] is True


# --- verify_rollout.sh with the GPU-operator stand-in and a real registry -----------------------------


@pytest.fixture
def gpu_cluster(test_cluster: TestCluster, registry: Registry) -> TestCluster:
    """Two GPU kernels (two nodes on A, one on B), compiled driver running, operator v25.10 on duty."""
    store = test_cluster.store
    store.add_node("gpu-a1", K_A, "rhel", "9.4")
    store.add_node("gpu-a2", K_A, "rhel", "9.4")
    store.add_node("gpu-b1", K_B, "rhel", "9.6")
    seed_policy(test_cluster)
    test_cluster.enable_operator("v25.10.0", registry=registry.host, namespace=NS)
    return test_cluster


def rollout(cluster: TestCluster, registry: Registry, tmp_path: Path) -> str:
    """Patch the policy to precompiled images in the test registry via the script; return patched_at."""
    ops = enable_ops(current_policy(cluster), repository=f"{registry.host}/nvidia")
    return patch_via_script(cluster, tmp_path, ops)["patched_at"]


def expected_lines(registry: Registry, digests: dict[str, str]) -> str:
    refs = {
        K_A: f"{DS_A} {registry.host}/nvidia/{IMAGE}:{TAG_A}",
        K_B: f"{DS_B} {registry.host}/nvidia/{IMAGE}:{TAG_B}",
    }
    return "\n".join(f"{kernel} {refs[kernel]} {digest}" for kernel, digest in digests.items()) + "\n"


def verify(cluster: TestCluster, tmp_path: Path, patched_at: str, expected: str, timeout: int = 20):
    return run_script(
        "verify_rollout.sh", cluster, tmp_path, POLICY_NAME=POLICY, OPERATOR_NAMESPACE=NS,
        PATCHED_AT=patched_at, EXPECTED=expected, TIMEOUT_SECONDS=str(timeout), POLL_SECONDS="1",
    )  # fmt: skip


def test_verify_succeeds_when_new_pods_run_the_pushed_images(
    gpu_cluster: TestCluster, registry: Registry, tmp_path: Path
) -> None:
    digest_a = registry.push_test_image(f"nvidia/{IMAGE}", TAG_A)
    digest_b = registry.push_test_image(f"nvidia/{IMAGE}", TAG_B)
    patched_at = rollout(gpu_cluster, registry, tmp_path)
    proc, result = verify(
        gpu_cluster, tmp_path, patched_at, expected_lines(registry, {K_A: digest_a, K_B: digest_b})
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert result["verified"] is True
    assert result["policy_state"] == "ready"
    assert result["kernels"][K_A]["status"] == "ok"
    assert result["kernels"][K_A]["ready"] == 2  # both nodes on kernel A
    assert result["kernels"][K_B]["ready"] == 1
    assert result["kernels"][K_B]["image"] == f"{registry.host}/nvidia/{IMAGE}:{TAG_B}"
    assert f"kernel {K_A}: ok" in proc.stdout
    assert gpu_cluster.store.get_object("ClusterPolicy", POLICY)["status"]["state"] == "ready"


def test_verify_accepts_whichever_os_tag_the_operator_chose(
    gpu_cluster: TestCluster, registry: Registry, tmp_path: Path
) -> None:
    # The pipeline publishes kernel B under both tags its nodes may lead to; the operator picks one.
    digest_a = registry.push_test_image(f"nvidia/{IMAGE}", TAG_A)
    digest_b = registry.push_test_image(f"nvidia/{IMAGE}", TAG_B)
    patched_at = rollout(gpu_cluster, registry, tmp_path)
    other = f"{K_B} {DS_B} {registry.host}/nvidia/{IMAGE}:{TAG_B_OWN_OS} sha256:{'e' * 64}\n"
    expected = other + expected_lines(registry, {K_A: digest_a, K_B: digest_b})
    proc, result = verify(gpu_cluster, tmp_path, patched_at, expected)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kernel_b = result["kernels"][K_B]
    assert kernel_b["image"] == f"{registry.host}/nvidia/{IMAGE}:{TAG_B}"
    assert kernel_b["digest"] == digest_b
    assert kernel_b["accepted"].split() == [
        f"{registry.host}/nvidia/{IMAGE}:{TAG_B_OWN_OS}",
        f"{registry.host}/nvidia/{IMAGE}:{TAG_B}",
    ]


def test_verify_times_out_with_a_per_kernel_table(
    gpu_cluster: TestCluster, registry: Registry, tmp_path: Path
) -> None:
    digest_a = registry.push_test_image(f"nvidia/{IMAGE}", TAG_A)  # kernel B's image is missing
    patched_at = rollout(gpu_cluster, registry, tmp_path)
    missing = "sha256:" + "b" * 64
    start = time.monotonic()
    proc, result = verify(
        gpu_cluster,
        tmp_path,
        patched_at,
        expected_lines(registry, {K_A: digest_a, K_B: missing}),
        timeout=4,
    )
    assert proc.returncode == 1
    assert time.monotonic() - start < 30
    assert "rollout not verified within 4s" in proc.stderr
    table = proc.stderr.splitlines()
    header = next(i for i, line in enumerate(table) if line.startswith("KERNEL"))
    rows = {line.split()[0]: line for line in table[header + 1 : header + 3]}
    assert "ok" in rows[K_A].split()
    assert "1 of 1 new pod(s) not ready (ImagePullBackOff); check that" in rows[K_B]
    assert f"{registry.host}/nvidia/{IMAGE}:{TAG_B}" in rows[K_B]
    assert result["verified"] is False
    assert result["policy_state"] == "notReady"
    assert result["kernels"][K_B]["status"] == "waiting"
    assert result["kernels"][K_A]["status"] == "ok"


def test_verify_checks_the_digest(gpu_cluster: TestCluster, registry: Registry, tmp_path: Path) -> None:
    digest_a = registry.push_test_image(f"nvidia/{IMAGE}", TAG_A)
    digest_b = registry.push_test_image(f"nvidia/{IMAGE}", TAG_B)
    patched_at = rollout(gpu_cluster, registry, tmp_path)
    stale = "sha256:" + "c" * 64  # e.g. the tag was re-pushed after our push
    proc, result = verify(
        gpu_cluster,
        tmp_path,
        patched_at,
        expected_lines(registry, {K_A: stale, K_B: digest_b}),
        timeout=3,
    )
    assert proc.returncode == 1
    assert result["kernels"][K_B]["status"] == "ok"
    assert f"not digest {stale}" in result["kernels"][K_A]["reason"]
    assert digest_a in result["kernels"][K_A]["reason"]  # the imageID the pod actually has


def test_verify_ignores_pods_older_than_the_patch(
    gpu_cluster: TestCluster, registry: Registry, tmp_path: Path
) -> None:
    digest_a = registry.push_test_image(f"nvidia/{IMAGE}", TAG_A)
    digest_b = registry.push_test_image(f"nvidia/{IMAGE}", TAG_B)
    # The patch's own time, as the pipeline passes it: pods the operator made since then are new (a
    # clock read after the patch could be seconds later under load, and make them old).
    patched_at = rollout(gpu_cluster, registry, tmp_path)
    expected = expected_lines(registry, {K_A: digest_a, K_B: digest_b})
    ok, _ = verify(gpu_cluster, tmp_path, patched_at, expected)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # The same Ready pods, judged against a later patch, are the old generation: they do not count.
    later = (datetime.now(UTC) + timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    proc, result = verify(gpu_cluster, tmp_path, later, expected, timeout=2)
    assert proc.returncode == 1
    assert "created since the patch (2 older)" in result["kernels"][K_A]["reason"]


def put_driver_pod(cluster: TestCluster, suffix: str, image: str, ready: bool, image_id: str) -> str:
    """Create a driver pod by hand (the store stamps creationTimestamp now); return that timestamp."""
    name = f"{DS_A}-{suffix}"
    labels = {"app": "nvidia-driver-daemonset", "nvidia.com/precompiled": "true"}
    container = {"name": "nvidia-driver-ctr", "image": image}
    status = {"name": "nvidia-driver-ctr", "image": image, "imageID": image_id, "ready": ready}
    owner = {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": DS_A, "uid": "u", "controller": True}
    pod = cluster.store.put(
        "Pod",
        {
            # Owned by a DaemonSet, so the kubelet stand-in leaves the status we set alone.
            "metadata": {"name": name, "namespace": NS, "labels": labels, "ownerReferences": [owner]},
            "spec": {"containers": [{"name": "init", "image": "busybox"}, container]},
            "status": {"phase": "Running", "containerStatuses": [status]},
        },
    )
    return pod["metadata"]["creationTimestamp"]


def next_second(after: str) -> str:
    """Wait until the UTC clock (second precision) has moved past ``after``; return the new second."""
    while (now := utc_now()) <= after:
        time.sleep(0.05)
    return now


def test_verify_needs_policy_ready_and_every_new_pod_right(test_cluster: TestCluster, tmp_path: Path) -> None:
    """Without the operator stand-in: hand-made pods and policy status, one rule at a time."""
    test_cluster.store.put("Namespace", {"metadata": {"name": NS}})
    seed_policy(test_cluster)
    image = f"quay.io/acme/{IMAGE}:{TAG_A}"
    digest = "sha256:" + "d" * 64
    expected = f"{K_A} {DS_A} {image} {digest}"
    # An old-generation pod, Ready, that already runs the expected image: it must not count.
    old = put_driver_pod(test_cluster, "old01", image, True, f"quay.io/acme/{IMAGE}@{digest}")
    patched_at = next_second(old)
    put_driver_pod(test_cluster, "new01", image, True, f"quay.io/acme/{IMAGE}@{digest}")
    # A second new pod, ready but on another image (a competing change): the kernel is not OK.
    put_driver_pod(test_cluster, "new02", "quay.io/other/driver:1", True, "y")
    test_cluster.store.mutate(
        by_kind("ClusterPolicy"), None, POLICY, lambda p: p.update(status={"state": "ready"})
    )
    proc, result = verify(test_cluster, tmp_path, patched_at, expected, timeout=1)
    assert proc.returncode == 1
    assert result["kernels"][K_A]["pods_new_of_all"] == "2/3"
    assert "runs quay.io/other/driver:1" in result["kernels"][K_A]["reason"]

    test_cluster.store.delete(by_kind("Pod"), NS, f"{DS_A}-new02")
    test_cluster.store.mutate(
        by_kind("ClusterPolicy"), None, POLICY, lambda p: p.update(status={"state": "notReady"})
    )
    proc, result = verify(test_cluster, tmp_path, patched_at, expected, timeout=1)
    assert proc.returncode == 1, "the ClusterPolicy must be ready too"
    assert result["kernels"][K_A]["status"] == "ok"
    assert result["policy_state"] == "notReady"

    test_cluster.store.mutate(
        by_kind("ClusterPolicy"), None, POLICY, lambda p: p.update(status={"state": "ready"})
    )
    proc, result = verify(test_cluster, tmp_path, patched_at, expected, timeout=1)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert result["verified"] is True
    assert result["kernels"][K_A]["pods_new_of_all"] == "1/2"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PATCHED_AT": "2025-01-31 12:00:00"}, "PATCHED_AT must look like"),
        ({"EXPECTED": f"{K_A} {DS_A} quay.io/a/b:1"}, "needs exactly"),
        ({"EXPECTED": f"{K_A} quay.io/a/b:1 sha256:{'a' * 64}"}, "needs exactly"),
        ({"EXPECTED": f"{K_A} {DS_A} quay.io/a/b:1 sha256:{'a' * 63}"}, "must be sha256:<64 hex>"),
        ({"EXPECTED": f'bad"kernel {DS_A} quay.io/a/b:1 sha256:{"a" * 64}'}, "is not a kernel release"),
        ({"EXPECTED": f"{K_A} Bad_DS quay.io/a/b:1 sha256:{'a' * 64}"}, "is not a DNS-1123 name"),
        (
            {
                "EXPECTED": f"{K_A} {DS_A} quay.io/a/b:1 sha256:{'a' * 64}\n"
                f"{K_A} {DS_B} quay.io/a/b:2 sha256:{'a' * 64}"
            },
            f"names two DaemonSets for kernel '{K_A}'",
        ),
        ({"EXPECTED": "\n\n"}, "EXPECTED lists no kernel"),
        ({"POLL_SECONDS": "0"}, "POLL_SECONDS must be a positive whole number"),
    ],
)
def test_verify_rejects_malformed_input(env: dict[str, str], message: str, tmp_path: Path) -> None:
    base = {
        "POLICY_NAME": POLICY,
        "OPERATOR_NAMESPACE": NS,
        "PATCHED_AT": "2025-01-31T12:00:00Z",
        "EXPECTED": f"{K_A} {DS_A} quay.io/a/b:1 sha256:{'a' * 64}",
    }
    proc, result = run_script("verify_rollout.sh", None, tmp_path, **{**base, **env})
    assert proc.returncode == 2
    assert message in proc.stderr
    assert result is None
