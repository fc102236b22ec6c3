"""``make demo``: the whole pipeline, for real, on the local test cluster; ``make demo-ui`` for the web UI.

Starts the Kubernetes-API test server with a small GPU fleet (three GPU nodes on two kernels), the GPU
Operator stand-in, a real OCI registry and a served update graph; runs the real DAG once with
``dag.test()`` (what ``airflow dags test`` does) and prints a step-by-step report. Exits non-zero when
the run failed. Everything it starts stops with it.

``make demo SCENARIO=nvidiadriver``: the same fleet in NVIDIADriver mode, as NVIDIA's precompiled recipe
sets it up (gpu-driver-container ``rhel9-precompiled-clusterpolicy.json`` + ``-nvidiadriver.json``): the
ClusterPolicy delegates drivers (``useNvidiaDriverCRD``) to two NVIDIADriver resources, one per node pool.
The run builds and publishes, then rolls the NVIDIADrivers out one at a time, the smallest pool first,
each verified before the next (roll_out_nvidia_drivers); the ClusterPolicy steps skip.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from harness import airflow_env

# Everything the demo writes (Airflow home and logs, registry storage); the tests point it elsewhere.
DEMO_HOME = Path(os.environ.get("DEMO_HOME", airflow_env.ROOT / ".demo"))
UI_PORT = 8080


# `make demo`: the cluster follows stable-4.18; the form asks for 4.19.3, whose kernel the RHEL 9.6
# worker runs, and look-ahead adds the next 4.18 update.
DEMO_CHANNEL = "stable-4.18"
# `make demo-ui`: the form's defaults must do. The admin has switched the cluster to stable-4.19 to
# prepare the update (how OpenShift moves to a new minor), so look-ahead alone builds for the two
# releases it can update to, 4.19.3 (the RHEL 9.6 worker's kernel) and 4.18.14.
UI_CHANNEL = "stable-4.19"
CHANNEL_GRAPHS = {
    DEMO_CHANNEL: (["4.18.10", "4.18.12", "4.18.14"], [("4.18.10", "4.18.12"), ("4.18.12", "4.18.14")]),
    UI_CHANNEL: (
        ["4.18.12", "4.18.14", "4.19.3"],
        [("4.18.12", "4.18.14"), ("4.18.12", "4.19.3"), ("4.18.14", "4.19.3")],
    ),
}


def _environment(world: Any, graph: Any, channel: str) -> dict[str, str]:
    return {
        **world.env(),
        "AIRFLOW_VAR_PRECOMPILED_DRIVERS_LOOKAHEAD": "true",
        "AIRFLOW_VAR_PRECOMPILED_DRIVERS_LOOKAHEAD_LIMIT": "1" if channel == DEMO_CHANNEL else "2",
        "AIRFLOW_VAR_PRECOMPILED_DRIVERS_CHANNELS": f'["{channel}"]',
        "AIRFLOW_VAR_PRECOMPILED_DRIVERS_GRAPH_URL": graph.url,
    }


FINISHED = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})


class Progress(threading.Thread):
    """Prints one line per task instance as it finishes, read from the metadata DB (read-only)."""

    def __init__(self, db: Path, dag_id: str, out: TextIO) -> None:
        super().__init__(daemon=True)
        self.db, self.dag_id, self.out = db, dag_id, out
        self.done = threading.Event()
        self.shown: set[tuple[str, int]] = set()

    def run(self) -> None:
        while not self.done.wait(0.5):
            self.poll()
        self.poll()

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=10)

    def poll(self) -> None:
        try:
            with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5) as db:
                rows = db.execute(
                    "SELECT task_id, map_index, state, start_date, end_date FROM task_instance"
                    " WHERE dag_id = ? ORDER BY end_date",
                    (self.dag_id,),
                ).fetchall()
        except sqlite3.Error:
            return  # busy: the next poll reads it
        for task_id, map_index, state, start, end in rows:
            if state not in FINISHED or (task_id, map_index) in self.shown:
                continue
            self.shown.add((task_id, map_index))
            name = task_id if map_index < 0 else f"{task_id}[{map_index}]"
            seconds = (_time(end) - _time(start)).total_seconds() if start and end else 0.0
            print(f"  {name:<28} {state:<16} {seconds:6.1f}s", file=self.out, flush=True)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@contextlib.contextmanager
def airflow_output_to(log: Path | None) -> Iterator[TextIO]:
    """Send everything printed to stdout/stderr (Airflow's own logs) to ``log``; yields the terminal.

    File descriptors are redirected, not just ``sys.stdout``: Airflow's log handlers hold their own
    references to the streams. ``log=None`` changes nothing (``make demo V=1``).
    """
    if log is None:
        yield sys.stdout
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved[0]), "w", buffering=1)
    with log.open("ab") as file:
        os.dup2(file.fileno(), 1)
        os.dup2(file.fileno(), 2)
        try:
            yield terminal
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            terminal.close()


SCENARIOS = ("clusterpolicy", "nvidiadriver")
POOL_LABEL = "example.com/gpu-pool"


def seed_nvidiadriver_mode(cluster: Any, repository: str) -> None:
    """NVIDIA's sample pair: useNvidiaDriverCRD in the ClusterPolicy, one precompiled NVIDIADriver per pool
    (pool "rhcos": the two RHCOS 4.18 workers; pool "rhel": the RHEL 9.6 one)."""
    from testcluster.resources import by_kind

    store = cluster.store
    policy = store.get_object("ClusterPolicy", "gpu-cluster-policy")
    policy["spec"]["driver"]["useNvidiaDriverCRD"] = True
    store.put("ClusterPolicy", policy)
    for node in store.list_objects("Node"):
        labels = node["metadata"]["labels"]
        if labels.get("nvidia.com/gpu.present") == "true":
            labels[POOL_LABEL] = labels["feature.node.kubernetes.io/system-os_release.ID"]
            store.put("Node", node)
    for pool in ("rhcos", "rhel"):
        spec = {
            "driverType": "gpu",
            "usePrecompiled": True,
            "repository": repository,
            "image": "driver",
            "version": "550.90.07",
            "imagePullPolicy": "Always",
            "nodeSelector": {POOL_LABEL: pool},
            "manager": {},
        }
        store.create(
            by_kind("NVIDIADriver"), None, {"metadata": {"name": f"gpu-driver-{pool}"}, "spec": spec}
        )


def run_once(world: Any, verbose: bool = False, scenario: str = "clusterpolicy") -> int:
    """One DAG run: a line per step as it finishes, then the report; returns the exit code."""
    from harness.dag_runner import DAG_ID, run_pipeline, task_states, xcom

    params = world.params(ocp_versions=["4.19.3"], driver_versions=["570.158.01"], verify_timeout_minutes=2)
    home = Path(os.environ["AIRFLOW_HOME"])
    log = None if verbose else home / "demo-airflow.log"
    print("Form:", params)
    if log:
        print(f"Airflow's own output goes to {log} (make demo V=1 shows it here).")
    print("\n=== Steps (as they finish) ===", flush=True)
    started = time.monotonic()
    with airflow_output_to(log) as terminal:
        progress = Progress(home / "airflow.db", DAG_ID, terminal)
        progress.start()
        try:
            dag_run = run_pipeline(params)
        finally:
            progress.stop()
    elapsed = time.monotonic() - started
    print("\n=== Report (from the report task) ===")
    report = xcom(dag_run, "report") or ""
    print(report or "(no report: the report task failed, see the logs)")
    print(f"\nRun {dag_run.run_id}: {dag_run.state} in {elapsed:.0f}s")
    print(f"Task logs: {home / 'logs'}")
    if scenario == "nvidiadriver" and task_states(dag_run).get("roll_out_nvidia_drivers") == "success":
        print("NVIDIADriver mode: every NVIDIADriver was rolled out and verified, one at a time (see above).")
    return 0 if dag_run.state == "success" else 1


def demo_parallelism() -> int:
    """Task slots for the UI demo: the LocalExecutor forks one worker per slot at start, so a small
    machine gets a few (4 on 2 cores), not Airflow's default 32."""
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


def run_ui() -> int:
    """Airflow's scheduler, triggerer, dag-processor and api-server against the test cluster, until
    Ctrl-C; everything listens on 127.0.0.1 only."""
    from harness.airflow_standalone import AirflowStandalone

    home = Path(os.environ["AIRFLOW_HOME"])
    port = int(os.environ.get("DEMO_UI_PORT", UI_PORT))
    airflow = AirflowStandalone(home=home, parallelism=demo_parallelism(), port=port, login=True)
    # SIGTERM (a service manager, `kill`) stops it the way Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"Starting Airflow (logs in {home / 'logs'})...", flush=True)
    try:
        airflow.start()
        print(f"\nAirflow UI: {airflow.url}  user: admin  password: {airflow.password()}")
        print(f"(the password is kept in {airflow.password_file})")
        print("Trigger 'nvidia_precompiled_driver' from its form. Ctrl-C stops everything.", flush=True)
        while all(proc.poll() is None for proc in airflow.procs.values()):
            time.sleep(1)
        for name, proc in airflow.procs.items():
            if proc.poll() is not None:
                print(f"airflow {name} exited with {proc.returncode}:\n{airflow.log_tail(name)}")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        airflow.stop()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Set up, run, tear down."""
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("--ui", action="store_true", help="start Airflow's web UI instead of one run")
    parser.add_argument("--verbose", action="store_true", help="print Airflow's own logs too (make demo V=1)")
    parser.add_argument(
        "--scenario", choices=SCENARIOS, default="clusterpolicy", help="make demo SCENARIO=nvidiadriver"
    )
    args = parser.parse_args(argv)

    shutil.rmtree(DEMO_HOME, ignore_errors=True)
    airflow_env.configure(DEMO_HOME / "airflow")
    if not args.ui:  # the UI's components migrate their DB themselves
        print("Preparing the Airflow metadata DB...", flush=True)
        airflow_env.migrate()

    from harness.pipeline_world import GraphServer, World, update_graph
    from testcluster.cluster import TestCluster
    from testcluster.fleet import DEMO_NODES, seed_demo
    from testcluster.registry import Registry

    channel = UI_CHANNEL if args.ui else DEMO_CHANNEL
    graph = GraphServer({channel: update_graph(channel, *CHANNEL_GRAPHS[channel])})
    registry = Registry(workdir=DEMO_HOME / "registry").start()
    cluster = TestCluster(workdir=DEMO_HOME / "cluster").start()
    try:
        seed_demo(cluster, openshift_version="4.18.12")
        version = cluster.store.get_object("ClusterVersion", "version") or {}
        cluster.store.put(
            "ClusterVersion", {**version, "spec": {**version.get("spec", {}), "channel": channel}}
        )
        world = World(cluster, registry, step_seconds=1.0).install()
        if args.scenario == "nvidiadriver":
            seed_nvidiadriver_mode(cluster, world.repository)
        os.environ.update(_environment(world, graph, channel))
        print(f"Test cluster {cluster.url}, registry {registry.host}, update graph {graph.url}")
        print(
            "GPU nodes: "
            + ", ".join(f"{name} ({kernel}, {os_id} {ver})" for name, kernel, os_id, ver in DEMO_NODES)
        )
        print(f"Cluster runs OpenShift 4.18.12 (channel {channel}), GPU Operator v26.7.0\n", flush=True)
        if args.scenario == "nvidiadriver":
            print(
                "NVIDIADriver mode: useNvidiaDriverCRD, NVIDIADrivers gpu-driver-rhcos and gpu-driver-rhel\n"
            )
        return run_ui() if args.ui else run_once(world, verbose=args.verbose, scenario=args.scenario)
    finally:
        cluster.stop()
        registry.stop()
        graph.stop()


if __name__ == "__main__":
    sys.exit(main())
