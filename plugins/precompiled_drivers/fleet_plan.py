"""Planning for a fleet: every cluster inspected, the union of releases, each image built once, waves.

Pure functions from the clusters' inspections (``inspect_cluster`` XComs) and the run's validated config
to plain data; the single-cluster rules stay in ``plan``, ``os_tag`` and ``rollout`` and are applied per
cluster here, then merged. Nothing in this module talks to a cluster or to Airflow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from precompiled_drivers import kernel_module, naming, ocp_version, os_tag, plan, procedure
from precompiled_drivers import validation as v
from precompiled_drivers.cluster import ClusterError, ClusterState, parse_cluster
from precompiled_drivers.config import RunConfig
from precompiled_drivers.fleet import Cluster, Wave, repository_of
from precompiled_drivers.settings import Settings

# A cluster's rollout outcome, as the wave gate reads it.
VERIFIED = "verified"  # patched and verified, or already on the wanted images (nothing to patch)
FAILED = "failed"  # the gate, the patch or the verification failed (the cluster is restored)
SKIPPED = "skipped"  # unreachable or not inspectable: reported, never patched


@dataclass(frozen=True)
class Inspected:
    """One cluster as its inspection found it: ``state``, or the ``error`` that makes it skipped."""

    cluster: Cluster
    state: ClusterState | None
    error: str = ""

    @property
    def reachable(self) -> bool:
        """True when the cluster was inspected and its answer is usable."""
        return self.state is not None


@dataclass(frozen=True)
class FleetRelease:
    """One release to resolve and build for, once, with every cluster that needs it and why."""

    version: str
    arch: str
    sources: tuple[str, ...]  # form | event | cluster | upgrade
    clusters: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str]:
        """Identity of the release (version, arch)."""
        return (self.version, self.arch)


@dataclass(frozen=True)
class FleetBuild:
    """One image built once: ``spec`` as planned for the first cluster needing it, ``copies`` the other
    references (other repositories, other OS tags) the same image is published under, by digest."""

    spec: plan.BuildSpec
    clusters: tuple[str, ...]
    copies: tuple[str, ...]

    @property
    def references(self) -> tuple[str, ...]:
        """Every reference the image is published under (the pushed one first)."""
        return (self.spec.image, *self.copies)


class FleetConflict(ValueError):
    """Two clusters need different images under one reference; the message names them and the fix."""


def inspect_results(
    fleet: Sequence[Cluster], xcoms: Mapping[str, Any], operator_override: str = ""
) -> list[Inspected]:
    """Each cluster's inspection parsed; a missing or unusable one is skipped with the reason.

    ``xcoms`` maps a cluster name to its ``inspect_cluster`` result (None or absent: the inspection did
    not succeed, e.g. the API server is unreachable).
    """
    out = []
    for cluster in fleet:
        xcom = xcoms.get(cluster.name)
        if not isinstance(xcom, Mapping):
            out.append(
                Inspected(cluster, None, f"cluster {cluster.name} ({cluster.conn_id}) was not inspected")
            )
            continue
        try:
            state = parse_cluster(xcom, operator_override)
            kernel_module.requested(state.policy)  # a policy the CRD would refuse skips this cluster only
            out.append(Inspected(cluster, state))
        except (ClusterError, v.ValidationError, kernel_module.ModuleTypeError) as exc:
            out.append(Inspected(cluster, None, f"cluster {cluster.name}: {exc}"))
    return out


def fleet_releases(
    config: RunConfig,
    inspected: Sequence[Inspected],
    upgrades: Mapping[str, Sequence[str]] | None = None,
    event_clusters: Mapping[tuple[str, str], Sequence[str]] | None = None,
) -> list[FleetRelease]:
    """The union of releases over the reachable clusters, each once, with the clusters that need it.

    The form's releases go to every reachable cluster; an event's to the clusters its payload names
    (every reachable cluster when it names none, as a single-cluster event does); each cluster's own
    release (``include_cluster_release``) and its upgrade targets (``upgrades[name]``) to that cluster.
    A release none of the reachable clusters needs is left out.
    """
    upgrades = upgrades or {}
    event_clusters = event_clusters or {}
    reachable = [i for i in inspected if i.state is not None]
    everyone = {i.cluster.name for i in reachable}
    needs: dict[tuple[str, str], tuple[set[str], set[str]]] = {}

    def add(version: str, arch: str, source: str, names: Iterable[str]) -> None:
        names = set(names) & everyone
        if names:
            sources, clusters = needs.setdefault((version, arch), (set(), set()))
            sources.add(source)
            clusters.update(names)

    for target in config.targets:
        names = everyone if target.source != "event" else event_clusters.get(target.key) or everyone
        add(target.version, target.arch, target.source, names)
    for item in reachable:
        own_version = item.state.cluster_version if item.state is not None else ""
        for arch in config.arches:
            if config.include_cluster_release and own_version:
                add(own_version, arch, "cluster", [item.cluster.name])
            for version in upgrades.get(item.cluster.name, ()):
                add(version, arch, "upgrade", [item.cluster.name])
    return [
        FleetRelease(version, arch, tuple(sorted(sources)), tuple(sorted(clusters)))
        for (version, arch), (sources, clusters) in sorted(
            needs.items(), key=lambda kv: (ocp_version.sort_key(kv[0][0]), kv[0][1])
        )
    ]


def plan_fleet_builds(
    config: RunConfig,
    settings: Settings,
    inspected: Sequence[Inspected],
    releases: Sequence[FleetRelease],
    toolkits: Iterable[plan.Toolkit],
) -> list[FleetBuild]:
    """Each (driver, kernel, build arch, kernel module type) image once, for every cluster needing it.

    Every reachable cluster is planned by the single-cluster rule (``plan.plan_builds``) with its own
    releases, operator version, OS tags, ``kernelModuleType`` and repository; builds of the same key are
    then one build, published under every reference any of its clusters needs (other repositories,
    other OS tags: NVIDIA's OS_TAG changes only the tag and a label, see ``plan.BuildSpec.aliases``).
    Raises FleetConflict when two clusters need different images under one reference.
    """
    toolkits = list(toolkits)
    merged: dict[tuple[str, str, str, str], tuple[plan.BuildSpec, set[str], set[str]]] = {}
    for item in inspected:
        state = item.state
        if state is None:
            continue
        wanted = {r.key for r in releases if item.cluster.name in r.clusters}
        own = [t for t in toolkits if (t.version, t.arch) in wanted]
        if not own:
            continue
        cluster_config = dataclasses.replace(
            config, repository=repository_of(item.cluster, config.repository)
        )
        tags = os_tag.cluster_os_tags(
            os_tag.servable(state.nodes, state.operator_version), state.operator_version
        )
        for spec in plan.plan_builds(
            cluster_config,
            settings,
            own,
            state.operator_version,
            cluster_os_tags=tags,
            kernel_module_type=kernel_module.requested(state.policy),
            gpu_kernels=state.kernels,
        ):
            key = (
                spec.driver_version,
                naming.make_kernel_version(spec.kernel),
                spec.build_arch,
                spec.kernel_module_type,
            )
            first, clusters, references = merged.setdefault(key, (spec, set(), set()))
            clusters.add(item.cluster.name)
            references.update((spec.image, *spec.aliases))
            if spec.releases != first.releases:
                merged[key] = (_with_releases(first, spec.releases), clusters, references)
    builds = [
        FleetBuild(spec, tuple(sorted(clusters)), tuple(sorted(references - {spec.image})))
        for spec, clusters, references in merged.values()
    ]
    _refuse_shared_references(builds)
    return sorted(builds, key=lambda b: (b.spec.kernel, b.spec.driver_version, b.spec.kernel_module_type))


def _with_releases(spec: plan.BuildSpec, releases: Iterable[str]) -> plan.BuildSpec:
    joined = tuple(sorted({*spec.releases, *releases}, key=ocp_version.sort_key))
    return dataclasses.replace(spec, releases=joined)


def _refuse_shared_references(builds: Sequence[FleetBuild]) -> None:
    owner: dict[str, FleetBuild] = {}
    for build in builds:
        for reference in build.references:
            other = owner.setdefault(reference, build)
            if other is not build:
                raise FleetConflict(
                    f"{reference}: clusters {', '.join(other.clusters)} need it with "
                    f"{other.spec.kernel_module_type} kernel modules, clusters {', '.join(build.clusters)} "
                    f"with {build.spec.kernel_module_type} ones (ClusterPolicy kernelModuleType): "
                    "give one group its own target_repository in PRECOMPILED_DRIVERS_CLUSTERS"
                )


def copy_lines(builds: Iterable[FleetBuild]) -> str:
    """publish_os_tags' ALIASES input for the fleet: ``<pushed image> <copy>`` per line."""
    return "\n".join(f"{b.spec.image} {copy}" for b in builds for copy in b.copies)


def wave_states(waves: Sequence[Wave], outcomes: Mapping[str, str]) -> list[tuple[int, str, str]]:
    """Each wave's ``(number, state, why)`` from the clusters' outcomes so far.

    ``outcomes`` maps a cluster to VERIFIED, FAILED or SKIPPED; a cluster not in it has not finished.
    States: ``verified`` (its clusters are done, at least one verified and none failed), ``failed`` (a
    cluster failed: later waves stop), ``running`` (the wave to roll out now), ``waiting`` (after the
    running one), ``stopped`` (an earlier wave failed, or verified no cluster at all: a later wave never
    goes ahead without a verified earlier one).
    """
    out: list[tuple[int, str, str]] = []
    stop = ""
    running = False
    for wave in waves:
        results = {name: outcomes.get(name) for name in wave.names}
        if stop:
            out.append((wave.number, "stopped", stop))
        elif running:
            out.append((wave.number, "waiting", f"wave {wave.number - 1} has not verified yet"))
        elif failed := sorted(n for n, r in results.items() if r == FAILED):
            out.append((wave.number, "failed", f"{', '.join(failed)} failed"))
            stop = f"wave {wave.number} failed ({', '.join(failed)})"
        elif any(r is None for r in results.values()):
            out.append((wave.number, "running", "rolling out"))
            running = True
        elif verified := sorted(n for n, r in results.items() if r == VERIFIED):
            skipped = sorted(n for n, r in results.items() if r == SKIPPED)
            why = f"{', '.join(verified)} verified" + (f"; {', '.join(skipped)} skipped" if skipped else "")
            out.append((wave.number, "verified", why))
        else:
            out.append(
                (wave.number, "failed", "no cluster of the wave verified (unreachable, or not rolled out)")
            )
            stop = f"wave {wave.number} verified no cluster"
    return out


# A cluster's rollout steps that must not fail, plan to GPU check (its rollback decision and rollback
# are its undo), in procedure order.
ROLLOUT_STEPS = procedure.TASK_IDS[
    procedure.TASK_IDS.index("plan_rollout") : procedure.TASK_IDS.index("needs_rollback")
]
_DONE = ("success", "skipped")


def cluster_outcome(states: Mapping[str, str]) -> str | None:
    """One cluster's outcome for the wave gate, from its steps' states (step -> state); None: not finished.

    FAILED when a rollout step failed or could not run; SKIPPED when its plan skipped (the cluster was not
    inspected) or it finished without a rollout to verify (approval rejected); VERIFIED when its
    ClusterPolicy rollout verified (and its GPU check passed or skipped) or its NVIDIADriver stages did.
    """
    if any(states.get(step) in ("failed", "upstream_failed") for step in ROLLOUT_STEPS):
        return FAILED
    if states.get("plan_rollout") == "skipped":
        return SKIPPED
    if not all(states.get(step) in _DONE for step in ROLLOUT_STEPS):
        return None
    if states.get("roll_out_nvidia_drivers") == "success" or states.get("verify_rollout") == "success":
        return VERIFIED
    return SKIPPED


def mapped_task_counts(clusters: int, releases: int, builds: int, copies: int) -> dict[str, int]:
    """Task instances one fleet run creates per step (the fleet DAG: one group per cluster).

    ``clusters`` configured: each has its group of steps, inspection to rollback, whether it is reachable
    or not (an unreachable one's steps are skipped, not absent); ``releases`` resolved once each,
    ``builds`` built and pushed once each, ``copies`` published by digest (one pod for all).
    """
    # Every step from the plan of a rollout to the rollback is in each cluster's group (procedure order,
    # so a new rollout step counts without an edit here).
    steps = procedure.TASK_IDS
    per_cluster = steps[steps.index("plan_rollout") : steps.index("report")]
    return {
        "validate_inputs": 1,
        "inspect_cluster": clusters,
        "plan_releases": 1,
        "resolve_driver_toolkit": releases,
        "inspect_driver_toolkit": releases,
        "plan_builds": 1,
        "check_published_images": 1,
        "select_builds": 1,
        "build_driver_image": builds,
        "push_driver_image": builds,
        "publish_os_tags": 1 if copies else 0,
        **dict.fromkeys(per_cluster, clusters),
        "report": 1,
    }
