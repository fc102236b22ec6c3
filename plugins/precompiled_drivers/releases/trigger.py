"""The event trigger: polls the OpenShift update graph and fires one event per new release.

It runs in the triggerer as the ``AssetWatcher`` of the ``openshift-releases`` Asset (see
``releases.schedule.release_asset``). Every event becomes an asset event whose ``extra["payload"]`` is the
release dict (version, arch, channel, payload, digest); the DAG reads them from ``triggering_asset_events``.

Durable state: what was already reported lives in Airflow's asset state store (Airflow 3.3 injects
``self.asset_state_store`` into a ``BaseEventTrigger`` that watches an asset), under ``state_key``. It is
scoped to the asset, not to the trigger row, so a triggerer restart, a move to another triggerer or a
change of the trigger's kwargs keeps it.

Ordering: an event is handed to the triggerer first and the state is written ``commit_delay`` seconds
later, once the triggerer has had time to store the event (it syncs events about every second). If the
process dies in between, the release is reported again after the restart rather than lost: a repeated run
rebuilds nothing, since existing image tags are skipped, while a lost one would leave nodes without images.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from precompiled_drivers import fleet
from precompiled_drivers.releases.client import GraphClient
from precompiled_drivers.releases.graph import Release
from precompiled_drivers.releases.seen import SeenReleases, poll_new_releases
from precompiled_drivers.releases.variables import (
    ASSET_NAME,
    STATE_KEY,
    VAR_ARCHES,
    VAR_CA_BUNDLE,
    VAR_CHANNELS,
    VAR_FIRST_SIGHT,
    VAR_GRAPH_URL,
    VAR_POLL_INTERVAL,
    DiscoverySettings,
    load_settings,
    settings_from_values,
)
from precompiled_drivers.settings import installation

# plugins/ is on the triggerer's sys.path, so this imports there as it does in the DAG.
CLASSPATH = "precompiled_drivers.releases.trigger.NewReleaseTrigger"
# Wait this long before polling again when the settings themselves are unusable.
SETTINGS_RETRY_SECONDS = 300.0


class NewReleaseTrigger(BaseEventTrigger):
    """Poll the update graph for the followed channels and arches; yield one event per new release.

    Every setting left as ``None`` is read from the Airflow Variables at each poll (see
    ``precompiled_drivers.releases.variables``), so a Variable change applies on the next poll without a DAG
    change. Explicit values win over Variables. Graph and settings errors are logged and retried on the
    next poll; they never fire an event and never end the trigger.
    """

    def __init__(
        self,
        *,
        graph_url: str | None = None,
        channels: list[str] | None = None,
        arches: list[str] | None = None,
        poll_interval: float | None = None,
        first_sight: str | None = None,
        ca_bundle: str | None = None,
        state_key: str = STATE_KEY,
        asset_name: str = ASSET_NAME,
        commit_delay: float = 5.0,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 2.0,
        clusters: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        self.graph_url = graph_url
        self.channels = list(channels) if channels is not None else None
        self.arches = list(arches) if arches is not None else None
        self.poll_interval = poll_interval
        self.first_sight = first_sight
        self.ca_bundle = ca_bundle
        self.state_key = state_key
        self.asset_name = asset_name
        self.commit_delay = commit_delay
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        # The fleet (fleet.Cluster dicts); None: the installation's, read from PRECOMPILED_DRIVERS_* in the
        # triggerer's environment at every poll, as the Variables are.
        self.clusters = [dict(c) for c in clusters] if clusters is not None else None
        # Hooks for tests: how to wait, and where state lives when no asset state store is injected.
        self._sleep = asyncio.sleep
        self._memory_state: Any = None
        self._unsaved: dict[str, Any] | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Classpath importable in the triggerer (``plugins/`` is on its ``sys.path``) and plain kwargs.

        ``clusters`` only when pinned, so an installation without a pinned fleet keeps its trigger identity.
        """
        pinned = {} if self.clusters is None else {"clusters": self.clusters}
        return (
            CLASSPATH,
            {
                **pinned,
                "graph_url": self.graph_url,
                "channels": self.channels,
                "arches": self.arches,
                "poll_interval": self.poll_interval,
                "first_sight": self.first_sight,
                "ca_bundle": self.ca_bundle,
                "state_key": self.state_key,
                "asset_name": self.asset_name,
                "commit_delay": self.commit_delay,
                "timeout": self.timeout,
                "retries": self.retries,
                "backoff": self.backoff,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll forever: settings -> state -> graphs -> events -> state, then sleep ``poll_interval``."""
        interval: float | None = self.poll_interval
        while True:
            try:
                settings = await self._settings()
                interval = settings.poll_interval
                channels, followers = fleet.poll_plan(self._fleet(), settings.channels)
            except Exception as exc:
                self.log.error("release discovery settings are invalid, retrying later: %s", exc)
                settings = None
            if settings is not None:
                state = await self._load_state()
                new = None if state is None else await self._poll(settings, state, channels, followers)
                if state is not None and new is not None:
                    for release in new:
                        self.log.info("new OpenShift release %s (%s) in %s%s", *_describe(release))
                        yield TriggerEvent(release.to_dict())
                    if new and self.commit_delay > 0:
                        await self._sleep(self.commit_delay)
                    await self._save_state(state)
            await self._sleep(interval or SETTINGS_RETRY_SECONDS)

    async def _settings(self) -> DiscoverySettings:
        explicit = {
            VAR_GRAPH_URL: self.graph_url,
            VAR_CHANNELS: _as_json(self.channels),
            VAR_ARCHES: _as_json(self.arches),
            VAR_POLL_INTERVAL: _as_text(self.poll_interval),
            VAR_FIRST_SIGHT: self.first_sight,
            VAR_CA_BUNDLE: self.ca_bundle,
        }
        if all(v is not None for k, v in explicit.items() if k != VAR_CA_BUNDLE):
            # Fully pinned: no Variable lookups at all.
            return settings_from_values(explicit)
        # Variable.get is synchronous; in the triggerer it talks to the supervisor from this worker thread.
        from_vars: DiscoverySettings = await asyncio.to_thread(load_settings)
        merged = {
            VAR_GRAPH_URL: from_vars.graph_url,
            VAR_CHANNELS: _as_json(list(from_vars.channels)),
            VAR_ARCHES: _as_json(list(from_vars.arches)),
            VAR_POLL_INTERVAL: _as_text(from_vars.poll_interval),
            VAR_FIRST_SIGHT: from_vars.first_sight,
            VAR_CA_BUNDLE: from_vars.ca_bundle,
        }
        merged.update({k: v for k, v in explicit.items() if v is not None})
        return settings_from_values(merged)

    def _fleet(self) -> tuple[fleet.Cluster, ...]:
        """The pinned fleet, else the installation's (ValidationError names the bad entry)."""
        if self.clusters is None:
            return installation().fleet()
        return fleet.parse_fleet(json.dumps(self.clusters), installation().kubernetes_conn_id)

    async def _poll(
        self,
        settings: DiscoverySettings,
        state: SeenReleases,
        channels: Sequence[str],
        followers: Mapping[str, Sequence[str]] | None,
    ) -> list[Release] | None:
        """New releases (``state`` updated), or None when the poll broke off and ``state`` must be dropped."""
        client = GraphClient(
            settings.graph_url,
            timeout=self.timeout,
            retries=self.retries,
            backoff=self.backoff,
            ca_bundle=settings.ca_bundle,
        )
        try:
            # requests is blocking (and retries with sleeps): keep it off the triggerer's event loop.
            new, errors = await asyncio.to_thread(
                poll_new_releases,
                client,
                channels,
                settings.arches,
                state,
                first_sight=settings.first_sight,
                followers=followers,
            )
        except Exception:
            self.log.exception("unexpected error while polling the update graph; will retry")
            return None
        finally:
            client.close()
        for exc in errors:
            self.log.warning("update graph unavailable, will retry next poll: %s", exc)
        return new

    def _store(self) -> Any:
        """This asset's accessor in the injected asset state store, or None when nothing was injected."""
        store = self.asset_state_store
        if store is None:
            return None
        from airflow.sdk import Asset

        try:
            return store[Asset.ref(name=self.asset_name)]
        except KeyError:
            # Watching a single asset under another name: the accessors object serves that one directly.
            return store

    async def _load_state(self) -> SeenReleases | None:
        """The persisted state, or None when it cannot be read (then this poll is skipped, not guessed)."""
        if self._unsaved is not None:
            # The last save failed: this copy is newer than the store's.
            return SeenReleases.from_json(self._unsaved)
        try:
            store = self._store()
            if store is None:
                if self._memory_state is None:
                    self.log.warning("no asset state store injected: release state is kept in memory only")
                raw = self._memory_state
            else:
                raw = await store.aget(self.state_key)
        except Exception as exc:
            self.log.error("cannot read release state %r, skipping this poll: %s", self.state_key, exc)
            return None
        try:
            return SeenReleases.from_json(raw)
        except ValueError as exc:
            # Unreadable state is reset, which baselines again: no repeats, at worst a missed release.
            self.log.error("release state %r is unreadable, starting over: %s", self.state_key, exc)
            return SeenReleases.empty()

    async def _save_state(self, state: SeenReleases) -> None:
        doc = state.to_json()
        try:
            store = self._store()
            if store is None:
                self._memory_state = doc
            else:
                await store.aset(self.state_key, doc)
            self._unsaved = None
        except Exception as exc:
            self.log.error("cannot save release state %r, will retry: %s", self.state_key, exc)
            self._unsaved = doc


def _describe(release: Release) -> tuple[str, str, str, str]:
    clusters = f" for {', '.join(release.clusters)}" if release.clusters else ""
    return release.version, release.arch, release.channel or "?", clusters


def _as_json(value: list[str] | None) -> str | None:
    return None if value is None else json.dumps(value)


def _as_text(value: float | None) -> str | None:
    return None if value is None else str(value)
