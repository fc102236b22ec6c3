"""``make demo``: the whole pipeline, for real, on the local test cluster; ``make demo-ui`` for the web UI.

Starts the Kubernetes-API test server with a small GPU fleet (three GPU nodes on two kernels), the GPU
Operator stand-in, a real OCI registry and a served update graph; runs the real DAG once with
``dag.test()`` (what ``airflow dags test`` does) and prints a step-by-step report. Exits non-zero when
the run failed. Everything it starts stops with it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import airflow_env

# Everything the demo writes (Airflow home and logs, registry storage); the tests point it elsewhere.
DEMO_HOME = Path(os.environ.get("DEMO_HOME", airflow_env.ROOT / ".demo"))
UI_PORT = 8080


def _environment(world: Any, graph: Any) -> dict[str, str]:
    return {
        **world.env(),
        "AIRFLOW_VAR_PRECOMPILED_DRIVERS_LOOKAHEAD": "true",
        "AIRFLOW_VAR_PRECOMPILED_DRIVERS_LOOKAHEAD_LIMIT": "1",
        "AIRFLOW_VAR_PRECOMPILED_DRIVERS_CHANNELS": '["stable-4.18"]',
        "AIRFLOW_VAR_PRECOMPILED_DRIVERS_GRAPH_URL": graph.url,
    }


def _durations(dag_run: Any) -> list[tuple[str, str, float]]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        rows = []
        for ti in sorted(tis, key=lambda t: (t.start_date or t.end_date or dag_run.start_date, t.map_index)):
            name = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
            seconds = (ti.end_date - ti.start_date).total_seconds() if ti.start_date and ti.end_date else 0.0
            rows.append((name, str(ti.state), seconds))
        return rows


def run_once(world: Any) -> int:
    """One DAG run; prints the report and returns the exit code."""
    from dag_runner import run_pipeline, xcom

    params = world.params(ocp_versions=["4.19.3"], driver_versions=["570.158.01"], verify_timeout_minutes=2)
    print("Form:", params, flush=True)
    started = time.monotonic()
    dag_run = run_pipeline(params)
    elapsed = time.monotonic() - started
    print("\n=== Steps ===")
    for name, state, seconds in _durations(dag_run):
        print(f"  {name:<28} {state:<16} {seconds:6.1f}s")
    print("\n=== Report (from the report task) ===")
    print(xcom(dag_run, "report") or "(no report: the report task failed, see the logs)")
    print(f"\nRun {dag_run.run_id}: {dag_run.state} in {elapsed:.0f}s")
    print(f"Task logs: {Path(os.environ['AIRFLOW_HOME']) / 'logs'}")
    return 0 if dag_run.state == "success" else 1


def run_ui() -> int:
    """``airflow standalone`` against the running test cluster, until Ctrl-C."""
    print(f"Airflow UI: http://127.0.0.1:{UI_PORT}  (user 'admin'; the password is printed by Airflow below")
    print(f"and kept in {Path(os.environ['AIRFLOW_HOME']) / 'simple_auth_manager_passwords.json.generated'})")
    print("Trigger 'nvidia_precompiled_driver' from its form. Ctrl-C stops everything.", flush=True)
    env = {
        **os.environ,
        "PYTHONPATH": f"{airflow_env.ROOT / 'plugins'}",
        "AIRFLOW__API__PORT": str(UI_PORT),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    }
    # SIGTERM (a service manager, `kill`) stops it the way Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    # Its own process group, so stopping it reaches every scheduler, triggerer and worker it forked.
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "airflow"), "standalone"], env=env, start_new_session=True
    )
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        _stop_group(proc)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGINT the whole group, then SIGKILL whatever is still there after 30 s."""
    for sig, wait in ((signal.SIGINT, 30), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            continue
        # The leader is gone; its children may not be: check the group once more.
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return


def main(argv: list[str] | None = None) -> int:
    """Set up, run, tear down."""
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("--ui", action="store_true", help="start airflow standalone instead of one run")
    args = parser.parse_args(argv)

    shutil.rmtree(DEMO_HOME, ignore_errors=True)
    airflow_env.configure(DEMO_HOME / "airflow")
    print("Preparing the Airflow metadata DB...", flush=True)
    airflow_env.migrate()

    from pipeline_world import GraphServer, World, update_graph
    from testcluster.cluster import TestCluster
    from testcluster.fleet import DEMO_NODES, seed_demo
    from testcluster.registry import Registry

    graph = GraphServer(
        {
            "stable-4.18": update_graph(
                "stable-4.18",
                ["4.18.10", "4.18.12", "4.18.14"],
                [("4.18.10", "4.18.12"), ("4.18.12", "4.18.14")],
            )
        }
    )
    registry = Registry(workdir=DEMO_HOME / "registry").start()
    cluster = TestCluster(workdir=DEMO_HOME / "cluster").start()
    try:
        seed_demo(cluster, openshift_version="4.18.12")
        world = World(cluster, registry, step_seconds=1.0).install()
        os.environ.update(_environment(world, graph))
        print(f"Test cluster {cluster.url}, registry {registry.host}, update graph {graph.url}")
        print(
            "GPU nodes: "
            + ", ".join(f"{name} ({kernel}, {os_id} {ver})" for name, kernel, os_id, ver in DEMO_NODES)
        )
        print("Cluster runs OpenShift 4.18.12 (channel stable-4.18), GPU Operator v26.7.0\n", flush=True)
        return run_ui() if args.ui else run_once(world)
    finally:
        cluster.stop()
        registry.stop()
        graph.stop()


if __name__ == "__main__":
    sys.exit(main())
