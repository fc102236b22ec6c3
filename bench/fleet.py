"""Fleet planning: 20 clusters x 5 releases, in-process (fleet_plan's pure functions).

20 clusters in 3 waves (2 dev, 4 staging, 14 production), on 5 OpenShift releases 4.18.10-4.18.14 (four
clusters on each), each with its newer releases as look-ahead targets, so the union is 5 releases. Every
release has its own kernel; half the production clusters pull from a repository of their own. Planning is
what the fleet's plan tasks would do between pods: every inspection parsed, the union of releases, the
builds (each image once), the copies and the wave plan. Task instances: ``fleet_plan.mapped_task_counts``
(one fleet run: a group of steps per cluster, as the DAG builds it) against 20 single-cluster runs of the
same work.

    PYTHONPATH=tests:plugins .venv/bin/python bench/fleet.py [--runs 5] [--drivers 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from common import emit

RELEASES = [f"4.18.{10 + i}" for i in range(5)]
KERNELS = {version: f"5.14.0-427.{50 + i}.1.el9_4.x86_64" for i, version in enumerate(RELEASES)}
DRIVERS = ["570.158.01", "580.82.07", "575.57.08"]
DTK = "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:" + "a" * 64
MAX_MAP_LENGTH = 1024  # Airflow's [core] max_map_length default (config.yml)


def fleet_setting(clusters: int) -> str:
    """PRECOMPILED_DRIVERS_CLUSTERS for ``clusters`` clusters: 2 dev, 4 staging, the rest production."""
    entries = []
    for i in range(clusters):
        wave = 1 if i < 2 else 2 if i < 6 else 3
        entry: dict[str, Any] = {
            "name": f"c{i:02d}",
            "conn_id": f"k8s_c{i:02d}",
            "channel": "fast-4.18" if wave == 1 else "stable-4.18",
            "wave": wave,
        }
        if wave == 3 and i % 2:
            entry["target_repository"] = "registry.example.com/prod/nvidia"
        entries.append(entry)
    return json.dumps(entries)


def inspection(version: str) -> dict[str, Any]:
    """An inspect_cluster result: two GPU nodes on the release's kernel, GPU Operator v26.7.0."""
    labels = {
        "feature.node.kubernetes.io/kernel-version.full": KERNELS[version],
        "feature.node.kubernetes.io/system-os_release.ID": "rhcos",
        "feature.node.kubernetes.io/system-os_release.VERSION_ID": "4.18",
    }
    return {
        "nodes": [{"name": f"gpu-{n}", "labels": labels} for n in range(2)] + [None],
        "operator": {
            "spec": {"template": {"spec": {"containers": [{"image": "nvcr.io/nvidia/gpu-operator:v26.7.0"}]}}}
        },
        "policy": {"spec": {"driver": {"enabled": True}}},
        "cluster_version": version,
    }


def world(clusters: int, drivers: int) -> tuple[Any, Any, dict, dict, list]:
    """Settings, config, inspections, upgrade targets and toolkits for the bench fleet."""
    from precompiled_drivers.config import run_config
    from precompiled_drivers.plan import Toolkit
    from precompiled_drivers.settings import Settings

    settings = Settings.from_env(
        {
            "PRECOMPILED_DRIVERS_CLUSTERS": fleet_setting(clusters),
            "PRECOMPILED_DRIVERS_TARGET_REPOSITORY": "registry.example.com/nvidia",
        }
    ).validate()
    params = {"driver_versions": DRIVERS[:drivers], "cuda_version": "12.8.1", "driver_repo_ref": "main"}
    cfg = run_config(params, settings)
    names = [c.name for c in settings.fleet()]
    own = {name: RELEASES[i % len(RELEASES)] for i, name in enumerate(names)}
    xcoms = {name: inspection(own[name]) for name in names}
    upgrades = {name: [r for r in RELEASES if r > own[name]] for name in names}
    toolkits = [Toolkit(v, "x86_64", DTK, KERNELS[v], "", "9.4") for v in RELEASES]
    return settings, cfg, xcoms, upgrades, toolkits


