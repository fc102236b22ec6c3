"""The real DAG on a cluster whose drivers come from NVIDIADriver resources (issue #14).

The run detects the mode from the cluster (GPUCluster / useNvidiaDriverCRD), plans every NVIDIADriver's
pools as the operator stand-in runs them, publishes the images, skips the ClusterPolicy steps and rolls the
NVIDIADrivers out one at a time, canary first (roll_out_nvidia_drivers): (a) precompiled CRs patched,
(b) compiled CRs replaced when the run allows a driver restart, with an injected pull failure in the second
pool restoring that pool's original CR exactly while the canary stays, (c) refused before any change
without that permission, (d) with a GPUCluster and no ClusterPolicy.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from harness.dag_runner import task_states, xcom
from harness.nvidia_drivers import POOL, create_pools, into_pools, nvidia_driver, use_nvidia_driver_crd
from harness.pipeline_world import NAMESPACE
from testcluster.resources import by_kind

pytestmark = pytest.mark.e2e
OPERATOR_NS = "nvidia-gpu-operator"
K418 = "5.14.0-427.50.1.el9_4.x86_64"
K419 = "5.14.0-570.12.1.el9_6.x86_64"
NEW = "570.158.01"
STEP = "roll_out_nvidia_drivers"
CP_STEPS = ("patch_cluster_policy", "verify_rollout", "check_gpu_workload", "rollback_cluster_policy")


def drivers(world: Any) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in world.cluster.store.list_objects("NVIDIADriver")}


def as_written(cr: dict[str, Any]) -> str:
    """What a user wrote: spec, labels and annotations, as a client reads them back (sorted keys)."""
    meta = cr["metadata"]
    keep = {"spec": cr["spec"], "labels": meta.get("labels"), "annotations": meta.get("annotations")}
    return json.dumps(keep, sort_keys=True)


class DriverEvents:
    """Every NVIDIADriver write, in order: (event, name, spec.version, usePrecompiled, status.state)."""

    def __init__(self, world: Any) -> None:
        self.events: list[tuple[str, str, str, bool, str]] = []
        self._lock = threading.Lock()
        world.cluster.store.add_listener(self._seen)

    def _seen(self, etype: str, res: Any, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if res.kind != "NVIDIADriver":
            return
        spec = obj.get("spec") or {}
        row = (
            etype,
            obj["metadata"]["name"],
            str(spec.get("version")),
            spec.get("usePrecompiled") is True,
            str((obj.get("status") or {}).get("state")),
        )
        with self._lock:
            self.events.append(row)

    def first(self, name: str, *, version: str = NEW, state: str | None = None) -> int:
        """Index of the first write of ``name`` at ``version`` (and ``state``)."""
        with self._lock:
            return next(
                i
                for i, (_e, n, v, _p, s) in enumerate(self.events)
                if n == name and v == version and (state is None or s == state)
            )


def driver_pods(world: Any, cr_name: str) -> dict[str, tuple[str, bool]]:
    """node -> (image, Ready) of the driver pods of DaemonSets owned by the NVIDIADriver ``cr_name``."""
    store = world.cluster.store
    uid = drivers(world)[cr_name]["metadata"]["uid"]
    owned = {
        d["metadata"]["name"]
        for d in store.list_objects("DaemonSet", OPERATOR_NS)
        if any(o.get("uid") == uid for o in d["metadata"].get("ownerReferences") or [])
    }
    out = {}
    for pod in store.list_objects("Pod", OPERATOR_NS):
        refs = pod["metadata"].get("ownerReferences") or [{}]
        if refs[0].get("name") in owned:
            status = (pod.get("status") or {}).get("containerStatuses") or [{}]
            out[pod["spec"]["nodeName"]] = (
                pod["spec"]["containers"][0]["image"],
                bool(status[0].get("ready")),
            )
    return out


def image(world: Any, kernel: str, tag: str) -> str:
    return f"{world.repository}/driver:{NEW}-{kernel}-{tag}"


def assert_clusterpolicy_steps_skipped(states: dict[str, str], world: Any, policy: dict[str, Any]) -> None:
    for step in CP_STEPS:
        assert states[step] == "skipped", (step, states[step])
    assert world.policy_driver() == policy  # the field nobody reads is left alone


def test_gpucluster_rolls_out_every_pool_through_nvidiadriver_only(world, run_dag) -> None:
    """(d) The DRA stack: a GPUCluster, no ClusterPolicy. Both precompiled pools move to the new driver,
    the smallest (b, one node) first."""
    store = world.cluster.store
    store.delete(by_kind("ClusterPolicy"), None, "gpu-cluster-policy")  # the DRA stack has none
    store.put("GPUCluster", {"metadata": {"name": "gpu-cluster"}, "spec": {}})
    create_pools(world)
    events = DriverEvents(world)

    dag_run = run_dag(driver_versions=[NEW])
    states = task_states(dag_run)
    assert dag_run.state == "success", states
    assert states[STEP] == "success"
    for step in CP_STEPS:
        assert states[step] == "skipped", (step, states[step])
    result = xcom(dag_run, STEP)
    assert [(s["driver"], s["action"], s["outcome"]) for s in result["stages"]] == [
        ("pool-b", "patch", "verified"),
        ("pool-a", "patch", "verified"),
    ]
    assert events.first("pool-b") < events.first("pool-a")
    now = drivers(world)
    assert now["pool-a"]["spec"]["version"] == now["pool-b"]["spec"]["version"] == NEW
    assert driver_pods(world, "pool-b") == {"gpu-worker-2": (image(world, K419, "rhel9"), True)}
    assert driver_pods(world, "pool-a") == {
        "gpu-worker-0": (image(world, K418, "rhcos4.18"), True),
        "gpu-worker-1": (image(world, K418, "rhcos4.18"), True),
    }
    report = xcom(dag_run, "report")
    assert "NVIDIADriver rollout (every stage verified): NVIDIADriver mode (GPUCluster gpu-cluster" in report
    assert "NVIDIADriver pool-a (precompiled), pool rhcos4.18" in report
    assert "NVIDIADriver pool-b (precompiled), pool rhel9" in report
    assert "canary: patch NVIDIADriver pool-b (version 550.90.07 -> 570.158.01" in report


def test_precompiled_pools_bump_the_driver_canary_first(world, run_dag) -> None:
    """(a) useNvidiaDriverCRD in the ClusterPolicy, two precompiled pools, the canary named in the form
    (pool-a, the larger one): it is patched and verified before pool-b is touched."""
    use_nvidia_driver_crd(world)
    create_pools(world)
    policy = world.policy_driver()
    events = DriverEvents(world)

    dag_run = run_dag(driver_versions=[NEW], canary_pool="pool-a")
    states = task_states(dag_run)
    assert dag_run.state == "success", states
    assert_clusterpolicy_steps_skipped(states, world, policy)
    result = xcom(dag_run, STEP)
    assert result["verified"] is True
    assert [(s["driver"], s["outcome"]) for s in result["stages"]] == [
        ("pool-a", "verified"),
        ("pool-b", "verified"),
    ]
    # The canary was patched, and reported ready on the new driver, before the second pool was patched.
    assert events.first("pool-a") < events.first("pool-a", state="ready") < events.first("pool-b")
    assert {n: v for n, (v, _ready) in driver_pods(world, "pool-a").items()} == {
        "gpu-worker-0": image(world, K418, "rhcos4.18"),
        "gpu-worker-1": image(world, K418, "rhcos4.18"),
    }
    assert driver_pods(world, "pool-b") == {"gpu-worker-2": (image(world, K419, "rhel9"), True)}
    for cr in drivers(world).values():
        assert cr["status"]["state"] == "ready"
        assert cr["metadata"]["labels"] == {"team": "ml", "pool": cr["spec"]["nodeSelector"][POOL]}


def test_a_gpu_check_failing_in_the_second_pool_restores_that_pool_only(world, run_dag) -> None:
    """#15 in NVIDIADriver mode: after each stage verifies, a CUDA workload runs on one GPU of each of its
    pools. Pool a's GPUs are broken: its patch is reversed exactly, the canary (pool b) stays."""
    use_nvidia_driver_crd(world)
    create_pools(world)
    before = as_written(drivers(world)["pool-a"])
    for name in ("gpu-worker-0", "gpu-worker-1"):  # pool a's nodes: wherever its check lands
        world.cluster.kubelet.gpu_faults[name] = "unknown error"

    dag_run = run_dag(driver_versions=[NEW])
    states = task_states(dag_run)
    assert dag_run.state == "failed", states
    assert states[STEP] == "failed" and states["check_gpu_workload"] == "skipped"
    result = xcom(dag_run, STEP)
    assert [(s["driver"], s["outcome"]) for s in result["stages"]] == [
        ("pool-b", "verified"),
        ("pool-a", "restored"),
    ]
    assert (
        "GPU workload check passed: 5.14.0-570.12.1.el9_6.x86_64 on gpu-worker-2: Test PASSED"
        in (result["stages"][0]["reason"])
    )
    failed = result["stages"][1]["reason"]
    assert failed.startswith(f"GPU workload check failed: kernel {K418} on gpu-worker-"), failed
    assert "Failed to allocate device vector A (error code unknown error)!" in failed
    assert as_written(drivers(world)["pool-a"]) == before  # the patch reversed exactly
    assert drivers(world)["pool-b"]["spec"]["version"] == NEW
    assert "Stages already verified stay on the new driver: pool-b." in xcom(dag_run, "report")


