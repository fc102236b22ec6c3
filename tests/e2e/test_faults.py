"""The real DAG against the faults a production cluster throws at it; each run ends in a known good state.

Known good: the run succeeded and the ClusterPolicy runs the pushed images, or the run failed and the
ClusterPolicy is exactly what it was (or what someone else set), with no pipeline pod left running.

Covered elsewhere, not repeated here: verify timeout -> exact rollback
(``test_pipeline.py::test_verify_failure_rolls_back_the_exact_previous_spec``).
"""

from __future__ import annotations

import datetime
import http.client
import http.server
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from harness.dag_runner import load_dag, task_states, xcom
from harness.pipeline_world import NAMESPACE, World
from testcluster import Scenario, ScenarioResult
from testcluster.registry import Registry

pytestmark = pytest.mark.e2e

POLICY_PATH = r"/apis/nvidia\.com/v1/clusterpolicies/gpu-cluster-policy$"
POD_PATH = rf"/api/v1/namespaces/{NAMESPACE}/pods/[^/]+$"
ONE_DRIVER = ["570.158.01"]
# What patch_cluster_policy.sh prints when it retries (the script text itself, dumped with a failed
# pod, says "attempt $attempt").
TRANSIENT = re.compile(r"Transient API error \(attempt \d+ of \d+\)")