def plan_fleet(settings: Any, cfg: Any, xcoms: dict, upgrades: dict, toolkits: list) -> dict[str, Any]:
    """Everything the fleet's planning tasks compute; returns the counts."""
    from precompiled_drivers import fleet, fleet_plan

    clusters = settings.fleet()
    inspected = fleet_plan.inspect_results(clusters, xcoms)
    releases = fleet_plan.fleet_releases(cfg, inspected, upgrades)
    builds = fleet_plan.plan_fleet_builds(cfg, settings, inspected, releases, toolkits)
    copies = fleet_plan.copy_lines(builds)
    waves = fleet.waves(clusters)
    fleet_plan.wave_states(waves, {})
    return {
        "inspected": inspected,
        "releases": releases,
        "builds": builds,
        "copies": len(copies.splitlines()) if copies else 0,
        "waves": [len(w.clusters) for w in waves],
    }


def main(argv: list[str] | None = None) -> int:
    """Print planning time, builds and task instances for the fleet and for one run per cluster."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clusters", type=int, default=20)
    parser.add_argument("--drivers", type=int, default=1, choices=range(1, len(DRIVERS) + 1))
    args = parser.parse_args(argv)
    from precompiled_drivers import fleet_plan

    state = world(args.clusters, args.drivers)
    plan_fleet(*state)  # warm-up (imports, regex caches)
    timings = []
    for _ in range(args.runs):
        start = time.perf_counter()
        result = plan_fleet(*state)
        timings.append(time.perf_counter() - start)
    seconds = statistics.median(timings)
    counts = fleet_plan.mapped_task_counts(
        clusters=args.clusters,
        releases=len(result["releases"]),
        builds=len(result["builds"]),
        copies=result["copies"],
    )
    fleet_tis = sum(counts.values())
    # The same work as one single-cluster run per cluster: each plans, resolves and builds its own.
    settings, cfg, _xcoms, upgrades, toolkits = state
    separate_tis = separate_builds = 0
    for item in result["inspected"]:
        own = fleet_plan.fleet_releases(cfg, [item], upgrades)
        builds = fleet_plan.plan_fleet_builds(cfg, settings, [item], own, toolkits)
        copies = fleet_plan.copy_lines(builds)
        separate_builds += len(builds)
        separate_tis += sum(
            fleet_plan.mapped_task_counts(
                1, len(own), len(builds), len(copies.splitlines()) if copies else 0
            ).values()
        )
    from precompiled_drivers import procedure

    # Mapped steps expand at run time (max_map_length caps each); the per-cluster steps are groups.
    widest = max(n for step, n in counts.items() if procedure.step(step).per is not None)
    print(
        f"{args.clusters} clusters (waves {result['waves']}), {len(result['releases'])} releases, "
        f"{args.drivers} driver version(s): plan {seconds * 1000:.1f} ms (median of {args.runs}); "
        f"{len(result['builds'])} builds, {result['copies']} copies by digest"
    )
    print(
        f"task instances: one fleet run {fleet_tis} (widest mapped step {widest}, max_map_length "
        f"{MAX_MAP_LENGTH}; {args.clusters} tasks per cluster step, one per cluster group); "
        f"{args.clusters} single-cluster runs {separate_tis}, {separate_builds} builds"
    )
    print("per step:", json.dumps(counts))
    emit(
        "fleet",
        clusters=args.clusters,
        releases=len(result["releases"]),
        drivers=args.drivers,
        waves=result["waves"],
        seconds=round(seconds, 4),
        builds=len(result["builds"]),
        copies=result["copies"],
        task_instances=fleet_tis,
        widest_mapped_step=widest,
        separate_task_instances=separate_tis,
        separate_builds=separate_builds,
        per_step=counts,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