def test_compiled_pools_are_replaced_and_a_failed_second_pool_is_restored_exactly(world, run_dag) -> None:
    """(b) Compiled CRs, restart allowed: each is replaced by a precompiled one keeping every other field.
    The second pool's nodes cannot pull its image: that pool's original CR is back byte for byte, its
    compiled driver runs again, and the canary stays on the new driver."""
    use_nvidia_driver_crd(world)
    create_pools(world, precompiled=False)
    policy = world.policy_driver()
    before = {name: as_written(cr) for name, cr in drivers(world).items()}
    uids = {name: cr["metadata"]["uid"] for name, cr in drivers(world).items()}
    world.cluster.operator.unpullable.add(image(world, K418, "rhcos4.18"))  # pool a's nodes

    dag_run = run_dag(driver_versions=[NEW], allow_driver_restart=True, verify_timeout_minutes=0.25)
    states = task_states(dag_run)
    assert dag_run.state == "failed", states
    assert states[STEP] == "failed"
    assert_clusterpolicy_steps_skipped(states, world, policy)
    result = xcom(dag_run, STEP)
    assert [(s["driver"], s["action"], s["outcome"]) for s in result["stages"]] == [
        ("pool-b", "replace", "verified"),
        ("pool-a", "replace", "restored"),
    ]
    now = drivers(world)
    # The canary stays: a new, precompiled NVIDIADriver with every other field kept, on the new driver.
    canary = now["pool-b"]
    assert canary["metadata"]["uid"] != uids["pool-b"]
    assert canary["spec"]["usePrecompiled"] is True and canary["spec"]["version"] == NEW
    assert {k: v for k, v in canary["spec"].items() if k not in ("usePrecompiled", "version")} == {
        k: v
        for k, v in json.loads(before["pool-b"])["spec"].items()
        if k not in ("usePrecompiled", "version")
    }
    assert canary["metadata"]["annotations"] == {"example.com/owner": "gpu platform team"}
    assert driver_pods(world, "pool-b") == {"gpu-worker-2": (image(world, K419, "rhel9"), True)}
    # The failed pool: its original, recreated exactly (spec, labels, annotations).
    assert as_written(now["pool-a"]) == before["pool-a"]
    assert now["pool-a"]["metadata"]["uid"] != uids["pool-a"]  # recreated: the API server's new object
    world.cluster.operator.reconcile_now()
    assert {img for img, _ready in driver_pods(world, "pool-a").values()} <= {
        f"{world.repository}/driver:550.90.07-rhcos4.18"
    }
    report = xcom(dag_run, "report")
    first = report.splitlines()[0]
    assert first.startswith(f"Run FAILED at {STEP}: ERROR: stage 2 (NVIDIADriver pool-a, replace) failed"), (
        first
    )
    assert "ImagePullBackOff" in report
    assert "Stages already verified stay on the new driver: pool-b." in report


