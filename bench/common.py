"""Shared pieces of the bench scripts: the simulated world, Airflow with a parallel executor, the
critical path of a run, and the one-line JSON result each script prints for ``run_all.py``.

Everything talks to 127.0.0.1 only: the test cluster, the registry, the graph server, the api-server.
Run with the harness and the package importable: ``PYTHONPATH=tests:plugins`` (``make bench``).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.airflow_standalone import AirflowStandalone
from harness.pipeline_world import World
from testcluster.cluster import TestCluster
from testcluster.fleet import seed_demo
from testcluster.registry import Registry

ROOT = Path(__file__).resolve().parents[1]

DAG_ID = "nvidia_precompiled_driver"
RESULT_PREFIX = "BENCH_RESULT "
# Eight real-looking driver versions (validation accepts any NVIDIA-style version).
DRIVERS = (
    "570.158.01",
    "570.172.08",
    "575.64.05",
    "580.65.06",
    "580.82.07",
    "550.163.01",
    "535.261.03",
    "570.148.08",
)
# A pod step is one whose operator runs a pod; everything else is a Python task.
POD_OPERATORS = ("StepPodOperator", "KubernetesPodOperator")
NOT_RUN = frozenset({None, "skipped", "removed", "upstream_failed"})


def machine() -> str:
    """CPU model, cores and OS, for the results file."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    system = f"{platform.system()} {platform.release()}"
    return f"{model}, {os.cpu_count()} cores, {system}, Python {platform.python_version()}"


def emit(name: str, **values: Any) -> None:
    """Print the script's result as one JSON line that ``run_all.py`` picks up."""
    print(RESULT_PREFIX + json.dumps({"bench": name, **values}), flush=True)


@contextlib.contextmanager
def bench_world(fixed_seconds: float, *, one_kernel: bool = True) -> Iterator[World]:
    """Test cluster + registry + World where every pod step runs for ``fixed_seconds``.

    ``one_kernel``: the demo fleet without its RHEL 9.6 GPU node, so one release (the cluster's 4.18.12)
    covers every GPU kernel and a one-release run may patch and verify.
    """
    registry = Registry().start()
    cluster = TestCluster().start()
    try:
        seed_demo(cluster, openshift_version="4.18.12")
        if one_kernel:
            cluster.store.add_node("gpu-worker-2", "5.14.0-570.12.1.el9_6.x86_64", "rhel", "9.6", gpu=False)
        yield World(cluster, registry, fixed_seconds=fixed_seconds).install()
    finally:
        cluster.stop()
        registry.stop()


def reset_policy(world: World) -> None:
    """Put the ClusterPolicy back to compiled mode, so the next run patches and verifies for real."""
    policy = world.cluster.store.get_object("ClusterPolicy", "gpu-cluster-policy") or {}
    spec = dict(policy.get("spec") or {})
    spec["driver"] = {
        "enabled": True,
        "usePrecompiled": False,
        "repository": "nvcr.io/nvidia",
        "image": "driver",
        "version": "550.90.07",
    }
    world.cluster.store.put("ClusterPolicy", {"metadata": {"name": "gpu-cluster-policy"}, "spec": spec})
    time.sleep(3)  # the operator stand-in converges back (old pods go after its 1.5 s grace)


def airflow_env(world: World, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of the Airflow components for a bench world."""
    return {
        **world.env(),
        "AIRFLOW_VAR_PRECOMPILED_DRIVERS_LOOKAHEAD": "false",
        **(extra or {}),
    }


def tasks_graph(airflow: AirflowStandalone) -> dict[str, dict[str, Any]]:
    """task_id -> {downstream: [...], pod: bool} from the REST API (the DAG as the scheduler sees it)."""
    tasks = airflow.api("GET", f"/api/v2/dags/{DAG_ID}/tasks")["tasks"]
    return {
        t["task_id"]: {
            "downstream": list(t.get("downstream_task_ids") or []),
            "pod": t.get("operator_name") in POD_OPERATORS
            or (t.get("class_ref") or {}).get("class_name") in POD_OPERATORS,
        }
        for t in tasks
    }


def critical_path(graph: Mapping[str, Mapping[str, Any]], ran: set[str], pod_seconds: float) -> float:
    """Longest chain through the tasks that ran, each pod step weighing ``pod_seconds``, Python 0.

    Mapped steps run their items in parallel, so a mapped step weighs one pod duration.
    """
    memo: dict[str, float] = {}

    def longest(task: str) -> float:
        if task not in memo:
            own = pod_seconds if graph[task]["pod"] and task in ran else 0.0
            after = [longest(d) for d in graph[task]["downstream"]]
            memo[task] = own + max(after, default=0.0)
        return memo[task]

    return max(longest(t) for t in graph)


def rebuild_conf(drivers: Sequence[str]) -> dict[str, Any]:
    """Form values of a timed run: the cluster's release only, ``drivers``, rebuild even if a tag exists."""
    return {
        "ocp_versions": [],
        "driver_versions": list(drivers),
        "force_rebuild": True,
        "verify_timeout_minutes": 2,
    }


def run_once(
    airflow: AirflowStandalone, world: World, conf: Mapping[str, Any], timeout: float = 900
) -> dict[str, Any]:
    """Trigger one run and wait; returns wall seconds, state, task instances and pods started (task ids)."""
    run_id = airflow.trigger(DAG_ID, conf)
    run = airflow.wait_run(DAG_ID, run_id, timeout=timeout)
    tis = airflow.task_instances(DAG_ID, run_id)
    return {
        "run_id": run_id,
        "state": run["state"],
        "seconds": run["seconds"],
        "tis": tis,
        "pods": pods_between(world, run["start"], run["end"]),
        "ran": {ti["task_id"] for ti in tis if ti["state"] not in NOT_RUN},
    }


def pods_between(world: World, start: Any, end: Any) -> list[str]:
    """Task ids of the pods started between two datetimes (runs never overlap: max_active_runs=1)."""
    low, high = start.timestamp(), end.timestamp()
    return [task for when, task, _ in world.pods if low <= when <= high]


def step_table(tis: list[dict[str, Any]], run_start: Any = None) -> str:
    """One line per task instance: offset from the first start, duration, state (to see the gaps)."""
    starts = [ti["start_date"] for ti in tis if ti["start_date"]]
    t0 = run_start or (min(starts) if starts else None)
    lines = []
    for ti in sorted(tis, key=lambda t: (t["start_date"] is None, t["start_date"] or 0, t["map_index"])):
        name = ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]"
        offset = (ti["start_date"] - t0).total_seconds() if ti["start_date"] and t0 else float("nan")
        seconds = ti["seconds"] if ti["seconds"] is not None else float("nan")
        lines.append(f"  {name:<28} +{offset:6.1f}s {seconds:6.1f}s {ti['state']}")
    return "\n".join(lines)
