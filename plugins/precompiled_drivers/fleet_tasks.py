"""The Python steps of a fleet run (``PRECOMPILED_DRIVERS_CLUSTERS`` set): thin wrappers over ``fleet_plan``.

A fleet run inspects every cluster in its group (``dev.inspect_cluster``), plans the union of releases and
each image once (``plan_releases``, ``plan_builds``: ungrouped, like the builds), then rolls out cluster by
cluster in the cluster's group (``dev.plan_rollout`` ... ``dev.rollback_cluster_policy``), wave after wave.
The single-cluster steps in ``tasks`` do the per-cluster work; these functions choose the cluster and its
inputs. As in ``tasks``, what they run is imported inside them (#20: the DAG file imports this module).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from precompiled_drivers.procedure import TASK_IDS, step_of
from precompiled_drivers.tasks import CLUSTER_KEY, RunFailed, _load, report, step_states

log = logging.getLogger(__name__)

FLEET_KEY = "fleet"  # plan_releases' XCom: every cluster as inspected (its state, or why it is skipped)
RELEASES_KEY = "fleet_releases"  # plan_releases' XCom: each release once, with the clusters needing it
# The steps each cluster runs in its group: its inspection, and its rollout after the shared builds.
CLUSTER_STEPS = ("inspect_cluster", *TASK_IDS[TASK_IDS.index("plan_rollout") : TASK_IDS.index("report")])


def group_of(task_id: str) -> str:
    """The cluster a grouped task belongs to (``prod-a.plan_rollout`` -> ``prod-a``)."""
    return task_id.partition(".")[0]


def plan_releases(config: Mapping[str, Any] | None, ti: Any = None) -> list[dict[str, Any]]:
    """The union of the fleet's releases, as resolve_driver_toolkit's per-release kwargs.

    Reads every cluster's inspection; a cluster that was not inspected (unreachable) or whose answer is
    unusable is logged and left out, the others go on. Each reachable cluster adds its own release and
    its upgrade targets (its own channel); the form's releases go to every cluster, an event's to the
    clusters following its channel. Pushes the inspections under ``FLEET_KEY``, and under ``CLUSTER_KEY``
    the state of the cluster the build pods run on (its signing keys), if it is one of the fleet.
    """
    from airflow.sdk.exceptions import AirflowSkipException

    from precompiled_drivers import fleet_plan
    from precompiled_drivers.config import Target
    from precompiled_drivers.releases import schedule, variables
    from precompiled_drivers.steps import resolve_driver_toolkit

    if config is None:  # validate_inputs failed (this task runs whatever the inspections did)
        raise AirflowSkipException("the run's inputs were not validated: nothing to plan")
    cfg, settings = _load(config)
    fleet = settings.fleet()
    xcoms = {c.name: ti.xcom_pull(task_ids=f"{c.name}.inspect_cluster") for c in fleet}
    inspected = fleet_plan.inspect_results(fleet, xcoms, cfg.operator_version)
    upgrades: dict[str, list[str]] = {}
    for item in inspected:
        if item.state is None:
            log.error("%s: skipped, the other clusters go on", item.error)
            continue
        channel = item.cluster.channel or str(xcoms[item.cluster.name].get("cluster_channel") or "")
        if item.state.cluster_version:
            found = schedule.lookahead_releases(
                item.state.cluster_version,
                arch=cfg.arches[0],
                settings=variables.load_settings(),
                channel=channel or None,
            )
            upgrades[item.cluster.name] = [release.version for release, _conditional in found]
    events = {t.key: t.clusters for t in cfg.targets if t.source == "event" and t.clusters}
    releases = fleet_plan.fleet_releases(cfg, inspected, upgrades, events)
    if ti is not None:
        ti.xcom_push(
            key=FLEET_KEY,
            value=[
                {
                    "cluster": i.cluster.to_dict(),
                    "state": i.state.to_dict() if i.state is not None else None,
                    "error": i.error,
                }
                for i in inspected
            ],
        )
        ti.xcom_push(
            key=RELEASES_KEY,
            value=[[r.version, r.arch, list(r.sources), list(r.clusters)] for r in releases],
        )
        hub = next((i.state for i in inspected if i.cluster.conn_id == settings.kubernetes_conn_id), None)
        ti.xcom_push(key=CLUSTER_KEY, value=hub.to_dict() if hub is not None else {})
    for release in releases:
        log.info(
            "release %s-%s (%s) for %s",
            release.version,
            release.arch,
            ", ".join(release.sources),
            ", ".join(release.clusters),
        )
    return [resolve_driver_toolkit.item(settings, Target(r.version, r.arch, r.sources[0])) for r in releases]


def _inspected(fleet_xcom: Sequence[Mapping[str, Any]]) -> list[Any]:
    from precompiled_drivers.cluster import ClusterState
    from precompiled_drivers.fleet import Cluster
    from precompiled_drivers.fleet_plan import Inspected

    return [
        Inspected(
            Cluster.from_dict(item["cluster"]),
            ClusterState.from_dict(item["state"]) if item.get("state") else None,
            str(item.get("error") or ""),
        )
        for item in fleet_xcom
    ]


def plan_builds(
    config: Mapping[str, Any], toolkits: Sequence[Mapping[str, Any]], ti: Any = None
) -> dict[str, Any]:
    """Each (driver, kernel, arch, kernel module type) image once for the whole fleet, published under every
    reference a cluster needs; the registry look-up covers every image any cluster's rollout wants."""
    from precompiled_drivers import fleet_plan, kernel_module, plan, rollout
    from precompiled_drivers.fleet import repository_of
    from precompiled_drivers.steps import check_published_images, publish_os_tags

    cfg, settings = _load(config)
    inspected = _inspected(ti.xcom_pull(task_ids="plan_releases", key=FLEET_KEY) or [])
    parsed, rejected = plan.parse_toolkits(toolkits)
    for bad in rejected:
        log.error(
            "release %s-%s left out, its driver toolkit is unusable: %s", bad.version, bad.arch, bad.error
        )
    releases = [
        fleet_plan.FleetRelease(version, arch, tuple(sources), tuple(clusters))
        for version, arch, sources, clusters in ti.xcom_pull(task_ids="plan_releases", key=RELEASES_KEY) or []
    ]
    builds = fleet_plan.plan_fleet_builds(cfg, settings, inspected, releases, parsed)
    module_types: dict[str, str] = {}
    for item in inspected:
        if item.state is None:
            continue
        repository = repository_of(item.cluster, cfg.repository)
        requested = kernel_module.requested(item.state.policy)
        rollout_type = kernel_module.resolve(requested, cfg.rollout_driver_version)
        for image in rollout.wanted_images(
            item.state, repository, cfg.image_name, cfg.rollout_driver_version
        ):
            module_types.setdefault(image, rollout_type)
    for build in builds:
        log.info(
            "plan %s for %s (clusters %s)%s",
            build.spec.image,
            ", ".join(build.spec.releases),
            ", ".join(build.clusters),
            "".join(f"\n  also as {copy}" for copy in build.copies),
        )
        for reference in build.references:
            module_types[reference] = build.spec.kernel_module_type
    return {
        "candidates": [b.spec.to_dict() for b in builds],
        "check_env": check_published_images.env(settings, sorted(module_types), module_types),
        "alias_env": publish_os_tags.env(settings, fleet_plan.copy_lines(builds)),
        "rejected": [r.to_dict() for r in rejected],
        "clusters": {b.spec.image: list(b.clusters) for b in builds},
    }


