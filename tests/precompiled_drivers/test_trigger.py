"""NewReleaseTrigger driven directly with asyncio over a sequence of served graph states.

The graph comes from a local HTTP server (127.0.0.1). State goes through Airflow's real
``AssetStateStoreAccessors`` (what the triggerer injects), whose supervisor channel is replaced by
``FakeSupervisor``: a dict standing in for the asset_state_store table, so a new trigger instance over the
same dict is a triggerer restart. Time is clock-free: the trigger's sleep hook serves the next graph state.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType
from airflow.sdk.execution_time import task_runner
from airflow.sdk.execution_time.comms import (
    AssetStateStoreResult,
    ErrorResponse,
    GetAssetStateStoreByName,
    OKResponse,
    SetAssetStateStoreByName,
)
from airflow.sdk.execution_time.context import AssetStateStoreAccessors
from airflow.triggers.base import BaseEventTrigger
from test_ocp_version import candidate_graph
from test_releases import DIGESTS, GraphServer, graph_doc

from precompiled_drivers.releases.trigger import SETTINGS_RETRY_SECONDS, NewReleaseTrigger

ASSET = "openshift-releases"
POLL = 3600.0


class FakeSupervisor:
    """The triggerer supervisor's side of the asset state store: rows keyed by (asset name, key)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], str] = {}
        self.fail_reads = 0
        self.journal: list[tuple] = []

    async def asend(self, msg: object) -> object:
        if isinstance(msg, GetAssetStateStoreByName):
            if self.fail_reads:
                self.fail_reads -= 1
                return ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail={"message": "503"})
            if (msg.name, msg.key) not in self.rows:
                return ErrorResponse(error=ErrorType.ASSET_STORE_NOT_FOUND)
            return AssetStateStoreResult(value=json.loads(self.rows[(msg.name, msg.key)]))
        if isinstance(msg, SetAssetStateStoreByName):
            self.rows[(msg.name, msg.key)] = json.dumps(msg.value)  # stored as text, like the table
            self.journal.append(("state saved",))
            return OKResponse(ok=True)
        raise AssertionError(f"unexpected message {msg!r}")

    def state(self, key: str = "seen_releases") -> dict:
        return json.loads(self.rows[(ASSET, key)])


@pytest.fixture
def supervisor(monkeypatch: pytest.MonkeyPatch) -> FakeSupervisor:
    fake = FakeSupervisor()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", fake, raising=False)
    return fake


@pytest.fixture
def server():
    srv = GraphServer()
    yield srv
    srv.close()


def make_trigger(server: GraphServer, **kwargs: object) -> NewReleaseTrigger:
    """A trigger as the triggerer would run it: asset state store injected for the watched asset."""
    settings = {
        "graph_url": server.url,
        "channels": ["stable-4.8"],
        "arches": ["x86_64"],
        "poll_interval": POLL,
        "first_sight": "baseline",
        "commit_delay": 0,
        "retries": 0,
        "backoff": 0,
        "timeout": 2,
    }
    settings.update(kwargs)
    trigger = NewReleaseTrigger(**settings)
    trigger.asset_state_store = AssetStateStoreAccessors(inlets=[Asset(name=ASSET, uri=ASSET)])
    return trigger


def drive(
    trigger: NewReleaseTrigger, steps: list[Callable[[], None]], journal: list | None = None
) -> list[list[str]]:
    """Apply steps[i] before poll i; return the versions emitted at each poll (as ``version/arch``).

    Cancels the trigger (as a triggerer shutdown does) when it asks to sleep after the last poll.
    """
    journal = journal if journal is not None else []
    per_poll: list[list[str]] = [[]]
    pending = iter(steps[1:])

    async def fake_sleep(seconds: float) -> None:
        journal.append(("sleep", seconds))
        if seconds == trigger.commit_delay:
            return
        step = next(pending, None)
        if step is None:
            raise asyncio.CancelledError
        step()
        per_poll.append([])

    async def main() -> None:
        trigger._sleep = fake_sleep
        try:
            async for event in trigger.run():
                payload = event.payload
                journal.append(("event", payload["version"]))
                per_poll[-1].append(f"{payload['version']}/{payload['arch']}")
        except asyncio.CancelledError:
            pass

    steps[0]()
    asyncio.run(main())
    return per_poll


