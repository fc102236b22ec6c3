"""The OpenShift update graph (Cincinnati v1) as data, and the pure rules that read it.

Parsing, channel filtering and the upgrade look-ahead: no Airflow, no network (``client`` fetches).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from precompiled_drivers import grammar as g
from precompiled_drivers import ocp_version

# Pipeline arch (release image suffix, BUILD_ARCH) -> update-graph arch (Go names, plus multi-arch).
_GRAPH_ARCH = {**g.GO_ARCH, "multi": "multi"}
EXCERPT_CHARS = 200

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
    # The fleet's clusters that follow a channel listing this release (empty: no fleet configured).
    clusters: tuple[str, ...] = ()

    @property
    def digest(self) -> str:
        """The ``sha256:...`` digest of the payload pull spec, or ``""`` when it is not pinned by digest."""
        _, sep, digest = self.payload.rpartition("@")
        return digest if sep and g.DIGEST.matches(digest) else ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the trigger event payload): version, arch, channel, payload, digest, and
        ``clusters`` when a fleet is configured (a single-cluster payload is as it always was)."""
        data: dict[str, Any] = {**asdict(self), "digest": self.digest}
        if self.clusters:
            data["clusters"] = list(self.clusters)
        else:
            del data["clusters"]
        return data

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
        clusters = data.get("clusters") or []
        if not isinstance(clusters, list) or not all(isinstance(c, str) for c in clusters):
            raise ValueError(f"release 'clusters' must be a list of cluster names, got {data!r}")
        return cls(version=version, arch=arch, channel=channel, payload=payload, clusters=tuple(clusters))


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
            ", ".join(repr(v)[:EXCERPT_CHARS] for v in skipped),
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
