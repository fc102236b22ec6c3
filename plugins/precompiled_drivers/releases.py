"""OpenShift update-graph (Cincinnati) client and the pure rules that read the graph.

The parsing, channel filtering and upgrade look-ahead are pure (no Airflow, no network). ``GraphClient`` is
the only part that talks HTTP; it is synchronous on purpose so it can be tested without asyncio and run in a
thread by the event trigger.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from precompiled_drivers import grammar as g
from precompiled_drivers import ocp_version

if TYPE_CHECKING:
    import requests

DEFAULT_GRAPH_URL = "https://api.openshift.com/api/upgrades_info/v1/graph"

# Pipeline arch (release image suffix, BUILD_ARCH) -> update-graph arch (Go names, plus multi-arch).
_GRAPH_ARCH = {**g.GO_ARCH, "multi": "multi"}
_EXCERPT_CHARS = 200

log = logging.getLogger(__name__)


class GraphError(Exception):
    """The update graph could not be fetched or does not have the documented shape."""

    def __init__(self, message: str, *, url: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


@dataclass(frozen=True)
class Release:
    """One OpenShift release as the pipeline sees it (``arch`` is the pipeline arch, e.g. ``x86_64``)."""

    version: str
    arch: str
    channel: str = ""
    payload: str = ""

    @property
    def digest(self) -> str:
        """The ``sha256:...`` digest of the payload pull spec, or ``""`` when it is not pinned by digest."""
        _, sep, digest = self.payload.rpartition("@")
        return digest if sep and g.DIGEST.matches(digest) else ""

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form (the trigger event payload): version, arch, channel, payload, digest."""
        return {**asdict(self), "digest": self.digest}

    @classmethod
    def from_dict(cls, data: object) -> Release:
        """Inverse of :meth:`to_dict`; ``digest`` is derived, so it is ignored. Raises ``ValueError``."""
        if not isinstance(data, dict):
            raise ValueError(f"release must be an object, got {type(data).__name__}")
        version, arch = data.get("version"), data.get("arch")
        if not isinstance(version, str) or not version or not isinstance(arch, str) or not arch:
            raise ValueError(f"release needs string 'version' and 'arch', got {data!r}")
        channel, payload = data.get("channel") or "", data.get("payload") or ""
        if not isinstance(channel, str) or not isinstance(payload, str):
            raise ValueError(f"release 'channel' and 'payload' must be strings, got {data!r}")
        return cls(version=version, arch=arch, channel=channel, payload=payload)


@dataclass(frozen=True)
class Graph:
    """A parsed update graph for one channel and arch.

    ``conditional_edges`` holds ``(from_version, to_version, risk_names)``: Cincinnati lists those updates
    apart from ``edges`` because they are recommended only for clusters the named risks do not match.
    """

    nodes: tuple[Release, ...]
    edges: tuple[tuple[int, int], ...]
    conditional_edges: tuple[tuple[str, str, tuple[str, ...]], ...]
    channel: str = ""
    arch: str = ""
    # Node versions outside the OpenShift grammar (ocp_version.py), left out with their edges.
    skipped: tuple[str, ...] = ()


def graph_arch(arch: str) -> str:
    """Map a pipeline arch to the update graph's name: ``x86_64``->``amd64``, ``aarch64``->``arm64``."""
    try:
        return _GRAPH_ARCH[arch]
    except KeyError:
        raise ValueError(f"unknown arch {arch!r}: expected one of {sorted(_GRAPH_ARCH)}") from None


def channel_minor(channel: str) -> tuple[int, int]:
    """``stable-4.18`` -> ``(4, 18)``; ``ValueError`` for names outside candidate|fast|stable|eus-X.Y."""
    if not g.CHANNEL.matches(channel):
        raise ValueError(f"invalid channel {channel!r}: expected {g.CHANNEL.expected}")
    major, minor = channel.split("-", 1)[1].split(".")
    return int(major), int(minor)


