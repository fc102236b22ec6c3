"""A run in which a step failed never ends green (#21): every step is failed in turn on the real DAG.

For each step, one run where that step fails on every try: the run fails, the report task ran and
its first line names the step and the step's own reason, and the ClusterPolicy is untouched unless
the failure came after the patch (then the exact previous spec.driver is restored). Pod steps fail
through the test cluster (a scenario printing an ERROR line, or an API fault); Python steps by
swapping the function in ``precompiled_drivers.tasks`` before the DAG is parsed.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from harness.dag_runner import task_states, xcom
from harness.nvidia_drivers import create_pools, use_nvidia_driver_crd
from harness.pipeline_world import NAMESPACE, World
from precompiled_drivers import procedure, tasks
from testcluster import Scenario, ScenarioResult

pytestmark = pytest.mark.e2e

ONE_DRIVER = ["570.158.01"]
POLICY_PATH = r"/apis/nvidia\.com/v1/clusterpolicies/gpu-cluster-policy$"
# Every step but the report, which is what reports each failure (procedure order).
STEPS = tuple(s.task_id for s in procedure.STEPS if s.task_id != "report")
PATCH_INDEX = STEPS.index("patch_cluster_policy")


@pytest.fixture(autouse=True)
def fast_retries(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """One-second retry delays (the installation setting), so a step's retries fit in the test."""
    monkeypatch.setenv("PRECOMPILED_DRIVERS_RETRY_DELAY_SECONDS", "1")


def failing_script(step: str) -> Scenario:
    """A pod whose script reports an error, then prints more (the reason is its last ERROR line)."""
    return Scenario(
        exit_code=1,
        logs=[f"{step}: starting", f"ERROR: injected failure of {step}", "see the lines above"],
        duration=0.1,
    )


def failing_python(monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """Replace a Python step by one that raises (same signature, so Airflow passes the same arguments)."""
    original = getattr(tasks, step)

    @functools.wraps(original)
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"injected failure of {step}")

    monkeypatch.setattr(tasks, step, broken)


def failing_approval_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """The approval request cannot be written: the call the standard provider's HITLOperator.execute makes
    to post it (airflow/providers/standard/operators/hitl.py ``upsert_hitl_detail``) raises."""
    from airflow.providers.standard.operators import hitl

    def refused(**kwargs: Any) -> None:
        raise RuntimeError("injected failure of approve_rollout")

    monkeypatch.setattr(hitl, "upsert_hitl_detail", refused)


NVD_STEP = "roll_out_nvidia_drivers"


def nvidia_driver_specs(world: World) -> dict[str, Any]:
    """NVIDIADriver name -> spec, as the test server holds them."""
    return {d["metadata"]["name"]: d["spec"] for d in world.cluster.store.list_objects("NVIDIADriver")}


def policy_json(world: World) -> str:
    """spec.driver as a client reads it back (the API server serialises with sorted keys)."""
    return json.dumps(world.policy_driver(), sort_keys=True)


