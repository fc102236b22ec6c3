"""The OS tags a cluster's GPU Operator may append to precompiled driver images (pure).

In ClusterPolicy mode the operator takes ONE OS tag for the whole cluster: NVIDIA/gpu-operator
controllers/state_manager.go ``getGPUNodeOSInfo`` lists the nodes labelled ``nvidia.com/gpu.present=true``
with ``client.Limit(1)`` and reads that one node's ``system-os_release.ID`` + ``.VERSION_ID``;
controllers/object_controls.go ``resolveDriverTag`` then appends that tag to every kernel's image
(``<repository>/<image>:<version>-<kernel label>-<cluster tag>``). Which GPU node the API lists first is
not ours to choose, so a cluster whose GPU nodes report different OS tags (every 4.18 -> 4.19 upgrade
passes through one: ``rhcos4.18`` and ``rhel9``) needs each kernel's image under every one of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from precompiled_drivers import naming
from precompiled_drivers.cluster import GpuNode


class OsTagRefused(ValueError):
    """The installed operator cannot derive an OS tag from a node's labels; it fails the same way."""


def node_os_tag(node: GpuNode, operator_version: str) -> str:
    """The tag the operator computes when ``node`` is the GPU node it lists first.

    Raises OsTagRefused, quoting the operator, where it refuses the node's labels (v26.3.x parses the
    VERSION_ID major as a number: ``error processing OS major version``).
    """
    try:
        return naming.os_tag(node.os_id, node.os_version_id, operator_version)
    except ValueError as exc:
        raise OsTagRefused(f"GPU node {node.name}: {exc}") from exc


def servable(nodes: Iterable[GpuNode], operator_version: str) -> list[GpuNode]:
    """The nodes whose labels the operator can turn into an OS tag (the rest are refused by the gate)."""
    out = []
    for node in nodes:
        try:
            node_os_tag(node, operator_version)
        except OsTagRefused:
            continue
        out.append(node)
    return out


def cluster_os_tags(nodes: Iterable[GpuNode], operator_version: str) -> dict[str, tuple[str, ...]]:
    """Every OS tag the operator may pick for the cluster -> the GPU nodes that report it.

    Raises OsTagRefused for a node whose labels the operator itself refuses: it may be the one listed first.
    """
    tags: dict[str, list[str]] = {}
    for node in nodes:
        tags.setdefault(node_os_tag(node, operator_version), []).append(node.name)
    return {tag: tuple(sorted(names)) for tag, names in sorted(tags.items())}


def release_os_tag(ocp_version: str, rhel_version: str, operator_version: str) -> str:
    """The tag the operator will compute once the GPU nodes run ``ocp_version`` (a look-ahead target)."""
    os_id, os_version_id = naming.release_os_labels(ocp_version, rhel_version)
    return naming.os_tag(os_id, os_version_id, operator_version)


def tags_to_publish(cluster_tags: Iterable[str], release_tags: Iterable[str]) -> tuple[str, ...]:
    """The union of what the nodes report now and what they will report after the planned releases."""
    return tuple(sorted({*cluster_tags, *release_tags}))


def describe(cluster_tags: Mapping[str, Sequence[str]], operator_version: str) -> str:
    """One line for logs and the report: which tag(s) the operator may use, and why."""
    rule = naming.os_tag_rule(operator_version)
    if len(cluster_tags) == 1:
        [tag] = cluster_tags
        return f"GPU Operator {operator_version} uses OS tag {tag} for every kernel ({rule})"
    each = "; ".join(f"{tag} ({', '.join(nodes)})" for tag, nodes in cluster_tags.items())
    return (
        f"GPU Operator {operator_version} uses ONE OS tag for every kernel, from whichever GPU node it lists "
        f"first: one of {each} ({rule}); every kernel's image is published under each of them"
    )
