"""The table of kinds the test server knows: adding a kind is one line in ``RESOURCES``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResourceType:
    """One REST resource as the API discovery documents describe it."""

    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool
    subresources: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()
    # Whether a PUT without metadata.resourceVersion is accepted (the kind's strategy's
    # AllowUnconditionalUpdate): true for the built-in kinds here (e.g. pkg/registry/core/configmap
    # strategy.go), false for custom resources (apiextensions-apiserver pkg/registry/customresource
    # strategy.go), which ClusterPolicy, NVIDIADriver, GPUCluster and OpenShift's ClusterVersion are.
    unconditional_update: bool = True

    @property
    def group_version(self) -> str:
        """``v1`` for the core group, ``group/version`` otherwise (the apiVersion field)."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """A stable storage key: ``plural.group`` (``pods`` for core kinds)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def singular(self) -> str:
        """Lower-case kind, which is what discovery reports as singularName."""
        return self.kind.lower()


RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "Pod", "pods", True, ("status", "log", "exec"), ("po",)),
    ResourceType("", "v1", "Event", "events", True, (), ("ev",)),
    ResourceType("", "v1", "Node", "nodes", False, ("status",), ("no",)),
    ResourceType("", "v1", "Secret", "secrets", True),
    ResourceType("", "v1", "ConfigMap", "configmaps", True, (), ("cm",)),
    ResourceType("", "v1", "ServiceAccount", "serviceaccounts", True, (), ("sa",)),
    ResourceType("", "v1", "Namespace", "namespaces", False, ("status",), ("ns",)),
    ResourceType("apps", "v1", "DaemonSet", "daemonsets", True, ("status",), ("ds",)),
    ResourceType("apps", "v1", "Deployment", "deployments", True, ("status",), ("deploy",)),
    ResourceType(
        "nvidia.com", "v1", "ClusterPolicy", "clusterpolicies", False, ("status",), unconditional_update=False
    ),
    # NVIDIA/gpu-operator api/nvidia/v1alpha1 nvidiadriver_types.go and gpucluster_types.go:
    # +kubebuilder:resource:scope=Cluster, shortNames nvd/nvdriver/nvdrivers and gc, status subresource.
    ResourceType(
        "nvidia.com",
        "v1alpha1",
        "NVIDIADriver",
        "nvidiadrivers",
        False,
        ("status",),
        ("nvd", "nvdriver", "nvdrivers"),
        unconditional_update=False,
    ),
    ResourceType(
        "nvidia.com",
        "v1alpha1",
        "GPUCluster",
        "gpuclusters",
        False,
        ("status",),
        ("gc",),
        unconditional_update=False,
    ),
    ResourceType(
        "config.openshift.io",
        "v1",
        "ClusterVersion",
        "clusterversions",
        False,
        ("status",),
        unconditional_update=False,
    ),
)

# Verbs advertised in discovery; the server does not enforce RBAC, so every kind gets all of them.
VERBS: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


def groups() -> dict[str, list[str]]:
    """Map each API group to the versions it serves (core group under "")."""
    out: dict[str, list[str]] = {}
    for res in RESOURCES:
        versions = out.setdefault(res.group, [])
        if res.version not in versions:
            versions.append(res.version)
    return out


def find(group: str, version: str, plural: str) -> ResourceType | None:
    """Return the resource served at ``/apis/group/version/plural`` (or ``/api/v1/plural``)."""
    for res in RESOURCES:
        if res.group == group and res.version == version and res.plural == plural:
            return res
    return None


def by_kind(kind: str) -> ResourceType:
    """Return the resource of a kind name (``Pod``, ``ClusterPolicy``...); KeyError when unknown."""
    for res in RESOURCES:
        if res.kind == kind:
            return res
    raise KeyError(kind)