def plan_rollout(
    config: Mapping[str, Any],
    builds: Mapping[str, Any],
    published: Mapping[str, str],
    pushed: Sequence[Mapping[str, Any]] | None,
    aliased: Mapping[str, str] | None,
    ti: Any = None,
    dag_run: Any = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """``tasks.plan_rollout`` for the cluster whose group runs this task, in its own repository.

    Skips (nothing of the cluster's rollout runs) when the cluster was not inspected, or when the waves
    before its own did not verify a cluster; a failed earlier wave never gets here (its failure stops the
    later waves' tasks by their trigger rule).
    """
    from airflow.sdk.exceptions import AirflowSkipException

    from precompiled_drivers import fleet_plan, tasks
    from precompiled_drivers.fleet import repository_of, waves

    cfg, settings = _load(config)
    name = group_of(ti.task_id)
    fleet = settings.fleet()
    cluster = next(c for c in fleet if c.name == name)
    inspected = {i.cluster.name: i for i in _inspected(ti.xcom_pull(task_ids="plan_releases", key=FLEET_KEY))}
    item = inspected.get(name)
    if item is None or item.state is None:
        raise AirflowSkipException(f"{item.error if item else name + ' was not inspected'}: not rolled out")
    earlier = [w for w in waves(fleet) if w.number < cluster.wave]
    if earlier:
        outcomes = cluster_outcomes(ti, dag_run, [n for w in earlier for n in w.names])
        for number, state, why in fleet_plan.wave_states(earlier, outcomes):
            log.info("wave %s: %s (%s)", number, state, why)
            if state != "verified":
                raise AirflowSkipException(
                    f"wave {number} {state} ({why}): wave {cluster.wave} not rolled out"
                )
    own = dict(config, repository=repository_of(cluster, cfg.repository))
    return tasks.plan_rollout(own, item.state.to_dict(), builds, published, pushed, aliased, ti, run_id)


def cluster_outcomes(ti: Any, dag_run: Any, names: Sequence[str]) -> dict[str, str]:
    """VERIFIED, FAILED or SKIPPED per finished cluster of ``names``, from its group's task states."""
    from precompiled_drivers import fleet_plan

    ids = [f"{name}.{step}" for name in names for step in CLUSTER_STEPS]
    raw = ti.get_task_states(dag_id=dag_run.dag_id, run_ids=[dag_run.run_id], task_ids=ids)
    per_cluster: dict[str, dict[str, str]] = {name: {} for name in names}
    for task_id, state in raw.get(dag_run.run_id, {}).items():
        per_cluster[group_of(task_id)][step_of(task_id)] = str(state or "none")
    outcomes = {}
    for name, states in per_cluster.items():
        outcome = fleet_plan.cluster_outcome(states)
        if outcome is not None:
            outcomes[name] = outcome
    return outcomes


def report_run(ti: Any, dag_run: Any) -> str:
    """The fleet's report: each wave's state, the releases and images (once), then each cluster's own report.

    Fails the run when any step of any cluster failed or could not run (an unreachable cluster too): the
    other clusters' work is done and reported first.
    """
    from precompiled_drivers import fleet_plan
    from precompiled_drivers.failures import FAILURE_KEY
    from precompiled_drivers.fleet import waves
    from precompiled_drivers.report import STEPS, build_lines
    from precompiled_drivers.settings import installation

    fleet = installation().fleet()
    raw = ti.get_task_states(dag_id=dag_run.dag_id, run_ids=[dag_run.run_id]).get(dag_run.run_id, {})
    shared_ids = [s for s in STEPS if s not in CLUSTER_STEPS]
    shared = {s: ti.xcom_pull(task_ids=s) for s in shared_ids}
    shared_failures = {s: ti.xcom_pull(task_ids=s, key=FAILURE_KEY) for s in shared_ids}
    dag = getattr(getattr(ti, "task", None), "dag", None)
    sections: list[str] = []
    failed: dict[str, str] = {}  # cluster -> its report's first line (the first failure and why)
    for cluster in fleet:
        prefix = f"{cluster.name}."
        own_ids = {f"{prefix}{s}": s for s in CLUSTER_STEPS}
        results = dict(shared) | {s: ti.xcom_pull(task_ids=t) for t, s in own_ids.items()}
        results["readiness"] = ti.xcom_pull(task_ids=f"{prefix}plan_rollout", key="readiness")
        recorded = dict(shared_failures) | {
            s: ti.xcom_pull(task_ids=t, key=FAILURE_KEY) for t, s in own_ids.items()
        }
        # The shared steps (ungrouped; mapped ones collapse) and this cluster's group.
        states = step_states(
            {k: v for k, v in raw.items() if "." not in k}
            | {own_ids[k]: v for k, v in raw.items() if k in own_ids}
        )
        upstream = {}
        if dag is not None:
            for step in STEPS:
                task_id = f"{prefix}{step}" if step in CLUSTER_STEPS else step
                if dag.has_task(task_id):
                    upstream[step] = sorted(
                        step_of(t) if t.startswith(prefix) else t
                        for t in dag.get_task(task_id).get_flat_relative_ids(upstream=True)
                    )
        try:
            text = report(results, states, recorded, upstream, builds=False)
        except RunFailed as exc:
            text = exc.report
            failed[cluster.name] = text.splitlines()[0]
        sections += ["", f"=== cluster {cluster.name} (wave {cluster.wave}, {cluster.conn_id}) ===", text]
    outcomes = cluster_outcomes(ti, dag_run, [c.name for c in fleet])
    rows = fleet_plan.wave_states(waves(fleet), outcomes)
    head = [
        ("Fleet run FAILED" if failed else "Fleet run OK") + f": {len(fleet)} clusters in {len(rows)} waves",
        "",
        "Waves:",
        *(f"  wave {number}: {state} ({why})" for number, state, why in rows),
        "Clusters:",
        *(
            f"  {c.name} (wave {c.wave}): {outcomes.get(c.name, 'not finished')}"
            + (f"; {_short(failed[c.name])}" if c.name in failed else "")
            for c in fleet
        ),
    ]
    shared_lines = [
        "",
        "Releases and images (built once for the fleet):",
        *build_lines(shared, shared_failures),
    ]
    text = "\n".join([*head, *shared_lines, *sections])
    log.info("\n%s", text)
    if failed:
        ti.xcom_push(key="return_value", value=text)
        raise RunFailed(text)
    return text


def _short(line: str, limit: int = 200) -> str:
    return line if len(line) <= limit else line[: limit - 3] + "..."
