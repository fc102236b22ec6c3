"""The releases wing's settings and names: the Airflow Variables, the watched Asset, its state key.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from precompiled_drivers import grammar as g
from precompiled_drivers import validation as v
from precompiled_drivers.releases.client import DEFAULT_GRAPH_URL, GraphClient
from precompiled_drivers.releases.seen import FIRST_SIGHT_MODES

# The names Airflow knows the wing by: the Asset the DAG is scheduled on, its watcher, and the key of the
# asset state store that holds what was already reported (shared by the trigger and cron-run polls).
ASSET_NAME = "openshift-releases"
WATCHER_NAME = "openshift-update-graph"
STATE_KEY = "seen_releases"

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
