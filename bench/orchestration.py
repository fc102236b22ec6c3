"""Orchestration overhead and fan-out, with the scheduler and the LocalExecutor running tasks in parallel.

Airflow runs as real components (``tests/harness/airflow_standalone.py``: scheduler with LocalExecutor,
triggerer, dag-processor, api-server; SQLite). Every pod step is Running for exactly ``--seconds`` on
the local test cluster (the host steps do their real kubectl/skopeo work inside that time). Two full
runs, forced to rebuild, on a fleet whose GPU nodes share one kernel:

- overhead: 1 release x 1 driver = 1 build; wall time vs the critical path of the pod durations
  (computed from the DAG's edges: each pod step on the longest chain counts ``--seconds``, Python 0);
- fan-out: 1 release x 8 drivers = 8 builds and 8 pushes in parallel; wall time vs the 1-build run.

Before them, one unmeasured warm-up run (pod steps 1 s): the first tasks after Airflow starts pay one-off
costs (executor workers spawned, first imports) that are not per-run orchestration; its time is printed.

    PYTHONPATH=tests:plugins .venv/bin/python bench/orchestration.py [--seconds 20] [--verbose]
"""

from __future__ import annotations

import argparse
import sys
import time

from common import (
    DRIVERS,
    AirflowStandalone,
    airflow_env,
    bench_world,
    critical_path,
    emit,
    rebuild_conf,
    reset_policy,
    run_once,
    step_table,
    tasks_graph,
)


def main(argv: list[str] | None = None) -> int:
    """Run both measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="fixed duration of every pod step")
    parser.add_argument("--fan-out", type=int, default=8, help="builds in parallel for the fan-out run")
    parser.add_argument("--verbose", action="store_true", help="print every task instance's timing")
    args = parser.parse_args(argv)

    with bench_world(args.seconds) as world:
        started = time.monotonic()
        airflow = AirflowStandalone(airflow_env(world), parallelism=max(16, 2 * args.fan_out))
        with airflow:
            print(f"Airflow up in {time.monotonic() - started:.0f}s ({airflow.home})", flush=True)
            graph = tasks_graph(airflow)
            # Warm-up, not measured: the first tasks after a start pay one-off costs (executor workers
            # spawned, imports, DAG parse) that are not per-run orchestration; printed for the record.
            world.fixed_seconds = 1.0
            world.set_scenarios()
            warm = run_once(airflow, world, rebuild_conf(DRIVERS[:1]))
            print(
                f"warm-up run (pod steps 1 s, not measured): {warm['state']} in {warm['seconds']:.1f}s",
                flush=True,
            )
            if args.verbose:
                print(step_table(warm["tis"]), flush=True)
            world.fixed_seconds = args.seconds
            world.set_scenarios()
            results = {}
            for label, drivers in (
                ("1 build", DRIVERS[:1]),
                (f"{args.fan_out} builds", DRIVERS[: args.fan_out]),
            ):
                reset_policy(world)
                run = run_once(airflow, world, rebuild_conf(drivers))
                path = critical_path(graph, run["ran"], args.seconds)
                builds = sum(1 for p in run["pods"] if p == "build_driver_image")
                print(
                    f"{label}: {run['state']} in {run['seconds']:.1f}s, critical path {path:.0f}s, "
                    f"overhead {run['seconds'] / path - 1:+.1%}, {len(run['pods'])} pods ({builds} builds)",
                    flush=True,
                )
                if args.verbose or run["state"] != "success":
                    print(step_table(run["tis"]), flush=True)
                results[label] = {**run, "critical_path": path, "builds": builds}
    one, many = results["1 build"], results[f"{args.fan_out} builds"]
    ok = one["state"] == many["state"] == "success"
    emit(
        "overhead",
        executor="LocalExecutor (scheduler, airflow_standalone harness)",
        step_seconds=args.seconds,
        wall=round(one["seconds"], 1),
        critical_path=one["critical_path"],
        overhead=round(one["seconds"] / one["critical_path"] - 1, 3),
        ok=ok,
    )
    emit(
        "fanout",
        executor="LocalExecutor (scheduler, airflow_standalone harness)",
        step_seconds=args.seconds,
        builds=many["builds"],
        one=round(one["seconds"], 1),
        many=round(many["seconds"], 1),
        ratio=round(many["seconds"] / one["seconds"], 3),
        ok=ok,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