def serve(server: GraphServer, versions: list[str], channel: str = "stable-4.8", arch: str = "amd64"):
    """A step: the channel now lists ``versions`` (plus the older minor a real channel carries)."""
    return lambda: server.set(channel, arch, graph_doc(["4.7.3", "4.7.4", *versions]))


def fail(server: GraphServer, status: int = 503, body: bytes = b"unavailable", channel: str = "stable-4.8"):
    return lambda: server.queue(channel, "amd64", status, body, ctype="text/plain")


def test_sequence_first_sight_new_release_no_change_errors(server: GraphServer, supervisor: FakeSupervisor):
    trigger = make_trigger(server)
    got = drive(
        trigger,
        [
            serve(server, ["4.8.2", "4.8.3"]),  # first sight: baseline, no event
            serve(server, ["4.8.2", "4.8.3", "4.8.4"]),  # one new release
            lambda: None,  # no change
            fail(server, 503),  # graph error: nothing, keep polling
            fail(server, 200, b"<html>proxy login</html>"),  # malformed body: nothing
            serve(server, ["4.8.2", "4.8.3", "4.8.4", "4.7.5"]),  # older minor: not this channel's news
            serve(server, ["4.8.2", "4.8.3", "4.8.4", "4.7.5", "4.8.5"]),
        ],
    )
    assert got == [[], ["4.8.4/x86_64"], [], [], [], [], ["4.8.5/x86_64"]]
    assert supervisor.state() == {
        "schema": 1,
        "seen": {"x86_64": ["4.8.2", "4.8.3", "4.8.4", "4.8.5"]},
        "baselined": ["stable-4.8/x86_64"],
    }


def test_event_payload_is_the_release_dict(server: GraphServer, supervisor: FakeSupervisor):
    trigger = make_trigger(server)
    payloads: list[dict] = []

    async def main() -> None:
        calls = iter([serve(server, ["4.8.2", "4.8.3", "4.8.4"])])

        async def fake_sleep(_: float) -> None:
            step = next(calls, None)
            if step is None:
                raise asyncio.CancelledError
            step()

        trigger._sleep = fake_sleep
        try:
            async for event in trigger.run():
                payloads.append(event.payload)
        except asyncio.CancelledError:
            pass

    serve(server, ["4.8.2", "4.8.3"])()
    asyncio.run(main())
    assert payloads == [
        {
            "version": "4.8.4",
            "arch": "x86_64",
            "channel": "stable-4.8",
            "payload": "quay.io/openshift-release-dev/ocp-release@sha256:" + DIGESTS["4.8.4"],
            "digest": "sha256:" + DIGESTS["4.8.4"],
        }
    ]
    json.dumps(payloads)  # what the triggerer stores must be plain JSON


def test_restart_with_persisted_state_neither_repeats_nor_loses(
    server: GraphServer, supervisor: FakeSupervisor
) -> None:
    first = drive(make_trigger(server), [serve(server, ["4.8.2"]), serve(server, ["4.8.2", "4.8.3"])])
    assert first == [[], ["4.8.3/x86_64"]]
    # A new triggerer process: fresh trigger object, same asset state store rows.
    second = drive(
        make_trigger(server),
        [
            serve(server, ["4.8.2", "4.8.3"]),  # already reported before the restart: no repeat
            serve(server, ["4.8.2", "4.8.3", "4.8.4"]),  # appeared after: reported once
        ],
    )
    assert second == [[], ["4.8.4/x86_64"]]


