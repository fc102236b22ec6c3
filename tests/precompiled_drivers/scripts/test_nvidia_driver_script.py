"""roll_out_nvidia_drivers.sh with real kubectl against the test server (no operator: nothing verifies).

The guards: an NVIDIADriver changed (or recreated) since the pipeline read it is never patched, deleted or
replaced; a stage that fails verification is restored exactly; a dry run changes nothing.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from harness.nvidia_drivers import K418, POOL, pool_stages
from precompiled_drivers import nvidia_driver
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps import roll_out_nvidia_drivers as step
from precompiled_drivers.steps.base import script
from testcluster import TestCluster
from testcluster.resources import by_kind

ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = ROOT / ".venv" / "bin"
REPO = "quay.io/acme"
IMAGE = f"{REPO}/driver:570.2-{K418}-rhcos4.18"
DRIVERS = by_kind("NVIDIADriver")


def seed(cluster: TestCluster, name: str, pool: str, precompiled: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"driverType": "gpu", "usePrecompiled": precompiled, "nodeSelector": {POOL: pool}}
    spec.update(repository=REPO, image="driver", version="570.1")
    body = {
        "metadata": {"name": name, "labels": {"team": "ml"}, "annotations": {"note": "keep me"}},
        "spec": spec,
    }
    return cluster.store.create(DRIVERS, None, body)


def stages(cluster: TestCluster, allow: bool = True) -> tuple[nvidia_driver.Stage, ...]:
    """The stages plan_rollout computes from the NVIDIADrivers as the server holds them now."""
    return pool_stages(tuple(cluster.store.list_objects("NVIDIADriver")), REPO, allow)


def run(cluster: TestCluster, tmp_path: Path, planned: Any, dry_run: bool = False) -> tuple[Any, Any]:
    env = step.env(Settings(), planned, 2, dry_run)
    assert env is not None
    xcom = tmp_path / f"xcom-{time.monotonic_ns()}" / "return.json"
    proc = subprocess.run(
        ["bash", "-c", script("roll_out_nvidia_drivers.sh"), "roll_out_nvidia_drivers.sh"],
        env={
            **env,
            "POLL_SECONDS": "1",
            "PATH": f"{VENV_BIN}:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "XCOM_RETURN": str(xcom),
            "KUBECONFIG": str(cluster.kubeconfig_path),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc, json.loads(xcom.read_text()) if xcom.exists() else None


def written(cluster: TestCluster, name: str) -> tuple[Any, ...]:
    cr = cluster.store.get_object("NVIDIADriver", name)
    meta = cr["metadata"]
    return (cr["spec"], meta.get("labels"), meta.get("annotations"))


def outcomes(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["driver"], s["outcome"]) for s in result["stages"]]


def test_a_patch_guard_refuses_a_concurrent_edit_and_nothing_else_starts(
    test_cluster: TestCluster, tmp_path: Path
) -> None:
    seed(test_cluster, "pool-a", "a", True)
    seed(test_cluster, "pool-b", "b", True)
    planned = stages(test_cluster)
    # Someone edits the canary after the pipeline read it.
    test_cluster.store.mutate(DRIVERS, None, "pool-a", lambda cr: cr["spec"].update(version="999.1"))
    before = {n: written(test_cluster, n) for n in ("pool-a", "pool-b")}
    proc, result = run(test_cluster, tmp_path, planned)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert outcomes(result) == [("pool-a", "not_applied"), ("pool-b", "not_started")]
    assert "a failed 'test' operation: it changed since the pipeline read it" in result["stages"][0]["reason"]
    assert {n: written(test_cluster, n) for n in before} == before


def test_a_replacement_never_deletes_an_nvidiadriver_recreated_since_the_read(
    test_cluster: TestCluster, tmp_path: Path
) -> None:
    seed(test_cluster, "pool-a", "a", False)
    planned = stages(test_cluster)
    test_cluster.store.delete(DRIVERS, None, "pool-a")
    uid = seed(test_cluster, "pool-a", "a", False)["metadata"]["uid"]  # same spec, another object
    proc, result = run(test_cluster, tmp_path, planned)
    assert proc.returncode == 1
    assert outcomes(result) == [("pool-a", "not_applied")]
    assert "changed since the pipeline read it (UID or spec)" in result["stages"][0]["reason"]
    assert test_cluster.store.get_object("NVIDIADriver", "pool-a")["metadata"]["uid"] == uid


def test_a_replacement_that_does_not_verify_is_undone_to_the_original_exactly(
    test_cluster: TestCluster, tmp_path: Path
) -> None:
    seed(test_cluster, "pool-a", "a", False)
    planned = stages(test_cluster)
    before = written(test_cluster, "pool-a")
    proc, result = run(test_cluster, tmp_path, planned)  # no operator: no driver pod, no status
    assert proc.returncode == 1
    assert outcomes(result) == [("pool-a", "restored")]
    assert "not verified within 2s" in result["stages"][0]["reason"]
    assert "replacing NVIDIADriver pool-a" in proc.stdout
    assert written(test_cluster, "pool-a") == before
    assert test_cluster.store.get_object("NVIDIADriver", "pool-a")["spec"]["usePrecompiled"] is False


def test_a_patch_that_does_not_verify_is_reversed_and_a_dry_run_changes_nothing(
    test_cluster: TestCluster, tmp_path: Path
) -> None:
    seed(test_cluster, "pool-a", "a", True)
    planned = stages(test_cluster)
    before = written(test_cluster, "pool-a")
    proc, result = run(test_cluster, tmp_path, planned, dry_run=True)
    assert proc.returncode == 0 and result["dry_run"] is True
    assert outcomes(result) == [("pool-a", "not_started")]
    assert written(test_cluster, "pool-a") == before
    proc, result = run(test_cluster, tmp_path, planned)
    assert proc.returncode == 1
    assert outcomes(result) == [("pool-a", "restored")]
    assert written(test_cluster, "pool-a") == before


def test_a_replacement_whose_delete_is_refused_changes_nothing(
    test_cluster: TestCluster, tmp_path: Path
) -> None:
    seed(test_cluster, "pool-a", "a", False)
    planned = stages(test_cluster)
    before = written(test_cluster, "pool-a")
    test_cluster.faults.fail_next(r"/nvidiadrivers/pool-a$", n=1, status=403, method="DELETE")
    proc, result = run(test_cluster, tmp_path, planned)
    assert proc.returncode == 1
    assert outcomes(result) == [("pool-a", "not_applied")]
    assert (
        "could not delete NVIDIADriver pool-a to replace it (it is still there"
        in result["stages"][0]["reason"]
    )
    assert written(test_cluster, "pool-a") == before
