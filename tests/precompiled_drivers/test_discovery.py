"""The releases wing's Variables, the watched Asset, events -> targets, look-ahead and the cron poll."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, task
from airflow.sdk.api.datamodels._generated import AssetEventDagRunReference
from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor
from airflow.serialization.serialized_objects import DagSerialization
from test_releases import DIGESTS, PAYLOAD, STABLE_48, GraphServer, graph_doc

from precompiled_drivers.releases import variables
from precompiled_drivers.releases.client import DEFAULT_GRAPH_URL
from precompiled_drivers.releases.graph import Release
from precompiled_drivers.releases.schedule import (
    lookahead_releases,
    poll_from_task,
    release_asset,
    release_schedule,
    targets_from_events,
)
from precompiled_drivers.releases.trigger import NewReleaseTrigger
from precompiled_drivers.releases.variables import (
    ASSET_NAME,
    DiscoverySettings,
    SettingsError,
    load_settings,
    settings_from_values,
)


@pytest.fixture
def server():
    srv = GraphServer()
    yield srv
    srv.close()


# --- settings -------------------------------------------------------------------------------------


def test_defaults_when_no_variable_is_set() -> None:
    s = load_settings(lambda _name: None)
    assert s == DiscoverySettings(
        channels=("stable-4.18",),
        arches=("x86_64",),
        graph_url=DEFAULT_GRAPH_URL,
        poll_interval=3600.0,
        lookahead=True,
        lookahead_limit=3,
        first_sight="baseline",
        ca_bundle=None,
    )


def test_load_settings_reads_airflow_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_VAR_PRECOMPILED_DRIVERS_CHANNELS", '["stable-4.18", "eus-4.16", "stable-4.18"]'
    )
    monkeypatch.setenv("AIRFLOW_VAR_PRECOMPILED_DRIVERS_ARCHES", "x86_64, aarch64")
    monkeypatch.setenv("AIRFLOW_VAR_PRECOMPILED_DRIVERS_GRAPH_URL", "https://osus.mirror.example:8443/graph")
    monkeypatch.setenv("AIRFLOW_VAR_PRECOMPILED_DRIVERS_GRAPH_CA_BUNDLE", "/etc/pki/mirror-ca.pem")
    monkeypatch.setenv("AIRFLOW_VAR_PRECOMPILED_DRIVERS_POLL_INTERVAL", "900")
    monkeypatch.setenv("AIRFLOW_VAR_PRECOMPILED_DRIVERS_LOOKAHEAD", "false")
    monkeypatch.setenv("AIRFLOW_VAR_PRECOMPILED_DRIVERS_LOOKAHEAD_LIMIT", "5")
    monkeypatch.setenv("AIRFLOW_VAR_PRECOMPILED_DRIVERS_FIRST_SIGHT", "latest")
    s = load_settings()
    assert s.channels == ("stable-4.18", "eus-4.16")  # deduplicated, order kept
    assert s.arches == ("x86_64", "aarch64")
    assert s.graph_url == "https://osus.mirror.example:8443/graph"
    assert s.ca_bundle == "/etc/pki/mirror-ca.pem"
    assert (s.poll_interval, s.lookahead, s.lookahead_limit, s.first_sight) == (900.0, False, 5, "latest")
    assert s.client().ca_bundle == "/etc/pki/mirror-ca.pem"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("precompiled_drivers_channels", "[stable-4.18]", "not valid JSON"),
        ("precompiled_drivers_channels", "[1, 2]", "JSON list of strings"),
        ("precompiled_drivers_channels", "stable-4.18,latest", "invalid channel 'latest'"),
        ("precompiled_drivers_channels", ",", "1 to 32 entries"),
        ("precompiled_drivers_arches", '["x86_64", "ppc64le"]', "unknown arch 'ppc64le'"),
        ("precompiled_drivers_graph_url", "api.openshift.com/graph", "http(s) URL"),
        ("precompiled_drivers_poll_interval", "hourly", "expected a number"),
        ("precompiled_drivers_poll_interval", "0", "between 1 and 604800"),
        ("precompiled_drivers_lookahead", "maybe", "true or false"),
        ("precompiled_drivers_lookahead_limit", "50", "between 0 and 20"),
        ("precompiled_drivers_first_sight", "all", "baseline"),
    ],
)
def test_invalid_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as err:
        settings_from_values({name: value})
    assert str(err.value).startswith(f"Variable {name}:")
    assert message in str(err.value)


def test_blank_variable_means_default() -> None:
    assert settings_from_values({"precompiled_drivers_channels": "  "}).channels == ("stable-4.18",)


# --- the Asset and its watcher (parse time) ---------------------------------------------------------


def test_release_asset_reads_nothing_at_parse_time(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_variables(*_a: object, **_k: object) -> None:
        raise AssertionError("Variable read at parse time")

    monkeypatch.setattr(variables, "_airflow_variable", no_variables)
    monkeypatch.setattr("airflow.sdk.Variable.get", no_variables)
    asset = release_asset()
    assert isinstance(asset, Asset) and asset.name == ASSET_NAME
    (watcher,) = asset.watchers
    assert isinstance(watcher.trigger, NewReleaseTrigger)
    classpath, kwargs = watcher.trigger.serialize()
    assert classpath == "precompiled_drivers.releases.trigger.NewReleaseTrigger"
    # settings are left to the triggerer (Variables at each poll), so the trigger identity is stable
    assert kwargs["channels"] is None and kwargs["graph_url"] is None and kwargs["poll_interval"] is None
    assert release_asset().watchers[0].trigger.serialize() == (classpath, kwargs)


def _dag_with(schedule: object) -> DAG:
    with DAG("discovery_probe", schedule=schedule, start_date=dt.datetime(2025, 1, 1, tzinfo=dt.UTC)) as dag:

        @task
        def plan() -> None:
            pass

        plan()
    return dag


def test_dag_scheduled_on_the_asset_serializes_the_watcher() -> None:
    doc = json.dumps(DagSerialization.to_dict(_dag_with(release_schedule())))
    assert '"classpath": "precompiled_drivers.releases.trigger.NewReleaseTrigger"' in doc
    assert '"name": "openshift-update-graph"' in doc and f'"name": "{ASSET_NAME}"' in doc


def test_cron_fallback_schedule() -> None:
    schedule = release_schedule("0 */6 * * *")
    assert isinstance(schedule, AssetOrTimeSchedule)
    doc = json.dumps(DagSerialization.to_dict(_dag_with(schedule)))
    assert "0 */6 * * *" in doc and "precompiled_drivers.releases.trigger.NewReleaseTrigger" in doc


# --- triggering_asset_events -> targets -------------------------------------------------------------


def _event(payload: object, *, when: int = 0) -> AssetEventDagRunReferenceResult:
    """An asset event as a task receives it; a watcher stores the trigger payload under extra.payload."""
    extra = {"from_trigger": True, "payload": payload} if payload is not None else {}
    ref = AssetEventDagRunReference(
        asset={"name": ASSET_NAME, "uri": ASSET_NAME, "extra": {}},
        extra=extra,
        source_task_id=None,
        source_dag_id=None,
        source_run_id=None,
        source_map_index=None,
        source_aliases=[],
        timestamp=dt.datetime(2026, 1, 1, 0, when, tzinfo=dt.UTC),
    )
    return AssetEventDagRunReferenceResult.from_asset_event_dag_run_reference(ref)


def _release(version: str, arch: str = "x86_64", channel: str = "stable-4.8") -> dict:
    return Release(version, arch, channel, PAYLOAD + DIGESTS.get(version, "0" * 64)).to_dict()


def test_targets_from_triggering_asset_events() -> None:
    events = TriggeringAssetEventsAccessor.build(
        [
            _event(_release("4.8.4")),
            _event(_release("4.8.3"), when=1),
            _event(_release("4.8.4", channel="fast-4.8"), when=2),  # same images: once
            _event(_release("4.8.4", arch="aarch64"), when=3),
            _event(None, when=4),  # a hand-made event without a release: skipped
        ]
    )
    assert events[Asset(ASSET_NAME)]  # the real accessor, keyed by the asset
    targets = targets_from_events(events)
    assert [(t.version, t.arch, t.channel) for t in targets] == [
        ("4.8.3", "x86_64", "stable-4.8"),
        ("4.8.4", "aarch64", "stable-4.8"),
        ("4.8.4", "x86_64", "stable-4.8"),
    ]
    assert targets[2].digest == "sha256:" + DIGESTS["4.8.4"]


def test_targets_from_plain_mappings_and_flat_extra() -> None:
    events = {"openshift-releases": [{"extra": {"version": "4.18.3", "arch": "x86_64"}}, {"extra": "junk"}]}
    assert targets_from_events(events) == [Release("4.18.3", "x86_64")]
    assert targets_from_events({}) == []


# --- look-ahead and the cron poll -------------------------------------------------------------------


def test_lookahead_from_the_clusters_channel(server: GraphServer) -> None:
    server.set("stable-4.8", "amd64", STABLE_48)
    settings = DiscoverySettings(channels=("stable-4.8",), graph_url=server.url, lookahead_limit=3)
    got = lookahead_releases("4.7.3", arch="x86_64", settings=settings, channel="stable-4.8")
    assert [(r.version, cond) for r, cond in got] == [("4.7.4", True)]
    got = lookahead_releases("4.8.2", arch="x86_64", settings=settings)  # channel from settings
    assert [r.version for r, _ in got] == ["4.8.4", "4.8.3"]


def test_lookahead_tries_followed_channels_until_one_knows_the_version(server: GraphServer) -> None:
    server.set("stable-4.9", "amd64", graph_doc(["4.9.0", "4.9.1"], edges=[("4.9.0", "4.9.1")]))
    server.set("stable-4.8", "amd64", STABLE_48)
    settings = DiscoverySettings(channels=("stable-4.9", "stable-4.8"), graph_url=server.url)
    got = lookahead_releases("4.8.3", arch="x86_64", settings=settings)
    assert [r.version for r, _ in got] == ["4.8.4"]
    assert lookahead_releases("4.6.9", arch="x86_64", settings=settings) == []


def test_lookahead_off_or_zero_makes_no_request(server: GraphServer) -> None:
    off = DiscoverySettings(graph_url=server.url, lookahead=False)
    zero = DiscoverySettings(graph_url=server.url, lookahead_limit=0)
    assert lookahead_releases("4.18.1", arch="x86_64", settings=off) == []
    assert lookahead_releases("4.18.1", arch="x86_64", settings=zero) == []
    assert server.requests == []


class DictStore:
    """The task-side accessor's get/set, over a dict."""

    def __init__(self) -> None:
        self.data: dict[str, object] = {}

    def get(self, key: str, default: object = None) -> object:
        return self.data.get(key, default)

    def set(self, key: str, value: object) -> None:
        self.data[key] = json.loads(json.dumps(value))


def test_poll_from_task_shares_the_trigger_state(server: GraphServer) -> None:
    store = DictStore()
    settings = DiscoverySettings(channels=("stable-4.8",), graph_url=server.url)
    client = settings.client(retries=0, backoff=0)
    server.set("stable-4.8", "amd64", graph_doc(["4.7.4", "4.8.2"]))
    assert poll_from_task(store, settings, client=client) == ([], [])
    server.set("stable-4.8", "amd64", graph_doc(["4.7.4", "4.8.2", "4.8.3"]))
    new, errors = poll_from_task(store, settings, client=client)
    assert [r.version for r in new] == ["4.8.3"] and errors == []
    assert store.data["seen_releases"]["seen"] == {"x86_64": ["4.8.2", "4.8.3"]}
    server.queue("stable-4.8", "amd64", 503, b"down")
    new, errors = poll_from_task(store, settings, client=client)
    assert new == [] and len(errors) == 1 and errors[0].status == 503