def parse_graph(doc: object, *, channel: str, arch: str) -> Graph:
    """Validate and parse a Cincinnati v1 graph document; ``arch`` is the pipeline arch given to nodes."""
    if not isinstance(doc, dict):
        raise GraphError(f"graph for {channel}/{arch}: expected a JSON object, got {type(doc).__name__}")
    nodes_doc, edges_doc = doc.get("nodes"), doc.get("edges")
    if not isinstance(nodes_doc, list) or not isinstance(edges_doc, list):
        raise GraphError(f"graph for {channel}/{arch}: 'nodes' and 'edges' must be lists")
    parsed = [_parse_node(i, node, channel=channel, arch=arch) for i, node in enumerate(nodes_doc)]
    raw_edges = [
        _parse_edge(i, edge, len(parsed), channel=channel, arch=arch) for i, edge in enumerate(edges_doc)
    ]
    # A node whose version is outside the grammar is left out with its edges, never the whole graph:
    # one unreadable node must not stop the channel's other releases from being seen.
    skipped = tuple(n.version for n in parsed if not ocp_version.is_valid(n.version))
    if skipped:
        log.warning(
            "graph for %s/%s: ignoring node(s) %s: not %s",
            channel,
            arch,
            ", ".join(repr(v)[:_EXCERPT_CHARS] for v in skipped),
            ocp_version.EXPECTED,
        )
    keep = [i for i, n in enumerate(parsed) if ocp_version.is_valid(n.version)]
    new_index = {old: new for new, old in enumerate(keep)}
    nodes = tuple(parsed[i] for i in keep)
    edges = tuple((new_index[a], new_index[b]) for a, b in raw_edges if a in new_index and b in new_index)
    # Older graph API versions have no conditionalEdges at all.
    cond_doc = doc.get("conditionalEdges") or []
    if not isinstance(cond_doc, list):
        raise GraphError(f"graph for {channel}/{arch}: 'conditionalEdges' must be a list")
    conditional = tuple(
        edge
        for i, group in enumerate(cond_doc)
        for edge in _parse_conditional(i, group, channel, arch)
        if ocp_version.is_valid(edge[0]) and ocp_version.is_valid(edge[1])
    )
    return Graph(
        nodes=nodes,
        edges=edges,
        conditional_edges=conditional,
        channel=channel,
        arch=arch,
        skipped=skipped,
    )


def _parse_node(index: int, node: object, *, channel: str, arch: str) -> Release:
    where = f"graph for {channel}/{arch}: node {index}"
    if not isinstance(node, dict):
        raise GraphError(f"{where}: expected an object")
    version, payload = node.get("version"), node.get("payload", "")
    if not isinstance(version, str) or not isinstance(payload, str):
        raise GraphError(f"{where}: 'version' and 'payload' must be strings")
    return Release(version=version, arch=arch, channel=channel, payload=payload)


def _parse_edge(index: int, edge: object, n_nodes: int, *, channel: str, arch: str) -> tuple[int, int]:
    ok = (
        isinstance(edge, list)
        and len(edge) == 2
        and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_nodes for i in edge)
    )
    if not ok:
        raise GraphError(f"graph for {channel}/{arch}: edge {index} {edge!r} is not a pair of node indexes")
    return edge[0], edge[1]


def _parse_conditional(
    index: int, group: object, channel: str, arch: str
) -> list[tuple[str, str, tuple[str, ...]]]:
    where = f"graph for {channel}/{arch}: conditionalEdges[{index}]"
    if not isinstance(group, dict) or not isinstance(group.get("edges"), list):
        raise GraphError(f"{where}: expected an object with an 'edges' list")
    risks = group.get("risks") or []
    if not isinstance(risks, list) or not all(
        isinstance(r, dict) and isinstance(r.get("name"), str) for r in risks
    ):
        raise GraphError(f"{where}: 'risks' must be a list of objects with a string 'name'")
    names = tuple(r["name"] for r in risks)
    out = []
    for edge in group["edges"]:
        if not (
            isinstance(edge, dict) and isinstance(edge.get("from"), str) and isinstance(edge.get("to"), str)
        ):
            raise GraphError(f"{where}: each edge needs string 'from' and 'to', got {edge!r}")
        out.append((edge["from"], edge["to"], names))
    return out


