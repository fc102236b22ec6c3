"""No-op cost: a scheduled run when nothing is new, vs a full run, with the scheduler and LocalExecutor.

"Scheduled" is the cron fallback (``PRECOMPILED_DRIVERS_CRON``, here every minute): the asset schedule
only ever starts a run for a new release, so the cron run is the one that can find nothing new. The
update graph (local) serves the cluster's channel; its first poll records a baseline. First a manual full
run publishes the images for the cluster's release and patches the policy (its time is the reference);
then the next cron run is measured: pods it started and its wall time.

    PYTHONPATH=tests:plugins .venv/bin/python bench/noop.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import sys
import time

from common import (
    DAG_ID,
    DRIVERS,
    AirflowStandalone,
    airflow_env,
    bench_world,
    emit,
    pods_between,
    run_once,
    step_table,
)

from harness.airflow_standalone import wait_for
from harness.pipeline_world import GraphServer, update_graph


def main(argv: list[str] | None = None) -> int:
    """Full run, then the next scheduled run; print pods and times."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="fixed duration of every pod step")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    versions = ["4.18.10", "4.18.12"]
    graph = GraphServer({"stable-4.18": update_graph("stable-4.18", versions, [("4.18.10", "4.18.12")])})
    try:
        with bench_world(args.seconds) as world:
            env = airflow_env(
                world,
                {
                    "PRECOMPILED_DRIVERS_CRON": "* * * * *",
                    "AIRFLOW_VAR_PRECOMPILED_DRIVERS_CHANNELS": '["stable-4.18"]',
                    "AIRFLOW_VAR_PRECOMPILED_DRIVERS_GRAPH_URL": graph.url,
                    "AIRFLOW_VAR_PRECOMPILED_DRIVERS_FIRST_SIGHT": "baseline",
                    "AIRFLOW_VAR_PRECOMPILED_DRIVERS_POLL_INTERVAL": "3600",
                },
            )
            with AirflowStandalone(env) as airflow:
                full = run_once(airflow, world, {"ocp_versions": [], "driver_versions": list(DRIVERS[:1])})
                full_run = airflow.run(DAG_ID, full["run_id"])
                print(
                    f"full run: {full['state']} in {full['seconds']:.1f}s, {len(full['pods'])} pods",
                    flush=True,
                )

                def next_scheduled() -> dict | None:
                    # The first cron run may have run before the manual one (a fresh system: nothing
                    # published yet); the no-op is a cron run that starts after everything is published.
                    for run in airflow.runs(DAG_ID):
                        if run["run_type"] != "scheduled" or run["state"] not in ("success", "failed"):
                            continue
                        found = airflow.run(DAG_ID, run["dag_run_id"])
                        if found["start"] > full_run["end"]:
                            return found
                    return None

                started = time.monotonic()
                noop = wait_for(next_scheduled, 180, "a cron run after the full run", interval=1)
                tis = airflow.task_instances(DAG_ID, noop["dag_run_id"])
                pods = pods_between(world, noop["start"], noop["end"])
                print(
                    f"scheduled run {noop['dag_run_id']}: {noop['state']} in {noop['seconds']:.1f}s, "
                    f"{len(pods)} pods ({', '.join(pods) or 'none'}); "
                    f"waited {time.monotonic() - started:.0f}s",
                    flush=True,
                )
                if args.verbose or pods:
                    print(step_table(tis), flush=True)
    finally:
        graph.stop()
    ran = sorted({ti["task_id"] for ti in tis if ti["state"] == "success"})
    emit(
        "noop",
        executor="LocalExecutor (scheduler, airflow_standalone harness)",
        step_seconds=args.seconds,
        pods=len(pods),
        pod_steps=sorted(set(pods)),
        tasks_run=ran,
        seconds=round(noop["seconds"], 1),
        full_seconds=round(full["seconds"], 1),
        full_pods=len(full["pods"]),
        ratio=round(noop["seconds"] / full["seconds"], 3),
        state=noop["state"],
    )
    return 0 if noop["state"] == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