def report_table(report: str) -> dict[str, str]:
    """step -> state as the report's step table shows it."""
    table = report.split("-----\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return {line.split(None, 1)[0]: line.split(None, 1)[1].strip() for line in table}


def assert_no_pipeline_pod_running(world: World) -> None:
    phases = {
        p["metadata"]["name"]: p.get("status", {}).get("phase")
        for p in world.cluster.store.list_objects("Pod", NAMESPACE)
    }
    assert not [name for name, phase in phases.items() if phase in ("Pending", "Running")], phases


# step -> how to make it fail, and the reason its report line must carry.
CASES = [
    ("validate_inputs", "python", "injected failure of validate_inputs"),
    ("inspect_cluster", "script", "ERROR: injected failure of inspect_cluster"),
    ("plan_releases", "python", "injected failure of plan_releases"),
    ("resolve_driver_toolkit", "script", "ERROR: injected failure of resolve_driver_toolkit"),
    # The reported incident: DTK pods of the wrong architecture never run the script at all.
    ("inspect_driver_toolkit", "exec_format", "exec /usr/bin/bash: exec format error"),
    ("plan_builds", "python", "injected failure of plan_builds"),
    ("check_published_images", "script", "ERROR: injected failure of check_published_images"),
    ("select_builds", "python", "injected failure of select_builds"),
    ("publish_os_tags", "script", "ERROR: injected failure of publish_os_tags"),
    ("plan_rollout", "python", "injected failure of plan_rollout"),
    ("record_readiness", "script", "ERROR: injected failure of record_readiness"),
    # The run requires approval and the request cannot be posted (the Execution API refuses it).
    ("approve_rollout", "approval_request", "injected failure of approve_rollout"),
    ("patch_cluster_policy", "api_forbidden", "ERROR: the API server rejected the patch"),
    # NVIDIADriver mode (useNvidiaDriverCRD, two pools): the staged rollout's pod fails.
    ("roll_out_nvidia_drivers", "script", "ERROR: injected failure of roll_out_nvidia_drivers"),
    ("verify_rollout", "script", "ERROR: injected failure of verify_rollout"),
    ("check_gpu_workload", "script", "ERROR: injected failure of check_gpu_workload"),
    ("needs_rollback", "python", "injected failure of needs_rollback"),
    ("rollback_cluster_policy", "script", "ERROR: injected failure of rollback_cluster_policy"),
]


def test_every_step_is_in_the_matrix() -> None:
    # One run per step keeps the matrix fast: build_driver_image's run is the one-of-three test below,
    # push_driver_image's (five tries) test_faults.py::test_refused_push_fails_without_patch_and_a_rerun...
    covered = [step for step, _how, _reason in CASES] + ["build_driver_image", "push_driver_image"]
    assert sorted(covered) == sorted(STEPS)
    # A Python step fails by raising, a pod step through its pod (script, API fault, exec error).
    for step, how, _reason in CASES:
        assert (how == "python") == (procedure.step(step).kind == "python"), step


@pytest.mark.parametrize(("step", "how", "reason"), CASES, ids=[c[0] for c in CASES])
def test_a_failed_step_fails_the_run_and_the_report_names_it(
    world: World,
    run_dag: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    step: str,
    how: str,
    reason: str,
) -> None:
    scenarios = world.cluster.scenarios
    if how == "python":
        failing_python(monkeypatch, step)
    elif how == "script":
        scenarios.set(step, failing_script(step))
    elif how == "exec_format":
        # runc reports it on the container's stderr; the script never starts (exit 255, no ERROR line).
        scenarios.set(step, Scenario(exit_code=255, logs=["exec /usr/bin/bash: exec format error"]))
    elif how == "approval_request":
        failing_approval_request(monkeypatch)
    elif how == "api_forbidden":
        # The ServiceAccount may not patch: refused at once, nothing changed.
        world.cluster.faults.fail_next(POLICY_PATH, n=1, status=403, method="PATCH")
    if step in ("rollback_cluster_policy",):
        scenarios.set("verify_rollout", failing_script("verify_rollout"))
    if step == NVD_STEP:
        use_nvidia_driver_crd(world)
        create_pools(world)
    before = policy_json(world)
    nvidia_drivers = nvidia_driver_specs(world)

    dag_run = run_dag(driver_versions=ONE_DRIVER, require_approval=how == "approval_request")
    states = task_states(dag_run)
    assert dag_run.state == "failed", states
    assert states["report"] == "failed", "the report ran (and failed the run)"
    report = xcom(dag_run, "report")
    first = report.splitlines()[0]
    # The rollback runs only after a failure: the first failure is then the verification's.
    first_step = "verify_rollout" if step == "rollback_cluster_policy" else step
    assert first.startswith(f"Run FAILED at {first_step}"), first
    if first_step == step:
        assert reason in first, first
    if step in ("resolve_driver_toolkit", "inspect_driver_toolkit"):
        # Mapped per release: the headline names the failed items (here every release of the run).
        assert first.startswith(f"Run FAILED at {step} (4.18.12-x86_64, 4.19.3-x86_64): "), first
    failures = report.split("Failures (first one first):\n", 1)[1]
    assert re.search(rf"^  {step}( \[[^]]+\])?: {re.escape(reason)}", failures, re.M), failures
    table = report_table(report)
    assert table[step] == "failed", table
    for other, state in table.items():
        if states.get(other) == "upstream_failed":
            assert state.startswith("not run because of "), (other, state)

    if step in ("verify_rollout", "check_gpu_workload"):
        # Patched, then not verified or no GPU computes: the exact previous spec.driver is back.
        assert states["patch_cluster_policy"] == "success"
        assert states["rollback_cluster_policy"] == "success"
        assert xcom(dag_run, "rollback_cluster_policy")["rolled_back"] is True
        assert policy_json(world) == before
        assert "ROLLED BACK: the previous spec.driver was restored." in report
    elif step == "rollback_cluster_policy":
        assert states["rollback_cluster_policy"] == "failed"
        assert world.policy_driver()["usePrecompiled"] is True, "the failed rollback left the patch"
        assert "ROLLBACK FAILED" in report
    elif step == NVD_STEP:
        # Its own stages' restore is its undo: the ClusterPolicy steps skipped, nothing else restores.
        for skipped in ("patch_cluster_policy", "verify_rollout", "rollback_cluster_policy"):
            assert states[skipped] == "skipped", (skipped, states)
        assert policy_json(world) == before
        assert nvidia_driver_specs(world) == nvidia_drivers, "the failed pod changed no NVIDIADriver"
        assert "NVIDIADriver rollout (FAILED: see the stages)" in report
    elif step == "record_readiness":
        # Readiness is a record beside the rollout, not a gate: the rollout went on and stands.
        assert states["patch_cluster_policy"] == states["verify_rollout"] == "success", states
        assert states["check_gpu_workload"] == "success", states
        assert states["rollback_cluster_policy"] == "skipped"
        assert world.policy_driver()["usePrecompiled"] is True
        assert "not recorded (see record_readiness)" in report
    elif step == "needs_rollback":
        # Failed after a verified patch: the rollout stands, the rollback could not be decided.
        assert states["verify_rollout"] == "success"
        assert states["rollback_cluster_policy"] == "upstream_failed"
        assert world.policy_driver()["usePrecompiled"] is True
        assert table["rollback_cluster_policy"] == "not run because of needs_rollback"
    else:
        assert STEPS.index(step) <= PATCH_INDEX
        assert policy_json(world) == before, "nothing was patched"
        assert states.get("rollback_cluster_policy") in ("skipped", "upstream_failed"), states
    if step == "patch_cluster_policy":
        assert states["rollback_cluster_policy"] == "skipped", "a refused patch has nothing to restore"
        assert "Rollback: nothing to restore (the patch changed nothing)." in report
    assert_no_pipeline_pod_running(world)


def test_one_of_three_builds_fails_the_others_are_published_and_the_gate_refuses(
    world: World, run_dag: Callable[..., Any]
) -> None:
    """Three images (4.18.12, 4.19.3, 4.19.5 kernels); the 4.19.3 one, which a GPU node runs, fails to
    build. The two others are still pushed; the coverage gate refuses the patch; the report names it."""
    failed_kernel = "5.14.0-570.12.1.el9_6.x86_64"

    def build(pod: dict[str, Any]) -> ScenarioResult:
        env = {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0]["env"]}
        if env["KERNEL_VERSION"] == failed_kernel:
            return ScenarioResult(exit_code=2, logs=["make: *** [Makefile:80: image] Error 1"])
        return world.build(pod)

    world.cluster.scenarios.set("build_driver_image", Scenario(action=build, duration=0.1))
    before = policy_json(world)

    dag_run = run_dag(ocp_versions=["4.19.3", "4.19.5"], driver_versions=ONE_DRIVER)
    states = task_states(dag_run)
    assert dag_run.state == "failed", states
    assert states["report"] == "failed", "the report ran (and failed the run)"
    assert states["rollback_cluster_policy"] == "skipped"
    assert sorted(s for t, s in states.items() if t.startswith("build_driver_image[")) == [
        "failed",
        "success",
        "success",
    ], states
    assert [s for t, s in states.items() if t.startswith("push_driver_image[")] == ["success"] * 2, states
    pushed = [p["image"] for p in xcom_all(dag_run, "push_driver_image")]
    assert len(pushed) == 2 and not [i for i in pushed if failed_kernel in i], pushed
    for image in pushed:
        repo, tag = image.split("/", 1)[1].rsplit(":", 1)
        assert world.registry.manifest_digest(repo, tag), f"{image} was published"
    assert states["plan_rollout"] == "failed", "the gate refuses: a GPU node runs the missing kernel"
    assert states["patch_cluster_policy"] == "upstream_failed"
    assert policy_json(world) == before

    report = xcom(dag_run, "report")
    first = report.splitlines()[0]
    failed_image = next(
        c["image"] for c in xcom(dag_run, "plan_builds")["candidates"] if failed_kernel in c["image"]
    )
    assert (
        first == f"Run FAILED at build_driver_image ({failed_image}): make: *** [Makefile:80: image] Error 1"
    )
    [row] = [line for line in report.splitlines() if line.startswith(failed_image)]
    assert "build FAILED" in row
    assert report_table(report)["patch_cluster_policy"] == "not run because of build_driver_image"
    assert_no_pipeline_pod_running(world)


