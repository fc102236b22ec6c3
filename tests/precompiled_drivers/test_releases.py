"""Update-graph parsing, channel filtering, look-ahead and the HTTP client against a local server.

The graph fixtures are transcribed from Cincinnati's recorded ``stable-4.8`` amd64 response (versions,
payload digests, the VSphereNodeNameChanges conditional edge group), trimmed to a handful of nodes.
``GraphServer`` and ``graph_doc`` are reused by test_trigger.py.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from precompiled_drivers.releases.client import GraphClient
from precompiled_drivers.releases.graph import (
    Graph,
    GraphError,
    Release,
    channel_minor,
    channel_releases,
    graph_arch,
    parse_graph,
    upgrade_targets,
)
from precompiled_drivers.releases.seen import SeenReleases

PAYLOAD = "quay.io/openshift-release-dev/ocp-release@sha256:"
# version -> payload digest, as recorded in the stable-4.8 amd64 graph.
DIGESTS = {
    "4.7.0": "d74b1cfa81f8c9cc23336aee72d8ae9c9905e62c4874b071317a078c316f8a70",
    "4.7.3": "edb08aaadf32f0b2e800f7e29e6f7a1b225211514401e92601ba94a971dec838",
    "4.7.4": "999a6a4bd731075e389ae601b373194c6cb2c7b4dadd1ad06ef607e86476b129",
    "4.8.2": "0e82d17ababc79b10c10c5186920232810aeccbccf2a74c691487090a2c98ebc",
    "4.8.3": "9232aeea4bf938571fdfad7085428bcac4ffdaffa5559209ad8bca20fa37a2f6",
    "4.8.4": "841535acc09ca8412cd17e8f7702eceda1cac688ccc281278f108675c30de270",
    "4.8.5": "7047acb946649cc1f54d98a1c28dd7b487fe91479aa52c13c971ea014a66c8a8",
}
VSPHERE_RISK = {
    "url": "https://bugzilla.redhat.com/show_bug.cgi?id=1942207#c3",
    "name": "VSphereNodeNameChanges",
    "message": "vSphere clusters leveraging the vSphere cloud provider may lose node names ...",
    "matchingRules": [
        {
            "type": "PromQL",
            "promql": {"promql": 'cluster_infrastructure_provider{type=~"VSphere|None"}'},
        }
    ],
}


def digest_of(version: str) -> str:
    """The recorded digest, or a stable made-up one for versions the recording does not have."""
    return DIGESTS.get(version) or hashlib.sha256(version.encode()).hexdigest()


def graph_doc(
    versions: list[str],
    edges: list[tuple[str, str]] = (),
    conditional: list[tuple[list[tuple[str, str]], list[dict]]] = (),
) -> dict:
    """A Cincinnati v1 document: nodes in a deliberately unsorted order, edges as index pairs."""
    order = sorted(versions, reverse=True)  # the API does not sort; text order is not version order
    idx = {v: i for i, v in enumerate(order)}
    return {
        "version": 1,
        "nodes": [
            {
                "version": v,
                "payload": PAYLOAD + digest_of(v),
                "metadata": {
                    "io.openshift.upgrades.graph.release.channels": "candidate-4.8,fast-4.8,stable-4.8",
                    "io.openshift.upgrades.graph.release.manifestref": "sha256:" + digest_of(v),
                    "url": "https://access.redhat.com/errata/RHBA-2021:0000",
                },
            }
            for v in order
        ],
        "edges": [[idx[a], idx[b]] for a, b in edges],
        "conditionalEdges": [
            {"edges": [{"from": a, "to": b} for a, b in pairs], "risks": risks}
            for pairs, risks in conditional
        ],
    }


STABLE_48 = graph_doc(
    ["4.7.0", "4.7.3", "4.7.4", "4.8.2", "4.8.3", "4.8.4"],
    edges=[
        ("4.7.0", "4.7.3"),
        ("4.8.2", "4.8.3"),
        ("4.8.2", "4.8.4"),
        ("4.8.3", "4.8.4"),
        ("4.7.4", "4.8.2"),
    ],
    conditional=[([("4.7.0", "4.7.4"), ("4.7.3", "4.7.4")], [VSPHERE_RISK])],
)


class GraphServer:
    """A local update-graph stand-in: per (channel, arch) a queue of one-shot replies, then a sticky one."""

    def __init__(self) -> None:
        self.sticky: dict[tuple[str, str], tuple[int, bytes, str, float]] = {}
        self.queued: dict[tuple[str, str], deque] = defaultdict(deque)
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                key = (query.get("channel", [""])[0], query.get("arch", [""])[0])
                with server.lock:
                    server.requests.append(
                        {"path": urlsplit(self.path).path, "key": key, "accept": self.headers.get("Accept")}
                    )
                    reply = server.queued[key].popleft() if server.queued[key] else server.sticky.get(key)
                status, body, ctype, delay = reply or (404, b'{"kind":"Error","reason":"NotFound"}', "", 0)
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Type", ctype or "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/upgrades_info/v1/graph"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def set(self, channel: str, arch: str, doc: object, *, status: int = 200) -> None:
        """Serve ``doc`` (JSON) for every later request of channel/arch (graph arch names)."""
        with self.lock:
            self.sticky[(channel, arch)] = (status, json.dumps(doc).encode(), "application/json", 0)

    def queue(
        self, channel: str, arch: str, status: int, body: bytes, *, ctype: str = "", delay: float = 0
    ) -> None:
        """Serve one reply before falling back to the sticky one."""
        with self.lock:
            self.queued[(channel, arch)].append((status, body, ctype, delay))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = GraphServer()
    yield srv
    srv.close()


# --- pure parts -----------------------------------------------------------------------------------


def test_graph_arch_maps_pipeline_names() -> None:
    assert graph_arch("x86_64") == "amd64"
    assert graph_arch("aarch64") == "arm64"
    assert graph_arch("multi") == "multi"
    with pytest.raises(ValueError, match="unknown arch 'ppc'"):
        graph_arch("ppc")


@pytest.mark.parametrize(
    ("channel", "minor"), [("stable-4.18", (4, 18)), ("eus-4.16", (4, 16)), ("candidate-4.20", (4, 20))]
)
def test_channel_minor(channel: str, minor: tuple[int, int]) -> None:
    assert channel_minor(channel) == minor


@pytest.mark.parametrize("channel", ["stable", "stable-4", "latest-4.18", "stable-4.18 ", "stable-4.18;x"])
def test_channel_minor_rejects(channel: str) -> None:
    with pytest.raises(ValueError, match="invalid channel"):
        channel_minor(channel)


def test_release_digest_and_round_trip() -> None:
    rel = Release("4.8.4", "x86_64", "stable-4.8", PAYLOAD + DIGESTS["4.8.4"])
    assert rel.digest == "sha256:" + DIGESTS["4.8.4"]
    assert Release("4.8.4", "x86_64", payload="quay.io/x/y:4.8.4").digest == ""
    data = rel.to_dict()
    assert data == {
        "version": "4.8.4",
        "arch": "x86_64",
        "channel": "stable-4.8",
        "payload": PAYLOAD + DIGESTS["4.8.4"],
        "digest": "sha256:" + DIGESTS["4.8.4"],
    }
    assert Release.from_dict(json.loads(json.dumps(data))) == rel
    with pytest.raises(ValueError, match="version"):
        Release.from_dict({"arch": "x86_64"})


def test_parse_graph_and_channel_filter_drops_older_minor() -> None:
    graph = parse_graph(STABLE_48, channel="stable-4.8", arch="x86_64")
    assert len(graph.nodes) == 6 and len(graph.edges) == 5
    assert all(n.arch == "x86_64" and n.channel == "stable-4.8" for n in graph.nodes)
    assert ("4.7.3", "4.7.4", ("VSphereNodeNameChanges",)) in graph.conditional_edges
    own = channel_releases(graph, "stable-4.8")
    assert [r.version for r in own] == ["4.8.2", "4.8.3", "4.8.4"]
    assert own[-1].digest == "sha256:" + DIGESTS["4.8.4"]


def test_channel_releases_orders_by_version_not_text() -> None:
    doc = graph_doc(["4.18.10", "4.18.9", "4.18.0-rc.1", "4.18.0", "4.17.30"])
    graph = parse_graph(doc, channel="stable-4.18", arch="aarch64")
    assert [r.version for r in channel_releases(graph, "stable-4.18")] == [
        "4.18.0-rc.1",
        "4.18.0",
        "4.18.9",
        "4.18.10",
    ]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "expected a JSON object"),
        ({"nodes": {}}, "'nodes' and 'edges' must be lists"),
        ({"nodes": [{"version": 4.8}], "edges": []}, "node 0: 'version' and 'payload' must be strings"),
        ({"nodes": [{"version": "4.8.2", "payload": ""}], "edges": [[0, 1]]}, "edge 0 .* not a pair"),
        ({"nodes": [], "edges": [], "conditionalEdges": [{"edges": [{"from": "4.8.2"}]}]}, "'from' and 'to'"),
        ({"nodes": [], "edges": [], "conditionalEdges": [{"edges": [], "risks": [{}]}]}, "'risks'"),
    ],
)
def test_parse_graph_rejects_malformed(doc: object, message: str) -> None:
    with pytest.raises(GraphError, match=message):
        parse_graph(doc, channel="stable-4.8", arch="x86_64")


def test_parse_graph_leaves_out_a_node_outside_the_version_grammar() -> None:
    # One such node used to make the whole graph unreadable (test_ocp_version.py has the edge cases).
    nodes = [{"version": "four", "payload": ""}, {"version": "4.8.2", "payload": ""}]
    doc = {"nodes": nodes, "edges": [[0, 1]]}
    graph = parse_graph(doc, channel="stable-4.8", arch="x86_64")
    assert [n.version for n in graph.nodes] == ["4.8.2"]
    assert graph.edges == ()
    assert graph.skipped == ("four",)


def test_parse_graph_accepts_missing_conditional_edges() -> None:
    doc = {"nodes": [{"version": "4.8.2", "payload": PAYLOAD + DIGESTS["4.8.2"]}], "edges": []}
    assert parse_graph(doc, channel="stable-4.8", arch="x86_64").conditional_edges == ()


def test_upgrade_targets_newest_first_with_conditional_flag() -> None:
    graph = parse_graph(STABLE_48, channel="stable-4.8", arch="x86_64")
    got = [(r.version, cond) for r, cond in upgrade_targets(graph, "4.7.0", limit=5)]
    assert got == [("4.7.4", True), ("4.7.3", False)]
    assert [(r.version, c) for r, c in upgrade_targets(graph, "4.8.2", limit=5)] == [
        ("4.8.4", False),
        ("4.8.3", False),
    ]
    # crossing to the next minor is exactly the look-ahead we want
    assert [r.version for r, _ in upgrade_targets(graph, "4.7.4", limit=5)] == ["4.8.2"]


def test_upgrade_targets_bounds_and_options() -> None:
    graph = parse_graph(STABLE_48, channel="stable-4.8", arch="x86_64")
    assert [r.version for r, _ in upgrade_targets(graph, "4.8.2", limit=1)] == ["4.8.4"]
    assert upgrade_targets(graph, "4.8.2", limit=0) == []
    assert [r.version for r, _ in upgrade_targets(graph, "4.7.0", limit=5, include_conditional=False)] == [
        "4.7.3"
    ]
    assert upgrade_targets(graph, "4.8.4", limit=3) == []  # newest: nowhere to go
    assert upgrade_targets(graph, "4.6.1", limit=3) == []  # unknown version: nothing, not an error
    with pytest.raises(ValueError, match="limit"):
        upgrade_targets(graph, "4.8.2", limit=-1)


def test_upgrade_target_payload_comes_from_node() -> None:
    graph = parse_graph(STABLE_48, channel="stable-4.8", arch="x86_64")
    (rel, cond), *_ = upgrade_targets(graph, "4.7.3", limit=3)
    assert (rel.version, cond, rel.digest) == ("4.7.4", True, "sha256:" + DIGESTS["4.7.4"])


def test_graph_is_hashable_value() -> None:
    g1 = parse_graph(STABLE_48, channel="stable-4.8", arch="x86_64")
    g2 = parse_graph(json.loads(json.dumps(STABLE_48)), channel="stable-4.8", arch="x86_64")
    assert isinstance(g1, Graph) and g1 == g2 and hash(g1) == hash(g2)


# --- HTTP client against 127.0.0.1 ----------------------------------------------------------------


def test_fetch_sends_query_and_accept_and_filters(server: GraphServer) -> None:
    server.set("stable-4.8", "amd64", STABLE_48)
    graph = GraphClient(server.url, backoff=0).fetch("stable-4.8", "x86_64")
    assert [r.version for r in channel_releases(graph, "stable-4.8")] == ["4.8.2", "4.8.3", "4.8.4"]
    assert server.requests == [
        {"path": "/api/upgrades_info/v1/graph", "key": ("stable-4.8", "amd64"), "accept": "application/json"}
    ]


def test_fetch_maps_aarch64_to_arm64(server: GraphServer) -> None:
    server.set("fast-4.8", "arm64", graph_doc(["4.8.5"]))
    graph = GraphClient(server.url, backoff=0).fetch("fast-4.8", "aarch64")
    assert [(r.version, r.arch) for r in graph.nodes] == [("4.8.5", "aarch64")]


def test_fetch_retries_503_then_succeeds(server: GraphServer) -> None:
    server.set("stable-4.8", "amd64", STABLE_48)
    server.queue("stable-4.8", "amd64", 503, b"upstream unavailable", ctype="text/plain")
    server.queue("stable-4.8", "amd64", 503, b"upstream unavailable", ctype="text/plain")
    sleeps: list[float] = []
    client = GraphClient(server.url, retries=3, backoff=0.5, sleep=sleeps.append)
    assert len(client.fetch("stable-4.8", "x86_64").nodes) == 6
    assert sleeps == [0.5, 1.0]  # exponential backoff
    assert len(server.requests) == 3


def test_fetch_gives_up_after_retries(server: GraphServer) -> None:
    for _ in range(3):
        server.queue("stable-4.8", "amd64", 503, b"<html>Service Unavailable</html>", ctype="text/html")
    client = GraphClient(server.url, retries=2, backoff=0)
    with pytest.raises(GraphError) as err:
        client.fetch("stable-4.8", "x86_64")
    assert err.value.status == 503
    assert "channel=stable-4.8&arch=amd64" in str(err.value) and "HTTP 503" in str(err.value)
    assert "Service Unavailable" in str(err.value) and "3 attempts" in str(err.value)


def test_fetch_404_is_not_retried(server: GraphServer) -> None:
    client = GraphClient(server.url, retries=3, backoff=0)
    with pytest.raises(GraphError) as err:
        client.fetch("stable-4.99", "x86_64")
    assert err.value.status == 404 and err.value.url == client.url_for("stable-4.99", "amd64")
    assert client.url_for("stable-4.99", "amd64") in str(err.value) and "NotFound" in str(err.value)
    assert len(server.requests) == 1


def test_fetch_malformed_body(server: GraphServer) -> None:
    server.queue("stable-4.8", "amd64", 200, b"<html>captive portal</html>", ctype="text/html")
    client = GraphClient(server.url, retries=3, backoff=0)
    with pytest.raises(GraphError, match=r"not JSON .*text/html.*captive portal") as err:
        client.fetch("stable-4.8", "x86_64")
    assert server.url in str(err.value)


def test_fetch_json_of_wrong_shape(server: GraphServer) -> None:
    server.set("stable-4.8", "amd64", {"nodes": "nope"})
    with pytest.raises(GraphError, match="'nodes' and 'edges' must be lists"):
        GraphClient(server.url, backoff=0).fetch("stable-4.8", "x86_64")


def test_fetch_timeout_is_retried_then_reported(server: GraphServer) -> None:
    server.set("stable-4.8", "amd64", STABLE_48)
    server.queue("stable-4.8", "amd64", 200, b"{}", delay=1.0)
    client = GraphClient(server.url, timeout=0.2, retries=1, backoff=0)
    assert len(client.fetch("stable-4.8", "x86_64").nodes) == 6  # the retry got the sticky reply

    server.queue("stable-4.8", "amd64", 200, b"{}", delay=1.0)
    with pytest.raises(GraphError, match=r"Timeout.*1 attempts"):
        GraphClient(server.url, timeout=0.2, retries=0, backoff=0).fetch("stable-4.8", "x86_64")


def test_connection_refused_is_a_graph_error() -> None:
    srv = GraphServer()
    url = srv.url
    srv.close()
    with pytest.raises(GraphError, match="ConnectionError"):
        GraphClient(url, retries=1, backoff=0).fetch("stable-4.8", "x86_64")


def test_client_validates_inputs() -> None:
    with pytest.raises(ValueError, match="http"):
        GraphClient("ftp://mirror/graph")
    with pytest.raises(ValueError, match="invalid channel"):
        GraphClient("http://127.0.0.1:9/graph").fetch("stable", "x86_64")


def test_ca_bundle_is_passed_per_request(monkeypatch: pytest.MonkeyPatch, server: GraphServer) -> None:
    # REQUESTS_CA_BUNDLE would override a Session-level verify; the client must pass it per request.
    server.set("stable-4.8", "amd64", STABLE_48)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/env-bundle.pem")
    client = GraphClient(server.url, ca_bundle="/etc/mirror-ca.pem", backoff=0)
    seen: dict = {}
    real_get = client._session.get

    def spy(url: str, **kwargs: object):
        seen.update(kwargs)
        return real_get(url, **kwargs)

    monkeypatch.setattr(client._session, "get", spy)
    client.fetch("stable-4.8", "x86_64")
    assert seen["verify"] == "/etc/mirror-ca.pem"


# --- seen-release bookkeeping (the trigger's durable state) ----------------------------------------


def _rels(*versions: str, arch: str = "x86_64", channel: str = "stable-4.8") -> list[Release]:
    return [Release(v, arch, channel, PAYLOAD + digest_of(v)) for v in versions]


def test_seen_releases_baseline_then_new_only() -> None:
    state = SeenReleases.empty()
    assert state.observe("stable-4.8", "x86_64", _rels("4.8.2", "4.8.3"), first_sight="baseline") == []
    assert state.observe("stable-4.8", "x86_64", _rels("4.8.2", "4.8.3"), first_sight="baseline") == []
    new = state.observe("stable-4.8", "x86_64", _rels("4.8.2", "4.8.3", "4.8.4"), first_sight="baseline")
    assert [r.version for r in new] == ["4.8.4"]


def test_seen_releases_latest_mode_and_shared_versions_across_channels() -> None:
    state = SeenReleases.empty()
    first = state.observe("fast-4.8", "x86_64", _rels("4.8.2", "4.8.3"), first_sight="latest")
    assert [r.version for r in first] == ["4.8.3"]
    # stable lists the same versions later: already known for this arch, not news
    assert state.observe("stable-4.8", "x86_64", _rels("4.8.2", "4.8.3"), first_sight="latest") == []
    # another arch is its own image set
    other = state.observe("fast-4.8", "aarch64", _rels("4.8.3", arch="aarch64"), first_sight="latest")
    assert [(r.version, r.arch) for r in other] == [("4.8.3", "aarch64")]
    with pytest.raises(ValueError, match="first_sight"):
        state.observe("fast-4.8", "x86_64", [], first_sight="everything")


def test_seen_releases_json_round_trip_and_rejects_garbage() -> None:
    state = SeenReleases.empty()
    state.observe("stable-4.8", "x86_64", _rels("4.8.10", "4.8.9"), first_sight="baseline")
    doc = state.to_json()
    assert doc == {"schema": 1, "seen": {"x86_64": ["4.8.9", "4.8.10"]}, "baselined": ["stable-4.8/x86_64"]}
    assert SeenReleases.from_json(json.loads(json.dumps(doc))) == state
    assert SeenReleases.from_json(None) == SeenReleases.empty()
    for bad in ({"schema": 2}, {"schema": 1, "seen": {"x86_64": [1]}, "baselined": []}, "x"):
        with pytest.raises(ValueError, match="unrecognised release state"):
            SeenReleases.from_json(bad)