def test_release_published_while_down_is_reported_after_restart(
    server: GraphServer, supervisor: FakeSupervisor
) -> None:
    assert drive(make_trigger(server), [serve(server, ["4.8.2"])]) == [[]]
    # 4.8.3 and 4.8.4 came out while no triggerer ran: the restarted trigger knows it has a baseline.
    assert drive(make_trigger(server), [serve(server, ["4.8.2", "4.8.3", "4.8.4"])]) == [
        ["4.8.3/x86_64", "4.8.4/x86_64"]
    ]


def test_state_is_written_after_the_events_with_a_settle_delay(
    server: GraphServer, supervisor: FakeSupervisor
) -> None:
    journal = supervisor.journal
    trigger = make_trigger(server, commit_delay=5.0)
    drive(trigger, [serve(server, ["4.8.2"]), serve(server, ["4.8.2", "4.8.3", "4.8.4"])], journal)
    after_baseline = journal.index(("sleep", POLL))
    assert journal[after_baseline + 1 :] == [
        ("event", "4.8.3"),
        ("event", "4.8.4"),
        ("sleep", 5.0),
        ("state saved",),
        ("sleep", POLL),
    ]


def test_shutdown_before_the_state_is_saved_repeats_rather_than_loses(
    server: GraphServer, supervisor: FakeSupervisor
) -> None:
    trigger = make_trigger(server, commit_delay=5.0)
    drive(trigger, [serve(server, ["4.8.2"])])

    async def killed_during_settle() -> list[str]:
        seen = []

        async def fake_sleep(seconds: float) -> None:
            raise asyncio.CancelledError  # the triggerer stops right after handing over the event

        trigger._sleep = fake_sleep
        try:
            async for event in trigger.run():
                seen.append(event.payload["version"])
        except asyncio.CancelledError:
            pass
        return seen

    serve(server, ["4.8.2", "4.8.3"])()
    assert asyncio.run(killed_during_settle()) == ["4.8.3"]
    assert "4.8.3" not in supervisor.state()["seen"]["x86_64"]
    assert drive(make_trigger(server), [lambda: None]) == [["4.8.3/x86_64"]]


def test_first_sight_latest_reports_newest_once(server: GraphServer, supervisor: FakeSupervisor) -> None:
    trigger = make_trigger(server, first_sight="latest")
    got = drive(trigger, [serve(server, ["4.8.2", "4.8.3", "4.8.4"]), lambda: None])
    assert got == [["4.8.4/x86_64"], []]


def test_channels_and_arches_one_event_per_version_and_arch(
    server: GraphServer, supervisor: FakeSupervisor
) -> None:
    def both(fast: list[str], stable: list[str]) -> Callable[[], None]:
        def step() -> None:
            for arch in ("amd64", "arm64"):
                serve(server, fast, "fast-4.8", arch)()
                serve(server, stable, "stable-4.8", arch)()

        return step

    trigger = make_trigger(server, channels=["fast-4.8", "stable-4.8"], arches=["x86_64", "aarch64"])
    got = drive(
        trigger,
        [
            both(["4.8.2"], ["4.8.2"]),
            both(["4.8.2", "4.8.3"], ["4.8.2"]),  # fast gets it first
            both(["4.8.2", "4.8.3"], ["4.8.2", "4.8.3"]),  # then stable: same images, no second run
        ],
    )
    assert got == [[], ["4.8.3/x86_64", "4.8.3/aarch64"], []]
    assert {r["key"] for r in server.requests} == {
        ("fast-4.8", "amd64"),
        ("fast-4.8", "arm64"),
        ("stable-4.8", "amd64"),
        ("stable-4.8", "arm64"),
    }


def test_channel_added_later_is_baselined(server: GraphServer, supervisor: FakeSupervisor) -> None:
    drive(make_trigger(server), [serve(server, ["4.8.2"])])
    serve(server, ["4.9.0", "4.9.1"], "stable-4.9")()
    got = drive(
        make_trigger(server, channels=["stable-4.8", "stable-4.9"]),
        [lambda: None, serve(server, ["4.9.0", "4.9.1", "4.9.2"], "stable-4.9")],
    )
    assert got == [[], ["4.9.2/x86_64"]]


