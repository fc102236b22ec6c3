"""The releases wing's Airflow side: the watched Asset and the DAG's schedule, events -> targets, the
cron fallback's poll and the look-ahead. Safe at parse time: no network, no Variable read at import.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import Asset, AssetOrTimeSchedule, AssetWatcher, CronTriggerTimetable

from precompiled_drivers import fleet, ocp_version
from precompiled_drivers.releases import variables
from precompiled_drivers.releases.client import GraphClient
from precompiled_drivers.releases.graph import GraphError, Release, upgrade_targets
from precompiled_drivers.releases.seen import SeenReleases, poll_new_releases
from precompiled_drivers.releases.trigger import NewReleaseTrigger
from precompiled_drivers.releases.variables import ASSET_NAME, STATE_KEY, WATCHER_NAME, DiscoverySettings
from precompiled_drivers.settings import installation

log = logging.getLogger(__name__)


def release_asset(**trigger_kwargs: Any) -> Asset:
    """The Asset the DAG is scheduled on, watched by :class:`NewReleaseTrigger`.

    Safe at parse time: no network, no Variable read. The trigger reads the Variables in the triggerer at
    every poll, so changing them needs no DAG change. ``trigger_kwargs`` pin settings instead (tests, or a
    DAG that wants them in code); they change the trigger's identity, so keep them constant.
    """
    trigger = NewReleaseTrigger(asset_name=ASSET_NAME, **trigger_kwargs)
    return Asset(ASSET_NAME, watchers=[AssetWatcher(name=WATCHER_NAME, trigger=trigger)])


def release_asset_ref() -> Any:
    """A reference to the releases asset, for a task's ``inlets`` (gives it the asset's state store)."""
    return Asset.ref(name=ASSET_NAME)


def release_schedule(cron: str | None = None, *, timezone: str = "UTC", **trigger_kwargs: Any) -> Any:
    """The DAG's ``schedule``: the watched asset, or, with ``cron``, the asset *or* that cron.

    The cron fallback is for deployments without a triggerer: its runs have no asset events, so their
    plan calls :func:`poll_from_task` to find new releases itself (same state as the trigger).
    """
    asset = release_asset(**trigger_kwargs)
    if not cron:
        return [asset]
    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(cron, timezone=timezone), assets=[asset])


def poll_from_task(
    store: Any,
    settings: DiscoverySettings | None = None,
    *,
    state_key: str = STATE_KEY,
    client: GraphClient | None = None,
    clusters: Sequence[fleet.Cluster] | None = None,
) -> tuple[list[Release], list[GraphError]]:
    """Do the trigger's poll from a task (cron fallback runs); returns new releases and graph errors.

    ``store`` is the task's accessor for the releases asset, ``context["asset_state_store"][asset]``
    (declare the asset as the task's inlet). It shares the trigger's state, so a release reported by one
    is not reported again by the other. The state is saved before returning: the caller is the consumer.
    It polls the fleet's channels as the trigger does (``clusters``: the installation's fleet by default).
    """
    settings = settings or variables.load_settings()
    channels, followers = fleet.poll_plan(
        installation().fleet() if clusters is None else clusters, settings.channels
    )
    state = SeenReleases.from_json(store.get(state_key))
    client = client or settings.client()
    new, errors = poll_new_releases(
        client, channels, settings.arches, state, first_sight=settings.first_sight, followers=followers
    )
    store.set(state_key, state.to_json())
    return new, errors


def _event_release(event: object) -> Release | None:
    extra = getattr(event, "extra", None)
    if extra is None and isinstance(event, Mapping):
        extra = event.get("extra", event)
    if not isinstance(extra, Mapping):
        return None
    # Watcher events carry the trigger payload under "payload"; a hand-made event may carry it flat.
    data = extra.get("payload", extra)
    try:
        return Release.from_dict(dict(data)) if isinstance(data, Mapping) else None
    except ValueError:
        return None


def targets_from_events(events: Mapping[Any, Sequence[object]]) -> list[Release]:
    """Turn ``context["triggering_asset_events"]`` into release targets (deduplicated, sorted).

    Events without a release payload (e.g. an asset event posted by hand with no extra) are skipped with
    a warning. Two events for the same version/arch keep the first (channels differ, images do not), with
    the clusters both name.
    """
    found: dict[tuple[str, str], Release] = {}
    for key in events:
        for event in events[key]:
            rel = _event_release(event)
            if rel is None:
                log.warning("asset event %r carries no release payload; ignored", event)
                continue
            first = found.setdefault((rel.version, rel.arch), rel)
            if rel.clusters and first is not rel:
                merged = tuple(sorted({*first.clusters, *rel.clusters}))
                found[(rel.version, rel.arch)] = dataclasses.replace(first, clusters=merged)
    # A version outside the grammar sorts last; run_config then refuses it naming the event.
    return sorted(
        found.values(),
        key=lambda r: (
            not ocp_version.is_valid(r.version),
            ocp_version.is_valid(r.version) and ocp_version.sort_key(r.version),
            r.arch,
        ),
    )


def event_clusters(releases: Sequence[Release]) -> dict[tuple[str, str], tuple[str, ...]]:
    """(version, arch) -> the clusters an event named, for ``fleet_plan.fleet_releases`` (events that name
    none, as a single-cluster installation's, are left out: they are for every cluster)."""
    return {(r.version, r.arch): r.clusters for r in releases if r.clusters}


def lookahead_releases(
    current_version: str,
    *,
    arch: str,
    settings: DiscoverySettings,
    channel: str | None = None,
    client: GraphClient | None = None,
) -> list[tuple[Release, bool]]:
    """Versions a cluster at ``current_version`` can update to next (bool: only by a conditional edge).

    ``channel`` is the cluster's own channel (ClusterVersion ``spec.channel``) when known; otherwise the
    followed channels are tried in order and the first whose graph knows ``current_version`` is used.
    Returns ``[]`` when look-ahead is off. Graph errors propagate (``GraphError``) for the caller to report.
    """
    if not settings.lookahead or settings.lookahead_limit == 0:
        return []
    client = client or settings.client()
    for ch in [channel] if channel else list(settings.channels):
        graph = client.fetch(ch, arch)
        if any(n.version == current_version for n in graph.nodes):
            return upgrade_targets(graph, current_version, limit=settings.lookahead_limit)
    return []