def channel_releases(graph: Graph, channel: str) -> list[Release]:
    """The channel's own releases: a channel also lists older minors, keep only ``X.Y`` of ``<kind>-X.Y``."""
    minor = channel_minor(channel)
    own = [n for n in graph.nodes if ocp_version.parse(n.version)[:2] == minor]
    return sorted(own, key=lambda n: ocp_version.sort_key(n.version))


def upgrade_targets(
    graph: Graph, current_version: str, *, limit: int, include_conditional: bool = True
) -> list[tuple[Release, bool]]:
    """Releases a cluster at ``current_version`` can update to next, newest first, at most ``limit``.

    The flag is True when the release is reached only through a conditional edge (a known risk applies
    to some clusters). Versions are taken from the whole graph, not just the channel's minor, because the
    next minor's updates are exactly what a cluster may pick up.
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    by_version = {n.version: n for n in graph.nodes}
    plain = {graph.nodes[t].version for f, t in graph.edges if graph.nodes[f].version == current_version}
    found: dict[str, bool] = dict.fromkeys(plain, False)
    if include_conditional:
        for src, dst, _risks in graph.conditional_edges:
            if src == current_version and dst not in found:
                found[dst] = True
    ordered = sorted(found, key=ocp_version.sort_key, reverse=True)[:limit]
    return [
        (by_version.get(v) or Release(version=v, arch=graph.arch, channel=graph.channel), found[v])
        for v in ordered
    ]


FIRST_SIGHT_MODES = ("baseline", "latest")


@dataclass
class SeenReleases:
    """What the trigger has already reported, kept in durable state between polls and restarts.

    ``seen`` maps a pipeline arch to versions already known (reported or baselined); ``baselined`` holds
    the ``channel/arch`` pairs polled at least once. A version is reported once per arch, whichever
    followed channel lists it first, because the images depend on version and arch only.
    """

    seen: dict[str, set[str]]
    baselined: set[str]

    @classmethod
    def empty(cls) -> SeenReleases:
        """No history: every channel/arch is at first sight."""
        return cls(seen={}, baselined=set())

    @classmethod
    def from_json(cls, data: object) -> SeenReleases:
        """Read :meth:`to_json` output; raises ``ValueError`` on anything else."""
        if data is None:
            return cls.empty()
        ok = (
            isinstance(data, dict)
            and data.get("schema") == 1
            and isinstance(data.get("seen"), dict)
            and all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in data["seen"].values())
            and isinstance(data.get("baselined"), list)
            and all(isinstance(x, str) for x in data["baselined"])
        )
        if not ok:
            raise ValueError(f"unrecognised release state: {str(data)[:_EXCERPT_CHARS]}")
        return cls(seen={k: set(v) for k, v in data["seen"].items()}, baselined=set(data["baselined"]))

    def to_json(self) -> dict[str, Any]:
        """JSON-ready, sorted (stable diffs in the state store)."""
        return {
            "schema": 1,
            "seen": {arch: sorted(v, key=ocp_version.sort_key) for arch, v in sorted(self.seen.items())},
            "baselined": sorted(self.baselined),
        }

    def observe(self, channel: str, arch: str, releases: list[Release], *, first_sight: str) -> list[Release]:
        """Record ``releases`` (a channel's, ascending) and return those to report, ascending.

        At the first sight of a channel/arch, ``baseline`` reports nothing (what exists already is not news)
        and ``latest`` reports only the newest release not yet known.
        """
        if first_sight not in FIRST_SIGHT_MODES:
            raise ValueError(f"first_sight must be one of {FIRST_SIGHT_MODES}, got {first_sight!r}")
        seen = self.seen.setdefault(arch, set())
        fresh = [r for r in releases if r.version not in seen]
        seen.update(r.version for r in releases)
        key = f"{channel}/{arch}"
        if key in self.baselined:
            return fresh
        self.baselined.add(key)
        if first_sight == "latest" and releases and fresh and fresh[-1] == releases[-1]:
            return [releases[-1]]
        return []


def poll_new_releases(
    client: GraphClient,
    channels: Sequence[str],
    arches: Sequence[str],
    state: SeenReleases,
    *,
    first_sight: str,
) -> tuple[list[Release], list[GraphError]]:
    """One poll of every channel/arch: the releases to report (``state`` is updated) and the graph errors.

    A channel/arch whose graph fails is skipped and its state left alone, so it is simply retried by the
    next poll; the others still count.
    """
    new: list[Release] = []
    errors: list[GraphError] = []
    for channel in channels:
        for arch in arches:
            try:
                graph = client.fetch(channel, arch)
            except GraphError as exc:
                errors.append(exc)
                continue
            found = channel_releases(graph, channel)
            new.extend(state.observe(channel, arch, found, first_sight=first_sight))
    return new, errors


class GraphClient:
    """Fetches ``<base_url>?channel=<c>&arch=<a>``; retries connection errors, timeouts, 429 and 5xx.

    Proxies come from ``HTTPS_PROXY``/``NO_PROXY`` (requests reads them). The CA bundle is ``ca_bundle`` when
    given, else ``REQUESTS_CA_BUNDLE``/the system store. ``base_url`` can point at a disconnected mirror
    (an OpenShift Update Service).
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10,
        retries: int = 3,
        backoff: float = 1.0,
        ca_bundle: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"graph URL must be an http(s) URL, got {base_url!r}")
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise ValueError("timeout must be > 0, retries and backoff >= 0")
        self.base_url = base_url
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.ca_bundle = ca_bundle
        self._sleep = sleep
        # requests is imported where it is used: the DAG file imports this module, the triggerer and the
        # cron poll are the only callers that talk HTTP.
        import requests

        self._session = requests.Session()

    def url_for(self, channel: str, graph_arch_name: str) -> str:
        """The exact URL fetched for a channel and a graph arch (used in error messages too)."""
        import requests

        req = requests.Request("GET", self.base_url, params={"channel": channel, "arch": graph_arch_name})
        return str(req.prepare().url)

    def fetch(self, channel: str, arch: str) -> Graph:
        """Fetch and parse the graph of ``channel`` for the pipeline ``arch`` (``x86_64``/``aarch64``)."""
        channel_minor(channel)
        url = self.url_for(channel, graph_arch(arch))
        return parse_graph(self.fetch_json(url), channel=channel, arch=arch)

    def fetch_json(self, url: str) -> Any:
        """GET ``url`` as JSON with retries; raises ``GraphError`` naming URL, status and a body excerpt."""
        attempt = 0
        while True:
            try:
                return self._get_once(url)
            except _Retryable as exc:
                if attempt >= self.retries:
                    raise GraphError(
                        f"{exc} (gave up after {attempt + 1} attempts)", url=url, status=exc.status
                    ) from exc
                self._sleep(self.backoff * (2**attempt))
                attempt += 1

    def _get_once(self, url: str) -> Any:
        import requests

        # verify is passed per request: a Session-level verify would lose to REQUESTS_CA_BUNDLE.
        verify: bool | str = self.ca_bundle or True
        try:
            resp = self._session.get(
                url,
                headers={"Accept": "application/json"},
                timeout=self.timeout,
                verify=verify,
                allow_redirects=True,
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Retryable(f"GET {url} failed: {type(exc).__name__}: {exc}", status=None) from exc
        except (requests.RequestException, OSError) as exc:
            # OSError: e.g. the configured CA bundle file is missing; retrying cannot fix that.
            raise GraphError(f"GET {url} failed: {type(exc).__name__}: {exc}", url=url) from exc
        if resp.status_code == 429 or resp.status_code >= 500:
            raise _Retryable(
                f"GET {url} returned HTTP {resp.status_code}: {_excerpt(resp)}", resp.status_code
            )
        if resp.status_code != 200:
            raise GraphError(
                f"GET {url} returned HTTP {resp.status_code}: {_excerpt(resp)}",
                url=url,
                status=resp.status_code,
            )
        try:
            return resp.json()
        except ValueError:
            raise GraphError(
                f"GET {url} returned a body that is not JSON "
                f"(Content-Type {resp.headers.get('Content-Type', '?')!r}): {_excerpt(resp)}",
                url=url,
                status=resp.status_code,
            ) from None

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()


class _Retryable(Exception):
    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


def _excerpt(resp: requests.Response) -> str:
    text = " ".join(resp.text.split())
    return repr(text[:_EXCERPT_CHARS] + ("..." if len(text) > _EXCERPT_CHARS else ""))