def test_one_failing_channel_does_not_hide_another(server: GraphServer, supervisor: FakeSupervisor) -> None:
    trigger = make_trigger(server, channels=["stable-4.8", "stable-4.9"])
    got = drive(
        trigger,
        [
            lambda: (serve(server, ["4.8.2"])(), serve(server, ["4.9.0"], "stable-4.9")()),
            lambda: (fail(server, 500)(), serve(server, ["4.9.0", "4.9.1"], "stable-4.9")()),
            serve(server, ["4.8.2", "4.8.3"]),
        ],
    )
    assert got == [[], ["4.9.1/x86_64"], ["4.8.3/x86_64"]]


def test_graph_errors_are_logged_not_raised(
    server: GraphServer, supervisor: FakeSupervisor, capsys: pytest.CaptureFixture
) -> None:
    got = drive(make_trigger(server), [fail(server, 503), fail(server, 404), serve(server, ["4.8.2"])])
    assert got == [[], [], []]
    text = capsys.readouterr().out  # Airflow logs through structlog to stdout
    assert "HTTP 503" in text and "HTTP 404" in text and "channel=stable-4.8&arch=amd64" in text


def test_state_store_read_error_skips_the_poll(server: GraphServer, supervisor: FakeSupervisor) -> None:
    drive(make_trigger(server), [serve(server, ["4.8.2"])])
    supervisor.fail_reads = 1
    got = drive(make_trigger(server), [serve(server, ["4.8.2", "4.8.3"]), lambda: None])
    # Without the state the trigger cannot tell new from old: it waits instead of guessing.
    assert got == [[], ["4.8.3/x86_64"]]


def test_unreadable_state_starts_over_with_a_baseline(
    server: GraphServer, supervisor: FakeSupervisor
) -> None:
    supervisor.rows[(ASSET, "seen_releases")] = json.dumps({"something": "else"})
    got = drive(
        make_trigger(server), [serve(server, ["4.8.2", "4.8.3"]), serve(server, ["4.8.2", "4.8.3", "4.8.4"])]
    )
    assert got == [[], ["4.8.4/x86_64"]]


def test_without_state_store_keeps_state_in_memory(server: GraphServer) -> None:
    trigger = make_trigger(server)
    trigger.asset_state_store = None
    got = drive(trigger, [serve(server, ["4.8.2"]), serve(server, ["4.8.2", "4.8.3"]), lambda: None])
    assert got == [[], ["4.8.3/x86_64"], []]


