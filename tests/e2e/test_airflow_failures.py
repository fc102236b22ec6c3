"""The pipeline survives Airflow's own failures: a killed scheduler, task process and triggerer, and runs
in deferrable mode (issue 19).

Real Airflow components as child processes (``harness.airflow_standalone``: scheduler with the
LocalExecutor, triggerer, dag-processor, api-server; SQLite) against the simulated world
(``harness.pipeline_world``). ``harness.cluster_history`` records every step pod's life and every
ClusterPolicy spec write as they happen, so each test asserts on what really happened on the cluster:
no image built twice at once, no pod left behind, the policy written as often as it should be.

Waits are on conditions (pod states, task-instance rows, graph polls); Airflow's own detection of dead
schedulers and tasks is made quick with its settings (``FAST_RECOVERY``), never with sleeps here.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harness.airflow_standalone import AirflowStandalone, wait_for
from harness.cluster_history import ClusterHistory
from harness.pipeline_world import NAMESPACE, GraphServer, World, update_graph
from testcluster import Scenario, ScenarioResult
from testcluster.cluster import TestCluster
from testcluster.fleet import seed_demo
from testcluster.registry import Registry
from testcluster.resources import by_kind

# Each takes 1.5-3 min alone; the timeout leaves room for a loaded machine (2-3x slower).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]

DAG_ID = "nvidia_precompiled_driver"
DRIVERS = ["570.158.01", "580.65.06"]
ORIGINAL_DRIVER = {
    "enabled": True,
    "usePrecompiled": False,
    "repository": "nvcr.io/nvidia",
    "image": "driver",
    "version": "550.90.07",
}
# Airflow notices a dead scheduler or task process after these (defaults 30 s, 300 s, 300 s, 10 s).
FAST_RECOVERY = {
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "15",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "5",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    # The steps' first retry waits this long (their own default is 30 s).
    "PRECOMPILED_DRIVERS_RETRY_DELAY_SECONDS": "1",
}


class Gate:
    """Holds pods of a step Running until the test opens it: before their simulated work, or after it
    (the step's real script has done its work, the pod has not finished yet). Only first tries are held:
    a retry's new pod runs straight through."""

    def __init__(self, *, after: bool = False) -> None:
        self.after = after
        self._open = threading.Event()
        self.held: list[str] = []  # names of the pods held so far
        self._lock = threading.Lock()

    def wrap(self, action: Callable[[dict[str, Any]], ScenarioResult]) -> Callable[..., ScenarioResult]:
        """``action``, with the hold before or after it."""

        def gated(pod: dict[str, Any]) -> ScenarioResult:
            first_try = (pod["metadata"].get("labels") or {}).get("try_number") == "1"
            result = action(pod) if self.after else None
            if first_try:
                with self._lock:
                    self.held.append(pod["metadata"]["name"])
                if not self._open.wait(timeout=240):
                    return ScenarioResult(exit_code=1, logs=["test gate never opened"])
            return result if result is not None else action(pod)

        return gated

    def open(self) -> None:
        """Let every held and later pod go on."""
        self._open.set()


@pytest.fixture
def world(test_cluster: TestCluster, registry: Registry) -> Iterator[World]:
    """The demo fleet on 4.18.12 with one GPU kernel, so a run for the cluster's release may patch."""
    seed_demo(test_cluster, openshift_version="4.18.12")
    test_cluster.store.add_node("gpu-worker-2", "5.14.0-570.12.1.el9_6.x86_64", "rhel", "9.6", gpu=False)
    yield World(test_cluster, registry).install()


@pytest.fixture
def history(world: World) -> ClusterHistory:
    """Every step pod and ClusterPolicy write from now on."""
    return ClusterHistory(world.cluster, NAMESPACE).attach()


def conf(**overrides: Any) -> dict[str, Any]:
    """The cluster's release only, two drivers: two builds, two pushes, one patch."""
    return {"ocp_versions": [], "driver_versions": DRIVERS, "verify_timeout_minutes": 2, **overrides}


def airflow_for(world: World, **env: str) -> AirflowStandalone:
    """The standalone components pointed at ``world``, with quick failure detection."""
    return AirflowStandalone({**world.env(), **FAST_RECOVERY, **env})


def states(airflow: AirflowStandalone, run_id: str) -> dict[str, str]:
    """``task_id[map_index]`` -> state, for assertion messages."""
    return {
        f"{ti['task_id']}[{ti['map_index']}]": f"{ti['state']} (try {ti['try_number']})"
        for ti in airflow.task_instances(DAG_ID, run_id)
    }


def assert_rolled_out(world: World, history: ClusterHistory, run: dict[str, Any], detail: Any) -> None:
    """The run succeeded, the policy was written exactly once to the precompiled images, no pod is left."""
    assert run["state"] == "success", detail
    driver = world.policy_driver()
    assert driver["usePrecompiled"] is True and driver["repository"] == world.repository, driver
    assert [w[2] for w in history.policy_writes] == [driver], history.policy_writes
    assert history.left_behind() == [], detail


def test_scheduler_killed_while_builds_run(world: World, history: ClusterHistory) -> None:
    """kill -9 of the scheduler (with its executor workers, task supervisors and task runners, as when
    its pod dies) while both build pods run; a new scheduler resets the orphaned tasks, their next try
    re-attaches to the running pods: success, each image built by one pod, no pod left, the policy
    patched once."""
    gate = Gate()
    world.cluster.scenarios.set(
        "build_driver_image", Scenario(action=gate.wrap(world.build), duration=0.2, pending=0.1)
    )
    with airflow_for(world) as airflow:
        run_id = airflow.trigger(DAG_ID, conf())
        wait_for(lambda: len(gate.held) >= len(DRIVERS), 120, "both build pods running")
        builds = {
            ti["map_index"]: ti
            for ti in airflow.task_instances(DAG_ID, run_id)
            if ti["task_id"] == "build_driver_image"
        }
        assert {b["state"] for b in builds.values()} == {"running"}, builds

        airflow.kill("scheduler")
        airflow.restart("scheduler")

        # The new scheduler resets the orphans (state None, next try) and their new tries re-attach.
        def retried() -> bool:
            tis = [
                ti for ti in airflow.task_instances(DAG_ID, run_id) if ti["task_id"] == "build_driver_image"
            ]
            return len(tis) == len(DRIVERS) and all(
                ti["try_number"] > 1 and ti["state"] == "running" for ti in tis
            )

        wait_for(retried, 120, "the build tasks running again in a new try")
        gate.open()
        run = airflow.wait_run(DAG_ID, run_id, timeout=180)
        detail = (states(airflow, run_id), airflow.log_tail("scheduler"))

        builds = history.of_task("build_driver_image")
        assert len(builds) == len(DRIVERS), [(p.name, p.env.get("IMAGE")) for p in builds]
        assert history.overlapping("build_driver_image") == []
        for pod in builds:
            retry = airflow.task_log(DAG_ID, run_id, "build_driver_image", 2, int(pod.labels["map_index"]))
            assert f"Reconnecting to pod {NAMESPACE}/{pod.name}" in retry, retry
        assert len(world.builds) == len(DRIVERS), world.builds
        assert len(history.of_task("push_driver_image")) == len(DRIVERS)
        assert_rolled_out(world, history, run, detail)


def ti(airflow: AirflowStandalone, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
    """One task instance's DB row (it exists: asked for after it started)."""
    row = airflow.ti_row(DAG_ID, run_id, task_id, map_index)
    assert row is not None, (task_id, map_index)
    return row


def test_task_process_killed_during_push_and_patch(world: World, history: ClusterHistory) -> None:
    """kill -9 of the task runner after the step's script did its work, before the try reported.

    push[0]: its pod lives on, the retry re-attaches to it (no second push pod). push[1] and the patch:
    their pod is lost too (deleted, as with a drained node), so the retry runs the script again, which
    finds the image already there with its digest / the patch already applied: no second copy, no second
    write, no failure."""
    push_gate, patch_gate = Gate(after=True), Gate(after=True)
    for step, gate in (("push_driver_image", push_gate), ("patch_cluster_policy", patch_gate)):
        world.cluster.scenarios.set(
            step, Scenario(action=gate.wrap(world.on_host), duration=0.2, pending=0.05)
        )
    pods = by_kind("Pod")
    with airflow_for(world) as airflow:
        run_id = airflow.trigger(DAG_ID, conf())
        wait_for(lambda: len(push_gate.held) >= len(DRIVERS), 150, "both push pods done, not finished")
        built = {i: airflow.xcom(DAG_ID, run_id, "build_driver_image", i) for i in range(len(DRIVERS))}
        lost = {p.labels["map_index"]: p.name for p in history.of_task("push_driver_image")}

        airflow.kill_task(DAG_ID, run_id, "push_driver_image", 0)
        airflow.kill_task(DAG_ID, run_id, "push_driver_image", 1)
        world.cluster.store.delete(pods, NAMESPACE, lost["1"])

        def retried(map_index: int, state: str) -> bool:
            row = ti(airflow, run_id, "push_driver_image", map_index)
            return row["try_number"] == 2 and row["state"] == state

        wait_for(lambda: retried(1, "success"), 90, "push[1] retried in a new pod and done")
        wait_for(lambda: retried(0, "running"), 90, "push[0] retried, re-attached to its pod")
        push_gate.open()

        wait_for(lambda: patch_gate.held, 120, "the patch applied, its pod not finished")
        assert len(history.policy_writes) == 1, history.policy_writes
        airflow.kill_task(DAG_ID, run_id, "patch_cluster_policy")
        world.cluster.store.delete(pods, NAMESPACE, history.of_task("patch_cluster_policy")[0].name)
        patch_gate.open()

        run = airflow.wait_run(DAG_ID, run_id, timeout=180)
        detail = (states(airflow, run_id), airflow.log_tail("scheduler"))

        # push: each image pushed once with the build's digest; push[1]'s second pod only checked it.
        assert sorted(p.labels["map_index"] for p in history.of_task("push_driver_image")) == ["0", "1", "1"]
        for i, result in built.items():
            repo, tag = result["image"].split("/", 1)[1].rsplit(":", 1)
            assert world.registry.manifest_digest(repo, tag) == result["digest"], result
            assert airflow.xcom(DAG_ID, run_id, "push_driver_image", i)["digest"] == result["digest"]
        again = airflow.task_log(DAG_ID, run_id, "push_driver_image", 2, map_index=1)
        assert "(pushed by an earlier try): not copied again." in again, again
        assert "Copying" not in again
        reattached = airflow.task_log(DAG_ID, run_id, "push_driver_image", 2, map_index=0)
        assert f"Reconnecting to pod {NAMESPACE}/{lost['0']}" in reattached, reattached

        # patch: written once; the retry recognised its own patch.
        assert ti(airflow, run_id, "patch_cluster_policy")["try_number"] == 2
        patched = airflow.task_log(DAG_ID, run_id, "patch_cluster_policy", 2)
        assert "An earlier try had already applied the patch" in patched, patched
        assert ti(airflow, run_id, "rollback_cluster_policy")["state"] == "skipped", detail
        assert_rolled_out(world, history, run, detail)


CHANNEL = "stable-4.18"
NEW = "4.18.14"


def graph_of(versions: list[str]) -> dict[str, Any]:
    """The channel's update graph with ``versions`` in a line."""
    return update_graph(CHANNEL, versions, list(itertools.pairwise(versions)))


def test_triggerer_killed_between_polls_while_a_release_appears(
    world: World, history: ClusterHistory
) -> None:
    """kill -9 of the triggerer right after a poll; the release appears while it is down; the restarted
    triggerer reports it: one run. Killed and restarted again once that is recorded: still one run."""
    graph = GraphServer({CHANNEL: graph_of(["4.18.10", "4.18.12"])})
    env = {
        "AIRFLOW_VAR_PRECOMPILED_DRIVERS_CHANNELS": f'["{CHANNEL}"]',
        "AIRFLOW_VAR_PRECOMPILED_DRIVERS_GRAPH_URL": graph.url,
        "AIRFLOW_VAR_PRECOMPILED_DRIVERS_POLL_INTERVAL": "2",
        "AIRFLOW_VAR_PRECOMPILED_DRIVERS_FIRST_SIGHT": "baseline",
    }
    try:
        with airflow_for(world, **env) as airflow:
            # Baseline: the first poll records what exists, the second shows it was saved.
            wait_for(lambda: graph.requests >= 2, 60, "two polls of the update graph")
            seen = graph.requests
            wait_for(lambda: graph.requests > seen, 30, "one more poll")  # just polled: kill now
            airflow.kill("triggerer")
            graph.set_graph(CHANNEL, graph_of(["4.18.10", "4.18.12", NEW]))
            polls_while_down = graph.requests
            airflow.restart("triggerer")
            assert polls_while_down >= seen + 1

            runs = wait_for(lambda: airflow.runs(DAG_ID), 90, "a run for the new release")
            assert len(runs) == 1 and runs[0]["run_type"] == "asset_triggered", runs
            run_id = runs[0]["dag_run_id"]
            # The trigger saves what it reported before its next poll: two more polls, then kill again.
            seen = graph.requests
            wait_for(lambda: graph.requests >= seen + 2, 60, "two polls after the event")
            airflow.kill("triggerer")
            airflow.restart("triggerer")
            seen = graph.requests
            wait_for(lambda: graph.requests >= seen + 3, 60, "three polls after the second restart")

            run = airflow.wait_run(DAG_ID, run_id, timeout=180)
            detail = (states(airflow, run_id), airflow.log_tail("triggerer"))
            config = airflow.xcom(DAG_ID, run_id, "validate_inputs")
            events = [t for t in config["targets"] if t["source"] == "event"]
            assert events == [{"version": NEW, "arch": "x86_64", "source": "event"}], config["targets"]
            assert [r["dag_run_id"] for r in airflow.runs(DAG_ID)] == [run_id], "none lost, none repeated"
            assert_rolled_out(world, history, run, detail)
    finally:
        graph.stop()


DEFERRABLE = {"PRECOMPILED_DRIVERS_DEFERRABLE": "true"}
DEFERRED = "Pausing task as DEFERRED."  # what the task runner logs when a task defers (task_runner.py)


def assert_deferred(airflow: AirflowStandalone, run_id: str, task_id: str, map_index: int = -1) -> None:
    """The task deferred to the triggerer and came back in the same try."""
    row = ti(airflow, run_id, task_id, map_index)
    assert row["try_number"] == 1, row
    log = airflow.task_log(DAG_ID, run_id, task_id, 1, map_index)
    assert DEFERRED in log, log[-2000:]


def deferral_settled(airflow: AirflowStandalone, task_id: str, map_index: int = -1) -> bool:
    """The scheduler has handled the executor's event for the try that deferred.

    Airflow 3.3.2 race (apache/airflow#72716, #71580; fixes #72767, #71579 not released): when the
    trigger fires before the scheduler drains the executor's "success" for the worker that deferred, the
    stale event meets the resumed try RUNNING, is taken for an external kill and the try is failed
    (retried if it may: a second build; verify_rollout, which has no retry, fails the run). Pods here
    finish in a fraction of a second, so the tests hold them until this is logged; real builds and
    rollouts take minutes.
    """
    log = airflow.home / "logs" / "scheduler.log"
    wanted = f"task_id={task_id}, run_id="
    return any(
        "TaskInstance Finished:" in line
        and wanted in line
        and f"map_index={map_index}," in line
        and "state=deferred" in line
        for line in log.read_text(errors="replace").splitlines()
    )


def release_after_deferral(
    airflow: AirflowStandalone, run_id: str, gate: Gate, task_id: str, *, mapped: bool, timeout: float = 180
) -> None:
    """Open ``gate`` once every try of ``task_id`` (each mapped item) has deferred and was settled."""

    def items() -> list[int]:
        found = [t["map_index"] for t in airflow.task_instances(DAG_ID, run_id) if t["task_id"] == task_id]
        # A mapped task has one -1 row until it is expanded.
        return [i for i in found if (i >= 0) == mapped]

    for i in wait_for(items, timeout, f"{task_id} to start"):
        wait_for(lambda i=i: deferral_settled(airflow, task_id, i), timeout, f"{task_id}[{i}] deferred")
    gate.open()


def hold_deferred_steps(world: World) -> tuple[Gate, Gate]:
    """Gates before the build (simulated) and the verify script (real, on the host)."""
    build, verify = Gate(), Gate()
    scenarios = world.cluster.scenarios
    scenarios.set("build_driver_image", Scenario(action=build.wrap(world.build), duration=0.2, pending=0.1))
    scenarios.set("verify_rollout", Scenario(action=verify.wrap(world.on_host), duration=0.2, pending=0.05))
    return build, verify


def test_deferrable_run_goes_through_the_triggerer(world: World, history: ClusterHistory) -> None:
    """PRECOMPILED_DRIVERS_DEFERRABLE=true: the build and verify waits run in the triggerer; success."""
    build, verify = hold_deferred_steps(world)
    with airflow_for(world, **DEFERRABLE) as airflow:
        run_id = airflow.trigger(DAG_ID, conf())
        release_after_deferral(airflow, run_id, build, "build_driver_image", mapped=True)
        release_after_deferral(airflow, run_id, verify, "verify_rollout", mapped=False)
        run = airflow.wait_run(DAG_ID, run_id, timeout=240)
        detail = (states(airflow, run_id), airflow.log_tail("triggerer"))
        assert run["state"] == "success", detail
        for i in range(len(DRIVERS)):
            assert_deferred(airflow, run_id, "build_driver_image", i)
        assert_deferred(airflow, run_id, "verify_rollout")
        assert airflow.xcom(DAG_ID, run_id, "verify_rollout")["verified"] is True
        assert len(history.of_task("build_driver_image")) == len(DRIVERS)
        assert_rolled_out(world, history, run, detail)


def test_deferrable_verify_timeout_rolls_back_exactly(test_cluster: TestCluster, registry: Registry) -> None:
    """Deferrable verify that times out: the rollback restores spec.driver exactly.

    As test_pipeline.py's timeout case: the form claims operator v26.7 (OS tags rhcos4.18, rhel9) while
    the cluster runs v25.10 listing the rhel 9.6 node first, so the operator looks for a tag nobody pushed.
    """
    seed_demo(test_cluster)
    world = World(test_cluster, registry).install()
    history = ClusterHistory(test_cluster, NAMESPACE).attach()
    test_cluster.operator.version = "v25.10.0"
    test_cluster.operator.list_order = "reverse"
    original = world.policy_driver()
    build, verify = hold_deferred_steps(world)
    with airflow_for(world, **DEFERRABLE) as airflow:
        params = world.params(operator_version="v26.7.0", verify_timeout_minutes=0.25)
        run_id = airflow.trigger(DAG_ID, params)
        release_after_deferral(airflow, run_id, build, "build_driver_image", mapped=True)
        release_after_deferral(airflow, run_id, verify, "verify_rollout", mapped=False)
        run = airflow.wait_run(DAG_ID, run_id, timeout=240)
        detail = (states(airflow, run_id), airflow.log_tail("triggerer"))
        assert run["state"] == "failed", detail
        assert ti(airflow, run_id, "patch_cluster_policy")["state"] == "success", detail
        assert ti(airflow, run_id, "verify_rollout")["state"] == "failed", detail
        assert_deferred(airflow, run_id, "verify_rollout")
        assert "ERROR: rollout not verified within 15s" in airflow.task_log(
            DAG_ID, run_id, "verify_rollout", 1
        )
        assert ti(airflow, run_id, "rollback_cluster_policy")["state"] == "success", detail
        assert airflow.xcom(DAG_ID, run_id, "rollback_cluster_policy")["rolled_back"] is True

    # spec.driver back byte for byte (the server's canonical form: sorted keys), after two writes.
    assert json.dumps(world.policy_driver(), sort_keys=True) == json.dumps(original, sort_keys=True)
    writes = [w[2] for w in history.policy_writes]
    assert len(writes) == 2 and writes[0]["usePrecompiled"] is True and writes[1] == original, writes
    # The failed verify pod is kept for its logs (delete_succeeded_pod); nothing else is left.
    left = history.left_behind()
    assert [history.pods[name].task_id for name in left] == ["verify_rollout"], left
