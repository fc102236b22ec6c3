"""Release discovery, Airflow side: settings from Variables, the watched Asset, events -> targets.

Settings live in Airflow Variables (one documented place). Each is read and validated when it is used
(in the triggerer at every poll, in the plan task at run time), never at DAG parse time; an invalid value
raises ``SettingsError`` naming the Variable. As usual in Airflow, ``AIRFLOW_VAR_<NAME>`` environment
variables (e.g. ``AIRFLOW_VAR_PRECOMPILED_DRIVERS_GRAPH_URL``) override the metadata database.

Variables (name, default, meaning):

- ``precompiled_drivers_channels``, ``["stable-4.18"]``: channels followed (JSON list, or comma-separated).
- ``precompiled_drivers_arches``, ``["x86_64"]``: pipeline arches, ``x86_64`` and/or ``aarch64``.
- ``precompiled_drivers_graph_url``, ``https://api.openshift.com/api/upgrades_info/v1/graph``: the update
  graph, or a disconnected mirror's (OpenShift Update Service).
- ``precompiled_drivers_graph_ca_bundle``, unset: CA bundle file for the graph URL (default:
  ``REQUESTS_CA_BUNDLE`` or the system store).
- ``precompiled_drivers_poll_interval``, ``3600``: seconds between polls (1 to 604800).
- ``precompiled_drivers_first_sight``, ``baseline``: on the first poll of a channel/arch, ``baseline`` only
  records what exists (no run for releases that were already out); ``latest`` also reports its newest one.
- ``precompiled_drivers_lookahead``, ``true``: also build for the versions the cluster can update to next.
- ``precompiled_drivers_lookahead_limit``, ``3``: at most this many look-ahead versions (0 to 20).

Proxies: ``HTTPS_PROXY`` / ``NO_PROXY`` in the triggerer's and workers' environment.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow.sdk import Asset, AssetOrTimeSchedule, AssetWatcher, CronTriggerTimetable

from precompiled_drivers import grammar as g
from precompiled_drivers import ocp_version
from precompiled_drivers import validation as v
from precompiled_drivers.releases import (
    DEFAULT_GRAPH_URL,
    FIRST_SIGHT_MODES,
    GraphClient,
    GraphError,
    Release,
    SeenReleases,
    poll_new_releases,
    upgrade_targets,
)
from precompiled_drivers.trigger import DEFAULT_STATE_KEY, NewReleaseTrigger

log = logging.getLogger(__name__)

ASSET_NAME = "openshift-releases"
WATCHER_NAME = "openshift-update-graph"

VAR_CHANNELS = "precompiled_drivers_channels"
VAR_ARCHES = "precompiled_drivers_arches"
VAR_GRAPH_URL = "precompiled_drivers_graph_url"
VAR_CA_BUNDLE = "precompiled_drivers_graph_ca_bundle"
VAR_POLL_INTERVAL = "precompiled_drivers_poll_interval"
VAR_FIRST_SIGHT = "precompiled_drivers_first_sight"
VAR_LOOKAHEAD = "precompiled_drivers_lookahead"
VAR_LOOKAHEAD_LIMIT = "precompiled_drivers_lookahead_limit"
VARIABLES = (
    VAR_CHANNELS,
    VAR_ARCHES,
    VAR_GRAPH_URL,
    VAR_CA_BUNDLE,
    VAR_POLL_INTERVAL,
    VAR_FIRST_SIGHT,
    VAR_LOOKAHEAD,
    VAR_LOOKAHEAD_LIMIT,
)


class SettingsError(ValueError):
    """A discovery setting is invalid; the message names the Variable."""


@dataclass(frozen=True)
class DiscoverySettings:
    """Validated discovery settings (see the module docstring for the Variables behind them)."""

    channels: tuple[str, ...] = ("stable-4.18",)
    arches: tuple[str, ...] = ("x86_64",)
    graph_url: str = DEFAULT_GRAPH_URL
    poll_interval: float = 3600.0
    lookahead: bool = True
    lookahead_limit: int = 3
    first_sight: str = "baseline"
    ca_bundle: str | None = None

    def client(self, **kwargs: Any) -> GraphClient:
        """A graph client for these settings (``kwargs`` go to :class:`GraphClient`)."""
        return GraphClient(self.graph_url, ca_bundle=self.ca_bundle, **kwargs)


def _airflow_variable(name: str) -> str | None:
    from airflow.sdk import Variable

    value = Variable.get(name, default=None)
    return None if value is None else str(value)


def load_settings(get: Callable[[str], str | None] | None = None) -> DiscoverySettings:
    """Read and validate the discovery Variables; unset ones take their defaults.

    ``get`` returns a Variable's raw string or None (defaults to Airflow's ``Variable.get``); call this at
    run time only (a task or the triggerer), never at module level of a DAG file.
    """
    get = get or _airflow_variable
    return settings_from_values({name: get(name) for name in VARIABLES})


def settings_from_values(values: Mapping[str, str | None]) -> DiscoverySettings:
    """Validate raw Variable strings (missing/None/blank = default) into settings."""
    d = DiscoverySettings()

    def raw(name: str) -> str | None:
        value = values.get(name)
        return None if value is None or not str(value).strip() else str(value).strip()

    channels = _str_list(VAR_CHANNELS, raw(VAR_CHANNELS), d.channels)
    if bad := [ch for ch in channels if not g.CHANNEL.matches(ch)]:
        raise SettingsError(
            f"Variable {VAR_CHANNELS}: invalid channel {v.show(bad[0])}: expected {g.CHANNEL.expected}"
        )
    arches = _str_list(VAR_ARCHES, raw(VAR_ARCHES), d.arches)
    if bad := [a for a in arches if a not in g.ARCHES]:
        raise SettingsError(
            f"Variable {VAR_ARCHES}: unknown arch {v.show(bad[0])}, expected {list(g.ARCHES)}"
        )
    graph_url = raw(VAR_GRAPH_URL) or d.graph_url
    ca_bundle = raw(VAR_CA_BUNDLE)
    try:
        # Plain characters only: the URL is logged and sent as is, the bundle path is opened as is.
        v.https_url(graph_url, f"Variable {VAR_GRAPH_URL}")
        if ca_bundle is not None:
            v.file_path(ca_bundle, f"Variable {VAR_CA_BUNDLE}")
    except v.ValidationError as exc:
        raise SettingsError(f"{exc} (an http(s) URL / absolute path of plain characters)") from None
    first_sight = raw(VAR_FIRST_SIGHT) or d.first_sight
    if first_sight not in FIRST_SIGHT_MODES:
        raise SettingsError(
            f"Variable {VAR_FIRST_SIGHT}: got {v.show(first_sight)}, "
            f"expected one of {list(FIRST_SIGHT_MODES)}"
        )
    return DiscoverySettings(
        channels=channels,
        arches=arches,
        graph_url=graph_url,
        poll_interval=_number(VAR_POLL_INTERVAL, raw(VAR_POLL_INTERVAL), d.poll_interval, 1, 604800),
        lookahead=_bool(VAR_LOOKAHEAD, raw(VAR_LOOKAHEAD), d.lookahead),
        lookahead_limit=_count(VAR_LOOKAHEAD_LIMIT, raw(VAR_LOOKAHEAD_LIMIT), d.lookahead_limit, 20),
        first_sight=first_sight,
        ca_bundle=ca_bundle,
    )


def _str_list(name: str, value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return default
    if value.startswith("["):
        try:
            items = json.loads(value)
        except ValueError:
            raise SettingsError(f"Variable {name}: not valid JSON: {v.show(value)}") from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise SettingsError(f"Variable {name}: expected a JSON list of strings")
    else:
        items = value.split(",")
    out = tuple(dict.fromkeys(i.strip() for i in items if i.strip()))  # dedup, keep order
    if not out or len(out) > 32:
        raise SettingsError(f"Variable {name}: expected 1 to 32 entries, got {len(out)}")
    return out


def _number(name: str, value: str | None, default: float, low: float, high: float) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise SettingsError(f"Variable {name}: expected a number, got {v.show(value)}") from None
    if not low <= number <= high:
        raise SettingsError(f"Variable {name}: must be between {low:g} and {high:g}, got {v.show(value)}")
    return number


def _count(name: str, value: str | None, default: int, high: int) -> int:
    if value is None:
        return default
    if not value.isascii() or not value.isdigit() or int(value) > high:
        raise SettingsError(
            f"Variable {name}: expected a whole number between 0 and {high}, got {v.show(value)}"
        )
    return int(value)


def _bool(name: str, value: str | None, default: bool) -> bool:
    if value is None:
        return default
    word = g.boolean_word(value)
    if word is None:
        raise SettingsError(f"Variable {name}: expected {g.BOOLEAN_EXPECTED}, got {v.show(value)}")
    return word


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
    state_key: str = DEFAULT_STATE_KEY,
    client: GraphClient | None = None,
) -> tuple[list[Release], list[GraphError]]:
    """Do the trigger's poll from a task (cron fallback runs); returns new releases and graph errors.

    ``store`` is the task's accessor for the releases asset, ``context["asset_state_store"][asset]``
    (declare the asset as the task's inlet). It shares the trigger's state, so a release reported by one
    is not reported again by the other. The state is saved before returning: the caller is the consumer.
    """
    settings = settings or load_settings()
    state = SeenReleases.from_json(store.get(state_key))
    client = client or settings.client()
    new, errors = poll_new_releases(
        client, settings.channels, settings.arches, state, first_sight=settings.first_sight
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
    a warning. Two events for the same version/arch keep the first (channels differ, images do not).
    """
    found: dict[tuple[str, str], Release] = {}
    for key in events:
        for event in events[key]:
            rel = _event_release(event)
            if rel is None:
                log.warning("asset event %r carries no release payload; ignored", event)
                continue
            found.setdefault((rel.version, rel.arch), rel)
    # A version outside the grammar sorts last; run_config then refuses it naming the event.
    return sorted(
        found.values(),
        key=lambda r: (
            not ocp_version.is_valid(r.version),
            ocp_version.is_valid(r.version) and ocp_version.sort_key(r.version),
            r.arch,
        ),
    )


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
