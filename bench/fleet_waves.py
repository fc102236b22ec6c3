"""Fan-out of a fleet's rollouts: a wave of N clusters vs a wave of one, in the same run (#18).

Real Airflow components (scheduler with the LocalExecutor, triggerer, dag-processor, api-server; SQLite)
run one fleet run over ``1 + N`` local test clusters (separate API servers): ``dev`` alone in wave 1,
``prod-1`` ... ``prod-N`` in wave 2, all on one kernel, so one image is built on the hub (dev's API
server) and every cluster is patched, verified and GPU-checked. Every pod step is Running for exactly
``--seconds``. A wave's span runs from the first start of its clusters' ``plan_rollout`` to the last end
of their rollout tasks; the ratio wave 2 / wave 1 is 1.0 when the N clusters roll out fully in parallel,
N when one after the other.

    PYTHONPATH=tests:plugins .venv/bin/python bench/fleet_waves.py [--clusters 3] [--seconds 10]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

from common import DRIVERS, airflow_env, emit, rebuild_conf, run_once

from harness.airflow_standalone import AirflowStandalone
from harness.pipeline_world import World, kube_connection
from testcluster.cluster import TestCluster
from testcluster.fleet import DEMO_NODES, seed_member
from testcluster.registry import Registry

ONE_KERNEL = tuple(node for node in DEMO_NODES if node[3] == "4.18")  # the 4.18.12 nodes only


@contextlib.contextmanager
def fleet_worlds(names: list[str], seconds: float) -> Iterator[dict[str, World]]:
    """One started test cluster per name (one registry), seeded on 4.18.12, every pod step ``seconds``."""
    registry = Registry().start()
    clusters: dict[str, TestCluster] = {}
    try:
        worlds = {}
        for name in names:
            clusters[name] = TestCluster().start()
            seed_member(clusters[name], "4.18.12", ONE_KERNEL)
            worlds[name] = World(clusters[name], registry, fixed_seconds=seconds, groups=(name,)).install()
        yield worlds
    finally:
        for cluster in clusters.values():
            cluster.stop()
        registry.stop()


def span(tis: list[dict[str, Any]], clusters: list[str]) -> float:
    """Seconds from the first start of the clusters' plan_rollout to the last end of their tasks."""
    starts = [
        ti["start_date"]
        for ti in tis
        if ti["task_id"] in {f"{c}.plan_rollout" for c in clusters} and ti["start_date"]
    ]
    ends = [
        ti["end_date"]
        for ti in tis
        if ti["task_id"].partition(".")[0] in clusters
        and not ti["task_id"].endswith(".inspect_cluster")
        and ti["end_date"]
    ]
    return (max(ends) - min(starts)).total_seconds()


def main(argv: list[str] | None = None) -> int:
    """One fleet run; print both waves' spans and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=3, help="clusters in wave 2")
    parser.add_argument("--seconds", type=float, default=10.0, help="fixed duration of every pod step")
    args = parser.parse_args(argv)
    wide = [f"prod-{i + 1}" for i in range(args.clusters)]
    with fleet_worlds(["dev", *wide], args.seconds) as worlds:
        fleet = [{"name": "dev", "conn_id": "kubernetes_default", "wave": 1}] + [
            {"name": name, "conn_id": f"k8s_{name.replace('-', '_')}", "wave": 2} for name in wide
        ]
        extra = {"PRECOMPILED_DRIVERS_CLUSTERS": json.dumps(fleet)} | {
            f"AIRFLOW_CONN_K8S_{name.replace('-', '_').upper()}": kube_connection(worlds[name].cluster)
            for name in wide
        }
        started = time.monotonic()
        # Parallelism above the widest wave's pods plus the Python tasks, so the executor never limits it.
        with AirflowStandalone(airflow_env(worlds["dev"], extra), parallelism=16) as airflow:
            print(f"Airflow up in {time.monotonic() - started:.0f}s ({airflow.home})", flush=True)
            result = run_once(airflow, worlds["dev"], rebuild_conf(DRIVERS[:1]))
    tis = result["tis"]
    failed = sorted(ti["task_id"] for ti in tis if ti["state"] in ("failed", "upstream_failed"))
    one, many = span(tis, ["dev"]), span(tis, wide)
    ratio = many / one
    print(f"run {result['state']} in {result['seconds']:.1f}s; failed: {failed or 'none'}")
    print(
        f"wave 1 (1 cluster): {one:.1f}s; wave 2 ({args.clusters} clusters): {many:.1f}s; "
        f"ratio {ratio:.2f}x (1.00x: fully parallel, {args.clusters}.00x: one after the other)"
    )
    emit(
        "fleet_waves",
        clusters_in_wave=args.clusters,
        pod_seconds=args.seconds,
        state=result["state"],
        run_seconds=round(result["seconds"], 1),
        wave_one_seconds=round(one, 1),
        wave_wide_seconds=round(many, 1),
        ratio=round(ratio, 2),
    )
    return 0 if result["state"] == "success" and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
