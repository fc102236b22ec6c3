"""The ClusterPolicy scripts (patch, verify, rollback): shellcheck, and real runs with kubectl."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from precompiled_drivers import cluster_policy as cp
from testcluster import TestCluster

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
SAN_B, TAG_B = "5.14.0-570.12.1.el9.6", f"{DRIVER_VERSION}-{K_B}-rhel9.6"

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
    """Run a script as the pod would (env only), return the process and its parsed XCom (None if absent)."""
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
        ["bash", str(SCRIPTS / name)], env=full_env, capture_output=True, text=True, timeout=120, check=False
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
    assert result is None
    assert current_policy(test_cluster)["spec"] == changed["spec"]


def test_patch_reports_missing_policy(test_cluster: TestCluster, tmp_path: Path) -> None:
    proc, result = run_script(
        "patch_cluster_policy.sh", test_cluster, tmp_path, POLICY_NAME="no-such-policy", PATCH_JSON="[]",
        DRY_RUN="false",
    )  # fmt: skip
    assert proc.returncode == 1
    assert "could not read ClusterPolicy 'no-such-policy'" in proc.stderr
    assert result is None


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