def xcom_all(dag_run: Any, task_id: str) -> list[Any]:
    """Every map index's return value of a mapped task, in map-index order."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(XComModel)
            .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, key="return_value")
            .order_by(XComModel.map_index)
            .all()
        )
        return [XComModel.deserialize_value(row) for row in rows]


def test_a_run_with_nothing_new_skips_every_step_but_the_report(
    world: World, run_dag: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """validate_inputs' short-circuit (a cron run, no new release) skips every step, yet the report runs:
    it skips only its direct downstream, the others skip by their trigger rules."""
    original = tasks.validate_inputs

    @functools.wraps(original)
    def nothing_new(*args: Any, **kwargs: Any) -> None:
        return None  # what validate_inputs returns for a cron run that finds no new release

    monkeypatch.setattr(tasks, "validate_inputs", nothing_new)
    created: list[str] = []
    world.cluster.store.add_listener(
        lambda etype, res, obj, old: (
            created.append(obj["metadata"]["name"])
            if etype == "ADDED" and res.kind == "Pod" and obj["metadata"].get("namespace") == NAMESPACE
            else None
        )
    )
    before = policy_json(world)

    dag_run = run_dag()
    states = task_states(dag_run)
    assert dag_run.state == "success", states
    assert states["report"] == "success"
    decided = {"validate_inputs", "needs_rollback", "report"}  # Python tasks that run and decide
    assert {t: s for t, s in states.items() if t not in decided and s != "skipped"} == {}, states
    assert created == [], "no pod started"
    assert policy_json(world) == before
    assert xcom(dag_run, "report").splitlines()[0].startswith("Nothing to do: no new release")