def test_a_compiled_pool_without_permission_is_refused_and_nothing_changes(world, run_dag) -> None:
    """(c) A compiled CR and no allow_driver_restart: plan_rollout refuses, saying what to do; no pod of
    the rollout step is created and every NVIDIADriver is exactly as it was."""
    use_nvidia_driver_crd(world)
    into_pools(world)
    store = world.cluster.store
    store.create(by_kind("NVIDIADriver"), None, nvidia_driver("pool-a", "a", world.repository))
    store.create(by_kind("NVIDIADriver"), None, nvidia_driver("pool-b", "b", world.repository, False))
    world.cluster.operator.reconcile_now()
    created: list[str] = []
    store.add_listener(
        lambda etype, res, obj, old: (
            created.append(obj["metadata"].get("labels", {}).get("precompiled-drivers/step", ""))
            if etype == "ADDED" and res.kind == "Pod" and obj["metadata"].get("namespace") == NAMESPACE
            else None
        )
    )
    before = {n: json.dumps(cr, sort_keys=True) for n, cr in drivers(world).items()}

    dag_run = run_dag(driver_versions=[NEW])
    states = task_states(dag_run)
    assert dag_run.state == "failed", states
    assert states["plan_rollout"] == "failed"
    assert states[STEP] == "upstream_failed"
    assert states["push_driver_image[0]"] == "success"  # the images are still published
    assert STEP not in created and "patch_cluster_policy" not in created
    after = {n: json.dumps(cr, sort_keys=True) for n, cr in drivers(world).items()}
    # Unchanged but for the operator's status writes (same UID, spec, metadata).
    for name in before:
        old, new = json.loads(before[name]), json.loads(after[name])
        assert (old["metadata"], old["spec"]) == (new["metadata"], new["spec"]), name
    report = xcom(dag_run, "report")
    assert "NVIDIADriver pool-b has usePrecompiled: false" in report
    assert "allow_driver_restart" in report
    assert "nothing on the cluster was changed" in report


def test_demo_scenario_nvidiadriver(tmp_path) -> None:
    """``make demo SCENARIO=nvidiadriver`` as a user runs it: the plan per pool and the staged rollout."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": f"{root / 'tests'}:{root / 'plugins'}",
        "DEMO_HOME": str(tmp_path / "d"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "harness.demo", "--scenario", "nvidiadriver"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-4000:]
    report = out.split("=== Report (from the report task) ===", 1)[1]
    assert (
        "NVIDIADriver rollout (every stage verified): NVIDIADriver mode (spec.driver.useNvidiaDriverCRD"
        in report
    )
    assert (
        "NVIDIADriver gpu-driver-rhel (precompiled), pool rhel9 kernel 5.14.0-570.12.1.el9_6.x86_64" in report
    )
    assert "canary: patch NVIDIADriver gpu-driver-rhel" in report  # one node: the smallest pool
    assert "stage 2: patch NVIDIADriver gpu-driver-rhcos" in report
    assert "NVIDIADriver mode: every NVIDIADriver was rolled out and verified, one at a time" in out
