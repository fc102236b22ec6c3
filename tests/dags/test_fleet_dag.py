"""The DAG of a fleet (PRECOMPILED_DRIVERS_CLUSTERS): one group of steps per cluster, waves in order."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

from precompiled_drivers import fleet_plan, procedure

ROOT = Path(__file__).resolve().parents[2]
FLEET = [
    {"name": "dev", "conn_id": "k8s_dev", "wave": 1},
    {"name": "prod-a", "conn_id": "k8s_prod_a", "wave": 2},
    {"name": "prod-b", "conn_id": "k8s_prod_b", "wave": 2},
]
# Parses dags/ in a fresh interpreter (settings are read at parse time) and prints each task.
SCRIPT = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(sys.argv[1])
assert not bag.import_errors, bag.import_errors
dag = bag.dags["nvidia_precompiled_driver"]
print(json.dumps([
    {
        "id": t.task_id,
        "conn": getattr(t, "kubernetes_conn_id", None)
        or getattr(t, "partial_kwargs", {}).get("kubernetes_conn_id"),
        "trigger_rule": getattr(t.trigger_rule, "value", t.trigger_rule),
        "upstream": sorted(t.upstream_task_ids),
    }
    for t in dag.tasks
]))
"""


@functools.cache
def fleet_dag() -> dict[str, dict]:
    """task id -> what the parse printed (parsed once per test session)."""
    env = {**os.environ, "PRECOMPILED_DRIVERS_CLUSTERS": json.dumps(FLEET)}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(ROOT / "dags")],
        env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    return {t["id"]: t for t in json.loads(out.stdout.strip().splitlines()[-1])}


def test_each_cluster_has_its_group_over_its_connection_and_the_builds_run_once_on_the_hub() -> None:
    tasks = fleet_dag()
    per_cluster = ("inspect_cluster", *procedure.TASK_IDS[procedure.TASK_IDS.index("plan_rollout") : -1])
    for cluster in FLEET:
        for step in per_cluster:
            task = tasks[f"{cluster['name']}.{step}"]
            if procedure.step(step).kind == "pod":
                assert task["conn"] == cluster["conn_id"], task
    shared = [t for t in tasks if "." not in t]
    assert shared == [s for s in procedure.TASK_IDS if s not in per_cluster]
    for step in shared:
        if procedure.step(step).kind == "pod":
            assert tasks[step]["conn"] == "kubernetes_default", tasks[step]  # the hub
    # Unmapped: one task per cluster and step, as the bench counts them.
    counts = fleet_plan.mapped_task_counts(clusters=len(FLEET), releases=0, builds=0, copies=1)
    for step in procedure.TASK_IDS:
        if procedure.step(step).per is None:
            assert sum(procedure.step_of(t) == step for t in tasks) == counts[step], step


def test_plan_releases_goes_on_without_an_unreachable_cluster() -> None:
    plan = fleet_dag()["plan_releases"]
    assert plan["trigger_rule"] == "all_done"
    assert {f"{c['name']}.inspect_cluster" for c in FLEET} <= set(plan["upstream"])


def test_a_wave_starts_after_the_rollouts_of_the_wave_before_and_stops_on_their_failure() -> None:
    tasks = fleet_dag()
    assert not [t for t in tasks["dev.plan_rollout"]["upstream"] if "." in t], "wave 1 waits for no cluster"
    gate = {f"dev.{s}" for s in ("verify_rollout", "check_gpu_workload", "roll_out_nvidia_drivers")}
    gate.add("dev.rollback_cluster_policy")
    for name in ("prod-a", "prod-b"):
        plan = tasks[f"{name}.plan_rollout"]
        assert plan["trigger_rule"] == "none_failed"  # a failed rollout of wave 1 stops it
        assert {t for t in plan["upstream"] if "." in t} == gate  # not dev's readiness record
    report = tasks["report"]
    assert report["trigger_rule"] == "all_done"
    assert {f"{c['name']}.record_readiness" for c in FLEET} <= set(report["upstream"])
