"""The fleet: the clusters one installation keeps covered, as configuration (pure).

``PRECOMPILED_DRIVERS_CLUSTERS`` holds a JSON list of clusters, each ``{"name", "conn_id", "channel",
"wave", "target_repository"}``. Unset (the default), the fleet is one cluster, :data:`DEFAULT_CLUSTER`
reached through ``PRECOMPILED_DRIVERS_KUBERNETES_CONN_ID``: a single-cluster installation changes nothing.

- ``name``: a DNS-1123 label (it names the cluster in logs, the report and mapped tasks).
- ``conn_id``: the Airflow connection (a Kubernetes connection) the cluster's pods and API calls use.
- ``channel``: the update channel the cluster follows (``stable-4.18``); the release trigger polls each
  distinct channel of the fleet once. Empty: the channels of the Variable ``precompiled_drivers_channels``.
- ``wave``: 1, 2, ...: a wave rolls out after every earlier wave verified; clusters of a wave in parallel.
- ``target_repository``: where this cluster's operator pulls driver images from; empty: the run's
  repository (the form's, else ``PRECOMPILED_DRIVERS_TARGET_REPOSITORY``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from precompiled_drivers import grammar as g
from precompiled_drivers import validation as v

FIELD = "PRECOMPILED_DRIVERS_CLUSTERS"
DEFAULT_CLUSTER = "default"
# A fleet of 20 clusters is the target (issue #18); the cap keeps the mapped rollout tasks far below
# Airflow's [core] max_map_length (1024 by default).
CLUSTERS_MAX = 50
WAVES_MAX = 10
KEYS = ("name", "conn_id", "channel", "wave", "target_repository")
EXAMPLE = (
    '[{"name": "dev", "conn_id": "k8s_dev", "channel": "fast-4.18", "wave": 1}, '
    '{"name": "prod-a", "conn_id": "k8s_prod_a", "channel": "stable-4.18", "wave": 2}]'
)


@dataclass(frozen=True)
class Cluster:
    """One cluster of the fleet, as configured."""

    name: str
    conn_id: str
    channel: str = ""  # "" = the channels of the discovery Variable
    wave: int = 1
    target_repository: str = ""  # "" = the run's repository

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form for XCom and the report."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Cluster:
        """Inverse of :meth:`to_dict` (the values were validated when the fleet was read)."""
        return cls(**{k: data[k] for k in KEYS if k in data})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Wave:
    """The clusters that roll out together, after every earlier wave verified."""

    number: int
    clusters: tuple[Cluster, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The clusters' names, sorted."""
        return tuple(c.name for c in self.clusters)


def parse_fleet(raw: str, default_conn_id: str) -> tuple[Cluster, ...]:
    """The fleet from the setting's text: ``""`` is the single default cluster on ``default_conn_id``.

    Raises ``validation.ValidationError`` naming the entry and key (``PRECOMPILED_DRIVERS_CLUSTERS[1].wave``),
    the bad value and the fix.
    """
    if not raw.strip():
        return (
            Cluster(DEFAULT_CLUSTER, v.conn_id(default_conn_id, "PRECOMPILED_DRIVERS_KUBERNETES_CONN_ID")),
        )
    try:
        items = json.loads(raw)
    except ValueError as exc:
        raise v.ValidationError(
            FIELD, raw, f"a JSON list of clusters like {EXAMPLE}", f"not JSON: {exc}"
        ) from None
    if not isinstance(items, list) or not items:
        raise v.ValidationError(
            FIELD,
            raw,
            f"a non-empty JSON list of clusters like {EXAMPLE} (unset it for the one cluster of "
            "PRECOMPILED_DRIVERS_KUBERNETES_CONN_ID)",
        )
    if len(items) > CLUSTERS_MAX:
        raise v.ValidationError(FIELD, raw, f"at most {CLUSTERS_MAX} clusters", f"{len(items)} clusters")
    fleet = [_cluster(item, f"{FIELD}[{i}]") for i, item in enumerate(items)]
    for key in ("name", "conn_id"):
        first: dict[str, int] = {}
        for i, cluster in enumerate(fleet):
            value = getattr(cluster, key)
            if value in first:
                raise v.ValidationError(
                    f"{FIELD}[{i}].{key}",
                    value,
                    f"a {key} of its own",
                    f"{FIELD}[{first[value]}] has it already"
                    + ("; two entries for one cluster would patch it twice" if key == "conn_id" else ""),
                )
            first[value] = i
    numbers = sorted({c.wave for c in fleet})
    if numbers != list(range(1, len(numbers) + 1)):
        raise v.ValidationError(
            f"{FIELD}[].wave",
            numbers,
            "waves numbered 1, 2, ... without a gap (each wave waits for the one before it)",
        )
    return tuple(sorted(fleet, key=lambda c: (c.wave, c.name)))


