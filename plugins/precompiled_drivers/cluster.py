"""What the inspect_cluster step saw: GPU nodes, the installed GPU Operator, the ClusterPolicy, NVIDIADrivers.

Pure parsing of the step's XCom; no Kubernetes calls here. The raw XCom is parsed and validated once per run,
by plan_releases, which hands the later planning steps the ``ClusterState`` (``to_dict``/``from_dict``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from precompiled_drivers import validation as v

KERNEL_LABEL = "feature.node.kubernetes.io/kernel-version.full"
OS_ID_LABEL = "feature.node.kubernetes.io/system-os_release.ID"
OS_VERSION_LABEL = "feature.node.kubernetes.io/system-os_release.VERSION_ID"
GPU_LABEL = "nvidia.com/gpu.present"

_VERSION_IN_TEXT = re.compile(r"v?(\d+\.\d+(?:\.\d+)?)$")


class ClusterError(ValueError):
    """The cluster does not offer what the pipeline needs; the message says what to fix."""


@dataclass(frozen=True)
class GpuNode:
    """A node labelled ``nvidia.com/gpu.present=true`` with its kernel and OS as NFD reports them."""

    name: str
    kernel: str
    os_id: str
    os_version_id: str
    # Every label of the node: NVIDIADriver node selectors match on any of them.
    labels: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class ClusterState:
    """Everything the planning and rollout rules need to know about the cluster."""

    nodes: tuple[GpuNode, ...]
    operator_version: str
    policy: dict[str, Any] | None
    cluster_version: str
    nvidia_drivers: tuple[dict[str, Any], ...] = ()  # NVIDIADriver CRs (nvidia.com/v1alpha1), by name
    gpu_clusters: tuple[str, ...] = ()  # names of GPUCluster CRs (the v26.7 DRA stack)
    # sha256 of the signing Secrets' public keys inspect_cluster saw (``module``/``image``; "" = none).
    signing_keys: dict[str, str] = field(default_factory=dict)

    @property
    def kernels(self) -> tuple[str, ...]:
        """Distinct kernels running on GPU nodes, sorted."""
        return tuple(sorted({n.kernel for n in self.nodes}))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for XCom: read and validated once (``parse_cluster``), passed on as is."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClusterState:
        """The state ``to_dict`` wrote, rebuilt without reading or validating the cluster again."""
        return cls(
            **{
                **data,
                "nodes": tuple(GpuNode(**node) for node in data["nodes"]),
                "nvidia_drivers": tuple(data.get("nvidia_drivers") or ()),
                "gpu_clusters": tuple(data.get("gpu_clusters") or ()),
            }
        )


def parse_nodes(items: list[Any]) -> tuple[GpuNode, ...]:
    """Turn ``[{"name", "labels"}, ..., null]`` into nodes; a node missing NFD labels is an error."""
    nodes = []
    for item in items:
        if item is None:  # the script's closing sentinel
            continue
        if not isinstance(item, dict) or not item.get("name"):
            raise ClusterError(f"inspect_cluster returned a node entry without a name: {item!r}")
        labels = item.get("labels") or {}
        missing = [label for label in (KERNEL_LABEL, OS_ID_LABEL, OS_VERSION_LABEL) if not labels.get(label)]
        if missing:
            raise ClusterError(
                f"GPU node {item.get('name')!r} lacks the label(s) {', '.join(missing)}: "
                "is Node Feature Discovery running? The GPU Operator needs them too."
            )
        nodes.append(
            GpuNode(
                name=item["name"],
                kernel=v.kernel(labels[KERNEL_LABEL], f"node {item['name']} {KERNEL_LABEL}"),
                os_id=labels[OS_ID_LABEL],
                os_version_id=labels[OS_VERSION_LABEL],
                labels=dict(labels),
            )
        )
    return tuple(sorted(nodes, key=lambda n: n.name))


def operator_version_of(deployment: Mapping[str, Any] | None) -> str:
    """The GPU Operator version from its Deployment: image tag, else the OLM owner label ("" if unknown)."""
    if not deployment:
        return ""
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    image = containers[0].get("image", "") if containers else ""
    if "@" not in image and ":" in image.rsplit("/", 1)[-1]:
        match = _VERSION_IN_TEXT.search(image.rsplit(":", 1)[1])
        if match:
            return "v" + match.group(1)
    # OLM installs by digest; its CSV name (gpu-operator-certified.v26.7.0) carries the version.
    owner = deployment.get("metadata", {}).get("labels", {}).get("olm.owner", "")
    match = _VERSION_IN_TEXT.search(owner)
    return "v" + match.group(1) if match else ""


def parse_cluster(xcom: Mapping[str, Any], operator_override: str = "") -> ClusterState:
    """Build a ``ClusterState`` from inspect_cluster's XCom; the form's operator version wins."""
    nodes = parse_nodes(list(xcom.get("nodes") or []))
    if not nodes:
        raise ClusterError(
            f"no node is labelled {GPU_LABEL}=true: the GPU Operator has not found any GPU yet, "
            "so there is no kernel to build for. Check the operator's NFD and GPU feature discovery."
        )
    operator_version = operator_override or operator_version_of(xcom.get("operator"))
    if not operator_version:
        raise ClusterError(
            "could not read the GPU Operator version from its Deployment (image tag or olm.owner label): "
            "set the form's operator_version, e.g. v26.7.0"
        )
    cluster_version = xcom.get("cluster_version") or ""
    return ClusterState(
        nodes=nodes,
        operator_version=operator_version,
        policy=xcom.get("policy") or None,
        cluster_version=v.ocp_version(cluster_version, "cluster_version") if cluster_version else "",
        nvidia_drivers=_items(xcom.get("nvidia_drivers"), "nvidia_drivers"),
        gpu_clusters=tuple(i["metadata"]["name"] for i in _items(xcom.get("gpu_clusters"), "gpu_clusters")),
        signing_keys={k: str(v) for k, v in (xcom.get("signing_keys") or {}).items()},
    )


def _items(listing: Any, what: str) -> tuple[dict[str, Any], ...]:
    """The items of a ``kubectl get -o json`` List (None: the CRD is not installed), sorted by name."""
    if listing is None:
        return ()
    items = listing.get("items") if isinstance(listing, Mapping) else None
    if not isinstance(items, list) or not all(
        isinstance(i, Mapping) and (i.get("metadata") or {}).get("name") for i in items
    ):
        raise ClusterError(f"inspect_cluster returned {what} that is not a Kubernetes list: {listing!r:.200}")
    return tuple(sorted((dict(i) for i in items), key=lambda i: i["metadata"]["name"]))