@pytest.fixture(autouse=True)
def fast_retries(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """One-second retry delays (the installation setting), so retries happen within the test."""
    monkeypatch.setenv("PRECOMPILED_DRIVERS_RETRY_DELAY_SECONDS", "1")


class TaskLogs:
    """What the tasks logged: ``dag.test()`` runs them in-process and Airflow's task logging goes to
    stdout (no files under $AIRFLOW_HOME/logs), so the captured output is the task log of the test's runs.
    """

    def __init__(self, capfd: pytest.CaptureFixture[str]) -> None:
        self._capfd = capfd
        self._text: list[str] = []

    def text(self) -> str:
        out, err = self._capfd.readouterr()
        self._text += [out, err]
        return "".join(self._text)

    def since(self, mark: int) -> str:
        return self.text()[mark:]


@pytest.fixture
def logs(capfd: pytest.CaptureFixture[str]) -> TaskLogs:
    return TaskLogs(capfd)


def try_numbers(dag_run: Any, task_id: str) -> dict[int, int]:
    """map_index -> try_number of one task in this run."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(
            dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id
        )
        return {ti.map_index: ti.try_number for ti in tis}


def assert_no_pipeline_pod_running(world: World) -> None:
    phases = {
        p["metadata"]["name"]: p.get("status", {}).get("phase")
        for p in world.cluster.store.list_objects("Pod", NAMESPACE)
    }
    assert not [name for name, phase in phases.items() if phase in ("Pending", "Running")], phases


def assert_rolled_out(world: World, version: str) -> None:
    world.cluster.operator.reconcile_now()
    driver = world.policy_driver()
    assert (driver["usePrecompiled"], driver["version"]) == (True, version), driver
    policy = world.cluster.store.get_object("ClusterPolicy", "gpu-cluster-policy")
    assert policy["status"]["state"] == "ready"


def test_build_failure_eviction_and_api_errors_are_retried_and_the_run_succeeds(
    world: World, run_dag, logs: TaskLogs
) -> None:
    """Build pod 0 exits 1 and build pod 1 is evicted mid-run on their first try; the API server answers
    500 and 429 to pod polling and to the ClusterPolicy patch for a while. Every step retries; success."""
    scenarios = world.cluster.scenarios
    scenarios.set(
        "build_driver_image",
        Scenario(exit_code=1, logs=["make: *** [Makefile:80: image] Error 1"], duration=0.2),
        map_index=0,
        try_number=1,
    )
    scenarios.set("build_driver_image", Scenario(duration=30, evict_after=0.5), map_index=1, try_number=1)
    faults = world.cluster.faults
    faults.fail_next(POD_PATH, n=2, status=500, method="GET")
    faults.fail_next(POD_PATH, n=2, status=429, method="GET")
    faults.fail_next(POLICY_PATH, n=1, status=500, method="PATCH")
    faults.fail_next(POLICY_PATH, n=1, status=429, method="PATCH")

    dag_run = run_dag(driver_versions=ONE_DRIVER)
    states = task_states(dag_run)
    assert dag_run.state == "success", states
    assert try_numbers(dag_run, "build_driver_image") == {0: 2, 1: 2}
    assert len(world.builds) == 2, "each image is built once: the failed and evicted tries produced nothing"
    text = logs.text()
    assert "exit_code=137" in text, "the evicted build pod's container was killed"
    patch_log = text
    assert len(TRANSIENT.findall(patch_log)) == 2, "the patch script retried the 500 and the 429"
    assert try_numbers(dag_run, "patch_cluster_policy") == {-1: 1}, "the script retried, not Airflow"
    assert_rolled_out(world, "570.158.01")
    assert xcom(dag_run, "verify_rollout")["verified"] is True
    assert_no_pipeline_pod_running(world)


class FailingRegistry:
    """A pass-through proxy in front of the real registry that refuses manifest pushes of some tags.

    The first ``server_errors`` refusals are 500s, the rest 401 (credentials refused), like a registry
    that is first broken and then rejects the push secret. ``heal()`` lets everything through.
    """

    def __init__(self, registry: Registry, tag_pattern: str, server_errors: int = 2) -> None:
        self.refused: list[int] = []
        self._pattern = re.compile(tag_pattern)
        self._errors_left = server_errors
        self._healed = False
        self._lock = threading.Lock()
        upstream = registry.host
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                status = proxy._refusal(self.command, self.path)
                if status:
                    text = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
                    if status == 500:
                        text = b'{"errors":[{"code":"UNKNOWN","message":"internal server error"}]}'
                    self.send_response(status)
                    if status == 401:
                        self.send_header("WWW-Authenticate", 'Basic realm="registry"')
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                    return
                conn = http.client.HTTPConnection(upstream, timeout=30)
                # putheader keeps repeated headers (Accept lists every manifest type skopeo takes).
                conn.putrequest(self.command, self.path, skip_accept_encoding=True)
                for key, value in self.headers.items():
                    if key.lower() not in ("host", "connection", "content-length"):
                        conn.putheader(key, value)
                if body is not None:
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() in ("transfer-encoding", "connection", "content-length"):
                        continue
                    self.send_header(key, value.replace(upstream, proxy.host))
                # A HEAD answer has no body but announces the size of the blob/manifest.
                size = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", size or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _refusal(self, method: str, path: str) -> int:
        with self._lock:
            if self._healed or method != "PUT" or "/manifests/" not in path or not self._pattern.search(path):
                return 0
            status = 500 if self._errors_left > 0 else 401
            self._errors_left -= 1
            self.refused.append(status)
            return status

    def heal(self) -> None:
        with self._lock:
            self._healed = True

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def failing_registry(
    world: World, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FailingRegistry]:
    """The target repository behind a proxy refusing pushes of the 4.19.3 kernel's tag."""
    proxy = FailingRegistry(registry, r"570\.12\.1\.el9_6")
    monkeypatch.setenv("PRECOMPILED_DRIVERS_TARGET_REPOSITORY", f"{proxy.host}/nvidia")
    world.cluster.operator.registry = proxy.host  # the operator stand-in pulls from there too
    yield proxy
    proxy.stop()


def test_refused_push_fails_without_patch_and_a_rerun_builds_only_the_missing_image(
    world: World, run_dag, failing_registry: FailingRegistry, logs: TaskLogs
) -> None:
    before = world.policy_driver()
    first = run_dag(driver_versions=ONE_DRIVER)
    states = task_states(first)
    assert first.state == "failed", states
    pushes = {i: states[f"push_driver_image[{i}]"] for i in (0, 1)}
    assert sorted(pushes.values()) == ["failed", "success"], states
    refused = next(i for i, state in pushes.items() if state == "failed")
    assert try_numbers(first, "push_driver_image")[refused] == 5, "push retries on its own (4 retries)"
    assert failing_registry.refused[:2] == [500, 500] and set(failing_registry.refused[2:]) == {401}
    text = logs.text()
    assert "ERROR: could not push" in text and "check the push secret" in text
    assert "570.12.1.el9_6" in text[text.index("ERROR: could not push") :][:400]
    assert states["plan_rollout"] == "upstream_failed"
    assert states["patch_cluster_policy"] == "upstream_failed"
    assert world.policy_driver() == before, "no patch happened"
    # This run is also push_driver_image's row of the failure matrix (test_failure_matrix.py).
    assert states["report"] == "failed", "the report ran (and failed the run)"
    headline = xcom(first, "report").splitlines()[0]
    assert headline.startswith("Run FAILED at push_driver_image ("), headline
    assert "570.12.1.el9_6" in headline and "ERROR: could not push" in headline, headline
    assert f"the run did not complete: {headline}" in text, "the report task's error says it too"
    assert_no_pipeline_pod_running(world)
    built_first = list(world.builds)
    assert len(built_first) == 2

    failing_registry.heal()
    second = run_dag(driver_versions=ONE_DRIVER)
    states = task_states(second)
    assert second.state == "success", states
    new_builds = world.builds[len(built_first) :]
    assert len(new_builds) == 1 and "570.12.1.el9_6" in new_builds[0], new_builds
    assert try_numbers(second, "build_driver_image") == {0: 1}, "only the missing image is built"
    assert_rolled_out(world, "570.158.01")
    assert_no_pipeline_pod_running(world)


def test_policy_changed_between_read_and_patch_is_not_overwritten(
    world: World, run_dag, logs: TaskLogs
) -> None:
    """Someone edits spec.driver while the images build: the patch's `test` op fails it (422), nothing
    is overwritten, and the patch log says why. The refused patch changed nothing, so there is nothing
    to restore: no rollback pod starts (one that its own guard would refuse, retried, and failed), and
    the report says so after the patch's reason (#19)."""
    store = world.cluster.store
    edited: dict[str, Any] = {}
    created: list[str] = []

    def on_change(etype: str, res: Any, obj: dict[str, Any], old: Any) -> None:
        if etype == "ADDED" and res.kind == "Pod" and obj["metadata"].get("namespace") == NAMESPACE:
            created.append(obj["metadata"]["labels"]["precompiled-drivers/step"])

    store.add_listener(on_change)

    def build_then_edit(pod: dict[str, Any]) -> ScenarioResult:
        result = world.build(pod)
        if not edited:
            policy = store.get_object("ClusterPolicy", "gpu-cluster-policy")
            policy["spec"]["driver"]["version"] = "550.127.05"  # a colleague's hotfix
            store.put("ClusterPolicy", policy)
            edited.update(store.get_object("ClusterPolicy", "gpu-cluster-policy")["spec"]["driver"])
        return result

    world.cluster.scenarios.set("build_driver_image", Scenario(action=build_then_edit, duration=0.2))
    dag_run = run_dag(driver_versions=ONE_DRIVER)
    states = task_states(dag_run)
    assert dag_run.state == "failed", states
    assert states["patch_cluster_policy"] == "failed"
    assert states["verify_rollout"] == "upstream_failed"
    assert states["needs_rollback"] == "success"
    assert states["rollback_cluster_policy"] == "skipped", "nothing to restore: the patch changed nothing"
    assert xcom(dag_run, "patch_cluster_policy")["patched"] is False
    log = logs.text()
    assert "the guard caught a concurrent change and nothing was overwritten" in log, log[-3000:]
    assert not TRANSIENT.findall(log), "a failed guard (422) is never retried"
    policy = store.get_object("ClusterPolicy", "gpu-cluster-policy")
    assert policy["spec"]["driver"] == edited, "the concurrent edit survives"
    assert policy["spec"]["driver"]["version"] == "550.127.05"
    assert "rollback_cluster_policy" not in created, created
    assert created.count("patch_cluster_policy") == 1, created
    assert_no_pipeline_pod_running(world)
    report = xcom(dag_run, "report")
    assert report.splitlines()[0] == (
        "Run FAILED at patch_cluster_policy: ERROR: the API server rejected the patch of "
        "clusterpolicy/gpu-cluster-policy (see kubectl's message above)."
    )
    assert "Rollback: nothing to restore (the patch changed nothing)." in report
    assert "ClusterPolicy patch (NOT applied: refused, nothing changed):" in report


def test_two_manual_runs_never_patch_at_the_same_time(world: World) -> None:
    """max_active_runs=1 is the mechanism: the real scheduler's queue logic starts only one of two
    manual runs triggered together; the second waits (queued) until the first finishes."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.sdk import timezone
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    dag = load_dag()
    assert dag.max_active_runs == 1
    # The ClusterPolicy is patched and rolled back by these tasks of this one DAG only.
    assert {"patch_cluster_policy", "rollback_cluster_policy"} <= set(dag.task_ids)

    manager = DagBundlesManager()
    with create_session() as session:
        manager.sync_bundles_to_db(session=session)
    for bundle in manager.get_all_dag_bundles():
        bundle.initialize()
        bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
        sync_bag_to_db(bag, bundle.name, bundle.version)
    with create_session() as session:
        # New DAGs are paused at creation; the scheduler starts nothing of a paused DAG.
        session.query(DagModel).filter(DagModel.dag_id == dag.dag_id).update({"is_paused": False})
        # The metadata DB is shared by the session's tests: runs another test left unfinished would
        # count against max_active_runs. This test is about two fresh runs only.
        session.query(DagRun).filter(
            DagRun.dag_id == dag.dag_id, DagRun.state.in_([DagRunState.RUNNING, DagRunState.QUEUED])
        ).update({"state": DagRunState.FAILED}, synchronize_session=False)
        serialized = SerializedDagModel.get_dag(dag.dag_id, session=session)
        assert serialized is not None and serialized.max_active_runs == 1
        # SQLite's now() has whole seconds: a run_after later in the same second is not due yet.
        now = timezone.utcnow() - datetime.timedelta(seconds=2)
        run_ids = [f"manual__together_{i}_{now.timestamp()}" for i in range(2)]
        for run_id in run_ids:
            serialized.create_dagrun(
                run_id=run_id,
                run_after=now,
                conf=world.params(),
                run_type=DagRunType.MANUAL,
                triggered_by=DagRunTriggeredByType.UI,
                state=DagRunState.QUEUED,
                session=session,
            )
        session.commit()
        runner = SchedulerJobRunner(job=Job())
        for _ in range(3):  # several scheduler loops: still one
            runner._start_queued_dagruns(session)
            session.commit()
        states = {r.run_id: r.state for r in session.query(DagRun).filter(DagRun.run_id.in_(run_ids)).all()}
        assert sorted(states.values()) == [DagRunState.QUEUED, DagRunState.RUNNING], states
        running = next(r for r, s in states.items() if s == DagRunState.RUNNING)
        # Once the first run is done, the second may start (and not before).
        session.query(DagRun).filter(DagRun.run_id == running).update({"state": DagRunState.SUCCESS})
        session.commit()
        runner._start_queued_dagruns(session)
        session.commit()
        waiting = next(r for r in run_ids if r != running)
        assert session.query(DagRun).filter(DagRun.run_id == waiting).one().state == DagRunState.RUNNING
        # Leave nothing running for the next test.
        session.query(DagRun).filter(DagRun.run_id.in_(run_ids)).update(
            {"state": DagRunState.FAILED}, synchronize_session=False
        )
