"""A new release in the served update graph leads to exactly one DAG run whose plan holds it.

Real Airflow components (scheduler + LocalExecutor, triggerer, dag-processor, api-server) run as child
processes; the triggerer's ``NewReleaseTrigger`` reads its settings from ``AIRFLOW_VAR_*`` (as
``releases.variables.load_settings`` does with any Variable) and polls a local graph server every 2 s.
"""

from __future__ import annotations

import itertools
import time

import pytest

from harness.airflow_standalone import AirflowStandalone, wait_for
from harness.pipeline_world import GraphServer, World, update_graph
from testcluster.fleet import seed_demo

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

DAG_ID = "nvidia_precompiled_driver"
CHANNEL = "stable-4.18"
NEW = "4.18.14"


def _graph(versions: list[str]) -> dict:
    return update_graph(CHANNEL, versions, list(itertools.pairwise(versions)))


def test_new_release_in_graph_starts_exactly_one_run_that_plans_it(test_cluster, registry) -> None:
    seed_demo(test_cluster, openshift_version="4.18.12")
    # Only RHCOS 4.18 GPU nodes, so a run for 4.18.12 + the new 4.18.14 covers every kernel and may patch.
    test_cluster.store.add_node("gpu-worker-2", "5.14.0-570.12.1.el9_6.x86_64", "rhel", "9.6", gpu=False)
    world = World(test_cluster, registry).install()
    assert NEW in world.releases, "the simulated release service must know the new release's kernel"
    graph = GraphServer({CHANNEL: _graph(["4.18.10", "4.18.12"])})
    env = {
        **world.env(),
        "AIRFLOW_VAR_PRECOMPILED_DRIVERS_CHANNELS": f'["{CHANNEL}"]',
        "AIRFLOW_VAR_PRECOMPILED_DRIVERS_GRAPH_URL": graph.url,
        "AIRFLOW_VAR_PRECOMPILED_DRIVERS_POLL_INTERVAL": "2",
        "AIRFLOW_VAR_PRECOMPILED_DRIVERS_LOOKAHEAD": "false",
        "AIRFLOW_VAR_PRECOMPILED_DRIVERS_FIRST_SIGHT": "baseline",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    }
    try:
        with AirflowStandalone(env) as airflow:
            # Baseline: the first poll records what exists; the second proves its state was saved.
            wait_for(lambda: graph.requests >= 2, 60, "two polls of the update graph")
            assert airflow.runs(DAG_ID) == [], "a baseline poll must not start a run"

            graph.set_graph(CHANNEL, _graph(["4.18.10", "4.18.12", NEW]))
            runs = wait_for(lambda: airflow.runs(DAG_ID), 60, "a run for the new release")
            assert len(runs) == 1, runs
            run = runs[0]
            assert run["run_type"] == "asset_triggered", run
            run_id = run["dag_run_id"]

            config = wait_for(
                lambda: airflow.xcom(DAG_ID, run_id, "validate_inputs"), 60, "validate_inputs' result"
            )
            events = [t for t in config["targets"] if t["source"] == "event"]
            assert events == [{"version": NEW, "arch": "x86_64", "source": "event"}], config["targets"]

            finished = airflow.wait_run(DAG_ID, run_id, timeout=150)
            states = {
                (ti["task_id"], ti["map_index"]): ti["state"] for ti in airflow.task_instances(DAG_ID, run_id)
            }
            assert finished["state"] == "success", (states, airflow.log_tail("scheduler"))
            planned = airflow.xcom(DAG_ID, run_id, "plan_releases")
            versions = sorted(item["env_vars"]["RELEASE_VERSION"] for item in planned)
            assert versions == ["4.18.12", NEW]
            candidates = airflow.xcom(DAG_ID, run_id, "plan_builds")["candidates"]
            assert any(NEW in c["releases"] for c in candidates), candidates
            assert world.policy_driver()["usePrecompiled"] is True

            # A few more polls of the same graph: the release is remembered, no second run.
            seen = graph.requests
            wait_for(lambda: graph.requests >= seen + 3, 30, "three more polls")
            time.sleep(2)  # let the scheduler act on anything those polls might have fired
            assert [r["dag_run_id"] for r in airflow.runs(DAG_ID)] == [run_id]
    finally:
        graph.stop()


class _Store:
    """The asset state store accessor a task gets (``get``/``set``), backed by a dict."""

    def __init__(self) -> None:
        self.data: dict = {}

    def get(self, key: str, default: object = None) -> object:
        return self.data.get(key, default)

    def set(self, key: str, value: object) -> None:
        self.data[key] = value


def test_cron_run_with_nothing_new_short_circuits_before_any_pod(monkeypatch) -> None:
    from airflow.sdk.api.datamodels._generated import DagRunType

    from harness.dag_runner import load_dag
    from precompiled_drivers import tasks
    from precompiled_drivers.form import DEFAULT_CUDA_VERSION, DEFAULT_DRIVER_REPO_REF

    graph = GraphServer({CHANNEL: _graph(["4.18.10", "4.18.12"])})
    try:
        for name, value in {
            "CHANNELS": f'["{CHANNEL}"]',
            "GRAPH_URL": graph.url,
            "FIRST_SIGHT": "baseline",
            "LOOKAHEAD": "false",
        }.items():
            monkeypatch.setenv(f"AIRFLOW_VAR_PRECOMPILED_DRIVERS_{name}", value)
        params = {
            "driver_versions": ["570.158.01"],
            "cuda_version": DEFAULT_CUDA_VERSION,
            "driver_repo_ref": DEFAULT_DRIVER_REPO_REF,
            "repository": "127.0.0.1:5000/nvidia",
        }
        cron = type("Run", (), {"run_type": DagRunType.SCHEDULED})()
        manual = type("Run", (), {"run_type": DagRunType.MANUAL})()
        store = _Store()

        # First cron run: baseline only, nothing new -> None (the short-circuit skips every step).
        assert tasks.validate_inputs(params, None, cron, store) is None
        assert store.data, "the poll's state must be saved (shared with the trigger)"
        assert tasks.validate_inputs(params, None, cron, store) is None
        # A manual run never polls: it plans what the form says.
        assert list(tasks.validate_inputs(params, None, manual, store)["targets"]) == []

        graph.set_graph(CHANNEL, _graph(["4.18.10", "4.18.12", NEW]))
        config = tasks.validate_inputs(params, None, cron, store)
        assert config is not None
        assert [t["version"] for t in config["targets"]] == [NEW]
        assert tasks.validate_inputs(params, None, cron, store) is None, "reported once only"
    finally:
        graph.stop()

    # In the DAG, validate_inputs is that short-circuit and the first pod waits for it.
    dag = load_dag()
    validate = dag.get_task("validate_inputs")
    assert type(validate).__name__ == "_ShortCircuitDecoratedOperator"
    assert "validate_inputs" in dag.get_task("inspect_cluster").upstream_task_ids
