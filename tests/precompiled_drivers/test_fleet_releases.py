"""The update graph polled once per channel across the fleet: one event per new release, naming every
cluster that follows a channel listing it (the trigger, the cron poll and the events -> targets side)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable

import pytest
from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor
from test_discovery import DictStore, _event, _release
from test_releases import GraphServer, graph_doc
from test_trigger import FakeSupervisor
from test_trigger import make_trigger as trigger_for
from test_trigger import server as server
from test_trigger import supervisor as supervisor

from precompiled_drivers.fleet import Cluster
from precompiled_drivers.releases.graph import Release
from precompiled_drivers.releases.schedule import event_clusters, poll_from_task, targets_from_events
from precompiled_drivers.releases.trigger import NewReleaseTrigger
from precompiled_drivers.releases.variables import DiscoverySettings

FLEET = [
    {"name": "dev", "conn_id": "k8s_dev", "channel": "fast-4.8", "wave": 1},
    {"name": "prod-a", "conn_id": "k8s_prod_a", "channel": "stable-4.8", "wave": 2},
    {"name": "prod-b", "conn_id": "k8s_prod_b", "channel": "stable-4.8", "wave": 2},
]


def make_trigger(server: GraphServer, **kwargs: object) -> NewReleaseTrigger:
    """test_trigger's trigger, following the Variable's channel eus-4.8, which no cluster of FLEET follows."""
    return trigger_for(server, **{"channels": ["eus-4.8"], **kwargs})


def drive(
    trigger: NewReleaseTrigger, steps: list[Callable[[], None]], server: GraphServer
) -> list[list[dict]]:
    """Apply steps[i] before poll i; per poll, the event payloads and (in ``requests``) the graph fetches."""
    per_poll: list[list[dict]] = [[]]
    pending = iter(steps[1:])
    fetched: list[int] = []

    async def fake_sleep(seconds: float) -> None:
        fetched.append(len(server.requests))
        step = next(pending, None)
        if step is None:
            raise asyncio.CancelledError
        step()
        per_poll.append([])

    async def main() -> None:
        trigger._sleep = fake_sleep
        try:
            async for event in trigger.run():
                per_poll[-1].append(event.payload)
        except asyncio.CancelledError:
            pass

    steps[0]()
    asyncio.run(main())
    drive.fetched = fetched  # type: ignore[attr-defined]
    return per_poll


def channels(server: GraphServer, fast: list[str], stable: list[str]) -> Callable[[], None]:
    def step() -> None:
        server.set("fast-4.8", "amd64", graph_doc(["4.7.4", *fast]))
        server.set("stable-4.8", "amd64", graph_doc(["4.7.4", *stable]))

    return step


def test_each_channel_polled_once_one_event_per_release_naming_its_clusters(
    server: GraphServer, supervisor: FakeSupervisor
) -> None:
    got = drive(
        make_trigger(server, clusters=FLEET),
        [
            channels(server, ["4.8.2"], ["4.8.2"]),  # first sight: baseline
            channels(server, ["4.8.2", "4.8.3"], ["4.8.2"]),  # fast gets 4.8.3 first: dev follows it
            channels(server, ["4.8.2", "4.8.3"], ["4.8.2", "4.8.3"]),  # then stable: built already, no event
            channels(server, ["4.8.2", "4.8.3", "4.8.4"], ["4.8.2", "4.8.3", "4.8.4"]),  # both at once
        ],
        server,
    )
    assert [[(p["version"], p["clusters"]) for p in poll] for poll in got] == [
        [],
        [("4.8.3", ["dev"])],
        [],
        [("4.8.4", ["dev", "prod-a", "prod-b"])],  # one event for the three clusters
    ]
    # Two channels, each fetched once per poll; the Variable's eus-4.8 is followed by no cluster.
    assert drive.fetched == [2, 4, 6, 8]  # type: ignore[attr-defined]
    assert Counter(r["key"] for r in server.requests) == {
        ("fast-4.8", "amd64"): 4,
        ("stable-4.8", "amd64"): 4,
    }
    assert Release.from_dict(got[3][0]).clusters == ("dev", "prod-a", "prod-b")


def test_the_installations_fleet_is_read_from_the_environment_at_every_poll(
    server: GraphServer,
    supervisor: FakeSupervisor,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setenv("PRECOMPILED_DRIVERS_CLUSTERS", json.dumps([{**FLEET[0], "channel": "fast"}]))
    got = drive(
        make_trigger(server),
        [
            channels(server, ["4.8.2"], ["4.8.2"]),  # invalid fleet: logged, nothing fetched
            lambda: monkeypatch.setenv("PRECOMPILED_DRIVERS_CLUSTERS", json.dumps(FLEET[:2])),
            channels(server, ["4.8.2", "4.8.3"], ["4.8.2", "4.8.3"]),
        ],
        server,
    )
    assert [[(p["version"], p["clusters"]) for p in poll] for poll in got] == [
        [],
        [],
        [("4.8.3", ["dev", "prod-a"])],
    ]
    assert drive.fetched[0] == 0  # type: ignore[attr-defined]
    logged = capsys.readouterr().out
    assert "PRECOMPILED_DRIVERS_CLUSTERS[0].channel: got 'fast'" in logged


def test_without_a_fleet_the_payload_and_the_trigger_are_as_before(
    server: GraphServer, supervisor: FakeSupervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PRECOMPILED_DRIVERS_CLUSTERS", raising=False)
    trigger = make_trigger(server, channels=["stable-4.8"])
    assert "clusters" not in trigger.serialize()[1]
    got = drive(trigger, [channels(server, [], ["4.8.2"]), channels(server, [], ["4.8.2", "4.8.3"])], server)
    assert [sorted(p) for poll in got for p in poll] == [["arch", "channel", "digest", "payload", "version"]]
    pinned = make_trigger(server, clusters=FLEET).serialize()[1]["clusters"]
    assert [Cluster.from_dict(c).name for c in pinned] == ["dev", "prod-a", "prod-b"]


def test_the_cron_poll_names_the_clusters_too(server: GraphServer) -> None:
    store = DictStore()
    settings = DiscoverySettings(channels=("eus-4.8",), graph_url=server.url)
    client = settings.client(retries=0, backoff=0)
    fleet = tuple(Cluster(**c) for c in FLEET)  # type: ignore[arg-type]
    channels(server, ["4.8.2"], ["4.8.2"])()
    assert poll_from_task(store, settings, client=client, clusters=fleet) == ([], [])
    channels(server, ["4.8.2"], ["4.8.2", "4.8.3"])()
    new, errors = poll_from_task(store, settings, client=client, clusters=fleet)
    assert [(r.version, r.clusters) for r in new] == [("4.8.3", ("prod-a", "prod-b"))] and errors == []
    assert {r["key"][0] for r in server.requests} == {"fast-4.8", "stable-4.8"}


def test_events_become_targets_with_the_union_of_their_clusters() -> None:
    fleet_event = Release("4.8.4", "x86_64", "fast-4.8", clusters=("dev",)).to_dict()
    events = TriggeringAssetEventsAccessor.build(
        [
            _event({**_release("4.8.4", channel="fast-4.8"), "clusters": ["dev"]}),
            _event({**_release("4.8.4"), "clusters": ["prod-b", "prod-a"]}, when=1),
            _event(_release("4.8.3"), when=2),  # a single-cluster event names none
        ]
    )
    targets = targets_from_events(events)
    assert [(t.version, t.channel, t.clusters) for t in targets] == [
        ("4.8.3", "stable-4.8", ()),
        ("4.8.4", "fast-4.8", ("dev", "prod-a", "prod-b")),
    ]
    assert event_clusters(targets) == {("4.8.4", "x86_64"): ("dev", "prod-a", "prod-b")}
    assert fleet_event["clusters"] == ["dev"]


@pytest.mark.parametrize("clusters", ["dev", [1], {"dev": 1}])
def test_a_payload_with_malformed_clusters_is_refused(clusters: object) -> None:
    with pytest.raises(ValueError, match="'clusters' must be a list of cluster names"):
        Release.from_dict({"version": "4.8.4", "arch": "x86_64", "clusters": clusters})
