"""Time to finish a run after the scheduler is killed, as a ratio to an undisturbed run.

Airflow runs as real components (``tests/harness/airflow_standalone.py``: scheduler with LocalExecutor,
triggerer, dag-processor, api-server; SQLite). Every pod step is Running for exactly ``--seconds`` on the
local test cluster. After one unmeasured warm-up run (pod steps 1 s), two runs of the same work (the
cluster's release, ``--drivers`` drivers, forced rebuild), in the same process and minutes:

- undisturbed;
- disturbed: once the build pods run, ``kill -9`` of the scheduler with every process under it (its
  LocalExecutor workers, task supervisors and task runners: as when its pod dies), then a new scheduler.
  It marks the old one dead after ``scheduler_health_check_threshold``, resets the orphaned task
  instances (checked every ``orphaned_tasks_check_interval``), and their next try re-attaches to the
  build pods, which never stopped.

The ratio depends on those two settings (printed, and passed here as a deployment would set them) and
on the step length: the recovery costs about a fixed number of seconds.

    .venv/bin/python bench/airflow_failures.py [--seconds 20] [--drivers 2] [--verbose]
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
    emit,
    rebuild_conf,
    reset_policy,
    run_once,
    step_table,
)

from harness.airflow_standalone import wait_for

DAG_ID = "nvidia_precompiled_driver"
RECOVERY = {
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "15",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "5",
}


def main(argv: list[str] | None = None) -> int:
    """Warm-up, undisturbed run, run with a scheduler kill; print and emit the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="fixed duration of every pod step")
    parser.add_argument("--drivers", type=int, default=2, help="builds in the run")
    parser.add_argument("--verbose", action="store_true", help="print every task instance's timing")
    args = parser.parse_args(argv)
    drivers = DRIVERS[: args.drivers]

    with bench_world(args.seconds) as world:
        airflow = AirflowStandalone(airflow_env(world, RECOVERY))
        with airflow:
            world.fixed_seconds = 1.0
            world.set_scenarios()
            warm = run_once(airflow, world, rebuild_conf(drivers[:1]))
            print(
                f"warm-up run (pod steps 1 s, not measured): {warm['state']} in {warm['seconds']:.1f}s",
                flush=True,
            )
            world.fixed_seconds = args.seconds
            world.set_scenarios()

            reset_policy(world)
            calm = run_once(airflow, world, rebuild_conf(drivers))
            print(
                f"undisturbed: {calm['state']} in {calm['seconds']:.1f}s, {len(calm['pods'])} pods",
                flush=True,
            )
            if args.verbose or calm["state"] != "success":
                print(step_table(calm["tis"]), flush=True)

            reset_policy(world)
            builds_before = sum(1 for _, step, _ in world.pods if step == "build_driver_image")
            run_id = airflow.trigger(DAG_ID, rebuild_conf(drivers))
            wait_for(
                lambda: (
                    sum(1 for _, step, _ in world.pods if step == "build_driver_image")
                    >= builds_before + len(drivers)
                ),
                600,
                "the build pods to run",
            )
            killed_at = time.monotonic()
            airflow.kill("scheduler")
            airflow.restart("scheduler")
            down = time.monotonic() - killed_at
            run = airflow.wait_run(DAG_ID, run_id, timeout=900)
            tis = airflow.task_instances(DAG_ID, run_id)
            builds = sum(1 for _, step, _ in world.pods if step == "build_driver_image") - builds_before
            print(
                f"scheduler killed during the builds (restarted {down:.1f}s later): {run['state']} in "
                f"{run['seconds']:.1f}s, {builds} build pods, build tries "
                f"{sorted(ti['try_number'] for ti in tis if ti['task_id'] == 'build_driver_image')}",
                flush=True,
            )
            if args.verbose or run["state"] != "success":
                print(step_table(tis), flush=True)
    ok = calm["state"] == run["state"] == "success" and builds == len(drivers)
    ratio = run["seconds"] / calm["seconds"]
    print(f"ratio {ratio:.2f}x ({run['seconds'] - calm['seconds']:+.1f}s)", flush=True)
    emit(
        "scheduler_kill",
        step_seconds=args.seconds,
        builds=len(drivers),
        undisturbed=round(calm["seconds"], 1),
        disturbed=round(run["seconds"], 1),
        ratio=round(ratio, 3),
        restart_seconds=round(down, 1),
        health_check_threshold=int(RECOVERY["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD"]),
        orphan_check_interval=int(RECOVERY["AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL"]),
        build_pods=builds,
        ok=ok,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