def _cluster(item: object, where: str) -> Cluster:
    if not isinstance(item, dict):
        raise v.ValidationError(where, item, 'a cluster object like {"name": "dev", "conn_id": "k8s_dev"}')
    unknown = sorted(set(item) - set(KEYS))
    if unknown:
        raise v.ValidationError(
            f"{where}.{unknown[0]}", item[unknown[0]], f"one of the keys {', '.join(KEYS)}", "unknown key"
        )
    for key in ("name", "conn_id"):
        if key not in item:
            raise v.ValidationError(f"{where}.{key}", None, f"the cluster's {key}", "missing")
    channel = item.get("channel") or ""
    repository = item.get("target_repository") or ""
    return Cluster(
        name=v.dns_label(item["name"], f"{where}.name"),
        conn_id=v.conn_id(item["conn_id"], f"{where}.conn_id"),
        channel=_channel(channel, f"{where}.channel") if channel else "",
        wave=v.positive_int(item.get("wave", 1), f"{where}.wave", WAVES_MAX),
        target_repository=v.repository(repository, f"{where}.target_repository") if repository else "",
    )


def _channel(value: object, field: str) -> str:
    if not g.CHANNEL.matches(value):
        raise v.ValidationError(field, value, g.CHANNEL.expected)
    return str(value)


def is_default(fleet: Sequence[Cluster]) -> bool:
    """True for the single default cluster (no ``PRECOMPILED_DRIVERS_CLUSTERS``): today's behaviour."""
    return len(fleet) == 1 and fleet[0].name == DEFAULT_CLUSTER


def waves(fleet: Iterable[Cluster]) -> tuple[Wave, ...]:
    """The rollout order: waves by number, the clusters of each by name (they run in parallel)."""
    by_number: dict[int, list[Cluster]] = {}
    for cluster in fleet:
        by_number.setdefault(cluster.wave, []).append(cluster)
    return tuple(
        Wave(number, tuple(sorted(clusters, key=lambda c: c.name)))
        for number, clusters in sorted(by_number.items())
    )


def channels_to_poll(fleet: Sequence[Cluster], variable_channels: Sequence[str]) -> tuple[str, ...]:
    """Each distinct channel the fleet follows, once: a cluster's own, or the Variable's for a cluster
    without one (the default cluster: so a single-cluster installation polls exactly the Variable's)."""
    return tuple(dict.fromkeys(ch for c in fleet for ch in ([c.channel] if c.channel else variable_channels)))


def followers(fleet: Sequence[Cluster], variable_channels: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Channel -> the clusters that follow it (a cluster without a channel follows the Variable's)."""
    out: dict[str, set[str]] = {channel: set() for channel in channels_to_poll(fleet, variable_channels)}
    for cluster in fleet:
        for channel in [cluster.channel] if cluster.channel else variable_channels:
            out[channel].add(cluster.name)
    return {channel: tuple(sorted(names)) for channel, names in out.items()}


def poll_plan(
    fleet: Sequence[Cluster], variable_channels: Sequence[str]
) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]] | None]:
    """The channels the release trigger polls, and who follows each (None for the default cluster:
    its events carry no cluster names, exactly as before fleets)."""
    channels = channels_to_poll(fleet, variable_channels)
    return channels, None if is_default(fleet) else followers(fleet, variable_channels)


def repository_of(cluster: Cluster, run_repository: str) -> str:
    """Where the cluster's operator pulls images from: its own target repository, else the run's."""
    return cluster.target_repository or run_repository