def test_settings_come_from_variables_at_run_time(
    server: GraphServer, supervisor: FakeSupervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_PRECOMPILED_DRIVERS_GRAPH_URL", server.url)
    monkeypatch.setenv("AIRFLOW_VAR_PRECOMPILED_DRIVERS_CHANNELS", '["stable-4.9"]')
    monkeypatch.setenv("AIRFLOW_VAR_PRECOMPILED_DRIVERS_ARCHES", "aarch64")
    monkeypatch.setenv("AIRFLOW_VAR_PRECOMPILED_DRIVERS_POLL_INTERVAL", "120")
    trigger = NewReleaseTrigger(commit_delay=0, retries=0, backoff=0)  # what release_asset() builds
    trigger.asset_state_store = AssetStateStoreAccessors(inlets=[Asset(name=ASSET, uri=ASSET)])
    journal: list = []
    got = drive(
        trigger,
        [
            serve(server, ["4.9.0"], "stable-4.9", "arm64"),
            serve(server, ["4.9.0", "4.9.1"], "stable-4.9", "arm64"),
        ],
        journal,
    )
    assert got == [[], ["4.9.1/aarch64"]]
    assert ("sleep", 120.0) in journal


def test_invalid_variable_is_logged_and_retried(
    server: GraphServer,
    supervisor: FakeSupervisor,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_PRECOMPILED_DRIVERS_GRAPH_URL", server.url)
    monkeypatch.setenv("AIRFLOW_VAR_PRECOMPILED_DRIVERS_CHANNELS", "stable-4.8,latest")
    trigger = NewReleaseTrigger(commit_delay=0, retries=0, backoff=0)
    trigger.asset_state_store = AssetStateStoreAccessors(inlets=[Asset(name=ASSET, uri=ASSET)])
    journal: list = []
    got = drive(
        trigger,
        [
            serve(server, ["4.8.2"]),
            lambda: monkeypatch.setenv("AIRFLOW_VAR_PRECOMPILED_DRIVERS_CHANNELS", "stable-4.8"),
            serve(server, ["4.8.2", "4.8.3"]),
        ],
        journal,
    )
    assert got == [[], [], ["4.8.3/x86_64"]]
    logged = capsys.readouterr().out
    assert "precompiled_drivers_channels" in logged and "'latest'" in logged
    assert journal[0] == ("sleep", SETTINGS_RETRY_SECONDS)
    # nothing was fetched while the settings were invalid
    assert [r["key"] for r in server.requests] == [("stable-4.8", "amd64")] * 2


def test_serialize_round_trips_through_an_importable_classpath(server: GraphServer) -> None:
    from airflow.sdk._shared.module_loading import import_string

    trigger = make_trigger(server, channels=["stable-4.8", "eus-4.8"])
    classpath, kwargs = trigger.serialize()
    assert classpath == "precompiled_drivers.releases.trigger.NewReleaseTrigger"
    json.dumps(kwargs)
    rebuilt = import_string(classpath)(**kwargs)
    assert isinstance(rebuilt, BaseEventTrigger)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert BaseEventTrigger.hash(classpath, kwargs) == BaseEventTrigger.hash(*rebuilt.serialize())


def test_failed_state_save_is_kept_and_retried(server: GraphServer, supervisor: FakeSupervisor) -> None:
    real_asend = supervisor.asend
    failures = iter([True])  # the first save fails (API down), later ones succeed

    async def flaky(msg: object) -> object:
        if isinstance(msg, SetAssetStateStoreByName) and next(failures, False):
            # how the comms channel reports a failed API call: an error frame, raised by asend
            raise AirflowRuntimeError(ErrorResponse(error=ErrorType.API_SERVER_ERROR))
        return await real_asend(msg)

    supervisor.asend = flaky
    trigger = make_trigger(server)
    got = drive(trigger, [serve(server, ["4.8.2"]), serve(server, ["4.8.2", "4.8.3"]), lambda: None])
    # the baseline survived the failed save in memory: 4.8.2 is not reported as new, 4.8.3 once
    assert got == [[], ["4.8.3/x86_64"], []]
    assert supervisor.state()["seen"] == {"x86_64": ["4.8.2", "4.8.3"]}


def test_candidate_channel_with_ec_fc_rc_fires_in_semver_order(
    server: GraphServer, supervisor: FakeSupervisor
) -> None:
    """Engineering, feature and release candidates are read (one such node used to make the whole
    graph unreadable) and reported ec < fc < rc < GA, whatever order the graph lists them in."""
    channel = "candidate-4.20"
    first = ["4.19.10", "4.20.0-ec.2"]
    later = [*first, "4.20.0-rc.0", "4.20.0-fc.1", "4.20.0-ec.10", "4.20.0"]

    def doc(versions: list[str]) -> dict:
        return candidate_graph(versions, [], channel)

    trigger = make_trigger(server, channels=[channel])
    got = drive(
        trigger,
        [
            lambda: server.set(channel, "amd64", doc(first)),  # baseline
            lambda: server.set(channel, "amd64", doc(later)),
        ],
    )
    assert got == [[], ["4.20.0-ec.10/x86_64", "4.20.0-fc.1/x86_64", "4.20.0-rc.0/x86_64", "4.20.0/x86_64"]]
    # 4.19.10 is listed too (a channel carries the previous minor) but is not this channel's news.
    assert supervisor.state()["seen"]["x86_64"] == [
        "4.20.0-ec.2",
        "4.20.0-ec.10",
        "4.20.0-fc.1",
        "4.20.0-rc.0",
        "4.20.0",
    ]
