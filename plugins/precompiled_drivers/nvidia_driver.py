"""NVIDIADriver mode (pure): detect it, and plan each NVIDIADriver resource's node pools, images, DaemonSets.

With ``spec.driver.useNvidiaDriverCRD: true`` in the ClusterPolicy, or with the v26.7 DRA stack (a GPUCluster,
which has no driver section at all), the GPU Operator ignores the ClusterPolicy's driver section and runs one
driver DaemonSet per node pool of each NVIDIADriver resource (NVIDIA/gpu-operator, v26.7):

- ``controllers/nvidiadriver_controller.go`` Reconcile: a ClusterPolicy without the flag disables every CR;
- ``internal/nvidiadriver/nvidiadriver.go`` AssignOwners and ``internal/validator/validator.go`` Validate:
  a GPU node belongs to the one CR whose ``nodeSelector`` matches it (a ``default: true`` CR takes the
  rest); two CRs matching one node stop every CR's reconcile ("multiple NVIDIADrivers match the same node");
- ``internal/state/nodepool.go`` getNodePools/getOSTag: a precompiled CR's nodes are pooled by OS tag and
  kernel, a compiled one's by RHCOS version (OpenShift) or OS tag; the OS tag is computed **per pool**
  (unlike ClusterPolicy mode's one tag for the cluster), with the same per-release rule as ``naming.os_tag``;
- ``internal/state/driver.go`` getDriverAppName: DaemonSet ``nvidia-<driverType>-driver-<osTag>-<hash>``,
  the hash over the CR's UID and the pool's kernel (or RHCOS version), so replacing a CR renames its
  DaemonSets; ``api/nvidia/v1alpha1/nvidiadriver_types.go`` GetPrecompiledImagePath: the image is
  ``<repository>/<image>:<version>-<kernel>-<osTag>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from precompiled_drivers import cluster_policy, naming
from precompiled_drivers.cluster import GPU_LABEL, KERNEL_LABEL, ClusterState, GpuNode

CLUSTER_POLICY = "ClusterPolicy"
NVIDIA_DRIVER = "NVIDIADriver"
OSTREE_LABEL = "feature.node.kubernetes.io/system-os_release.OSTREE_VERSION"
# k8s.io/apimachinery pkg/util/rand SafeEncodeString's alphabet (internal/utils GetStringHash uses it).
_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"
_APP_NAME_MAX = 63


class DriverConflict(ValueError):
    """The operator refuses the NVIDIADriver resources as they are; the message quotes it and says the fix."""


@dataclass(frozen=True)
class PoolPlan:
    """One node pool of an NVIDIADriver: the DaemonSet the operator runs for it and the image it pulls."""

    os_tag: str
    kernel: str  # the kernel-version.full label for a precompiled CR, "" otherwise
    rhcos: str  # the OSTREE_VERSION of a compiled CR's pool on OpenShift, "" otherwise
    nodes: tuple[str, ...]
    daemonset: str
    image: str  # what the operator pulls for the pool now ("" when it cannot name one: see ``problem``)
    problem: str = ""


@dataclass(frozen=True)
class DriverPlan:
    """One NVIDIADriver resource as the operator serves it now."""

    name: str
    uid: str
    precompiled: bool
    driver_type: str
    default: bool
    selector: dict[str, str]
    pools: tuple[PoolPlan, ...]
    skipped: tuple[str, ...] = ()  # owned nodes the operator leaves out for a missing NFD label

    @property
    def nodes(self) -> tuple[str, ...]:
        """Every GPU node this CR owns, sorted."""
        return tuple(sorted(n for p in self.pools for n in p.nodes))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for XCom."""
        return asdict(self)


def driver_mode(cluster: ClusterState) -> str:
    """``NVIDIADriver`` when the operator takes drivers from NVIDIADriver resources, else ``ClusterPolicy``.

    resolveActiveConfig + Reconcile: a ClusterPolicy decides by ``spec.driver.useNvidiaDriverCRD``; without
    one, a GPUCluster (or NVIDIADriver resources alone) means NVIDIADriver mode.
    """
    if cluster.policy is not None:
        driver = (cluster.policy.get("spec") or {}).get("driver") or {}
        return NVIDIA_DRIVER if driver.get("useNvidiaDriverCRD") is True else CLUSTER_POLICY
    return NVIDIA_DRIVER if cluster.gpu_clusters or cluster.nvidia_drivers else CLUSTER_POLICY


def describe_mode(cluster: ClusterState) -> str:
    """One line for logs and the report: which mode, and why."""
    if driver_mode(cluster) == CLUSTER_POLICY:
        return "ClusterPolicy mode: the GPU Operator takes the driver from the ClusterPolicy's spec.driver"
    if cluster.policy is not None:
        why = "spec.driver.useNvidiaDriverCRD is true in the ClusterPolicy"
    elif cluster.gpu_clusters:
        why = f"GPUCluster {', '.join(cluster.gpu_clusters)} (the DRA stack) has drivers only through them"
    else:
        why = "there is no ClusterPolicy"
    names = ", ".join(d["metadata"]["name"] for d in cluster.nvidia_drivers) or "none yet"
    return f"NVIDIADriver mode ({why}): drivers come from NVIDIADriver resources ({names})"


def selector_of(cr: Mapping[str, Any]) -> dict[str, str]:
    """nvidiadriver_types.go GetNodeSelector: no nodeSelector means every GPU node (``{}`` matches all)."""
    selector = (cr.get("spec") or {}).get("nodeSelector")
    return {GPU_LABEL: "true"} if selector is None else {str(k): str(v) for k, v in selector.items()}


def _matches(node: GpuNode, selector: Mapping[str, str]) -> bool:
    return all(node.labels.get(k) == v for k, v in selector.items())


def node_owners(drivers: Sequence[Mapping[str, Any]], nodes: Iterable[GpuNode]) -> dict[str, str]:
    """GPU node -> the NVIDIADriver that owns it (AssignOwners); nodes no CR selects are left out.

    Raises DriverConflict with the operator's own message where it refuses to reconcile. inspect_cluster
    lists GPU nodes only: the operator's validator also refuses selectors that overlap on other nodes,
    which this cannot see (the CRs' status then says ConflictingNodeSelector).
    """
    defaults = sorted(d["metadata"]["name"] for d in drivers if (d.get("spec") or {}).get("default") is True)
    if len(defaults) > 1:
        raise DriverConflict(
            f"multiple default NVIDIADrivers found: {defaults}: the GPU Operator reconciles none of them; "
            "keep spec.default: true on one NVIDIADriver only"
        )
    owners: dict[str, str] = {}
    for node in nodes:
        matching = sorted(
            d["metadata"]["name"]
            for d in drivers
            if (d.get("spec") or {}).get("default") is not True and _matches(node, selector_of(d))
        )
        if len(matching) > 1:
            raise DriverConflict(
                f"multiple NVIDIADrivers match the same node {node.name}: {matching}: the GPU Operator "
                "reconciles none of them until their spec.nodeSelector no longer overlap"
            )
        if matching or defaults:
            owners[node.name] = matching[0] if matching else defaults[0]
    return owners


def string_hash(text: str) -> str:
    """internal/utils/utils.go GetStringHash: FNV-1a (32 bit) of ``text`` in decimal, SafeEncodeString'd."""
    value = 0x811C9DC5
    for byte in text.encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_ALPHANUMS[ord(ch) % len(_ALPHANUMS)] for ch in str(value))


def daemonset_name(driver_type: str, uid: str, os_tag: str, kernel: str = "", rhcos: str = "") -> str:
    """internal/state/driver.go getDriverAppName, truncated to 63 characters as it does."""
    suffix = f"-{kernel}" if kernel else f"-{rhcos}" if rhcos else ""
    digest = string_hash(uid + suffix)
    prefix = f"nvidia-{driver_type}-driver-{os_tag}"
    if len(prefix) + 1 + len(digest) > _APP_NAME_MAX:
        prefix = prefix[: _APP_NAME_MAX - len(digest) - 1]
    return f"{prefix}-{digest}"


def driver_image(spec: Mapping[str, Any], os_tag: str, kernel: str) -> str:
    """getDriverImagePath: the image the operator pulls for a pool (raises ValueError where it refuses).

    internal/image ImagePath: ``repository/image:version`` (``@version`` for a digest); an ``image`` without
    repository and version is taken whole. Precompiled appends ``-<kernel>-<osTag>`` (a digest is refused),
    compiled ``-<osTag>`` (a digest is used as is).
    """
    repository, image, version = (str(spec.get(k) or "") for k in ("repository", "image", "version"))
    if not repository and not version and image:
        path = image
    elif not (repository and image and version):
        raise ValueError(
            "spec.repository, spec.image and spec.version must all be set "
            f"(repository={repository!r}, image={image!r}, version={version!r})"
        )
    else:
        sep = "@" if version.startswith("sha256:") else ":"
        path = f"{repository}/{image}{sep}{version}"
    if spec.get("usePrecompiled") is True:
        if "sha256:" in path:
            raise ValueError("specifying image digest is not supported when precompiled is enabled")
        return f"{path}-{kernel}-{os_tag}"
    return path if "sha256:" in path else f"{path}-{os_tag}"


def pools(
    cr: Mapping[str, Any],
    nodes: Iterable[GpuNode],
    owners: Mapping[str, str],
    operator_version: str,
    openshift: bool,
) -> tuple[PoolPlan, ...]:
    """nodepool.go getNodePools for one CR: its nodes grouped by OS tag + kernel (precompiled), RHCOS version
    (compiled on OpenShift) or OS tag, each with its DaemonSet and image. Nodes the operator skips for a
    missing NFD label are left out, as it leaves them."""
    spec = cr.get("spec") or {}
    name, uid = cr["metadata"]["name"], cr["metadata"].get("uid", "")
    precompiled = spec.get("usePrecompiled") is True
    groups: dict[tuple[str, str, str], list[str]] = {}
    for node in nodes:
        if owners.get(node.name) != name:
            continue
        tag = naming.os_tag(node.os_id, node.os_version_id, operator_version)
        kernel = node.labels.get(KERNEL_LABEL, node.kernel) if precompiled else ""
        rhcos = node.labels.get(OSTREE_LABEL, "") if not precompiled and openshift else ""
        if not precompiled and openshift and not rhcos:
            continue  # "Could not find NFD labels for node. Is NFD installed?" (see ``skipped_nodes``)
        groups.setdefault((tag, kernel, rhcos), []).append(node.name)
    out = []
    for (tag, kernel, rhcos), members in sorted(groups.items()):
        try:
            image, problem = driver_image(spec, tag, kernel), ""
        except ValueError as exc:
            image, problem = "", f"NVIDIADriver {name}: {exc}"
        out.append(
            PoolPlan(
                os_tag=tag,
                kernel=kernel,
                rhcos=rhcos,
                nodes=tuple(sorted(members)),
                daemonset=daemonset_name(str(spec.get("driverType") or "gpu"), uid, tag, kernel, rhcos),
                image=image,
                problem=problem,
            )
        )
    return tuple(out)


def skipped_nodes(
    cr: Mapping[str, Any], nodes: Iterable[GpuNode], owners: Mapping[str, str], openshift: bool
) -> tuple[str, ...]:
    """Owned nodes getNodePools skips: a compiled CR on OpenShift pools by OSTREE_VERSION, which they lack."""
    if (cr.get("spec") or {}).get("usePrecompiled") is True or not openshift:
        return ()
    name = cr["metadata"]["name"]
    return tuple(
        sorted(n.name for n in nodes if owners.get(n.name) == name and not n.labels.get(OSTREE_LABEL))
    )


def plan_drivers(cluster: ClusterState) -> tuple[DriverPlan, ...]:
    """Every NVIDIADriver resource as the operator serves it now (raises DriverConflict where it refuses)."""
    owners = node_owners(cluster.nvidia_drivers, cluster.nodes)
    openshift = bool(cluster.cluster_version)
    plans = []
    for cr in cluster.nvidia_drivers:
        spec = cr.get("spec") or {}
        plans.append(
            DriverPlan(
                name=cr["metadata"]["name"],
                uid=cr["metadata"].get("uid", ""),
                precompiled=spec.get("usePrecompiled") is True,
                driver_type=str(spec.get("driverType") or "gpu"),
                default=spec.get("default") is True,
                selector=selector_of(cr),
                pools=pools(cr, cluster.nodes, owners, cluster.operator_version, openshift),
                skipped=skipped_nodes(cr, cluster.nodes, owners, openshift),
            )
        )
    return tuple(plans)


def unowned_nodes(cluster: ClusterState) -> tuple[str, ...]:
    """GPU nodes no NVIDIADriver selects: the operator runs no driver on them in this mode."""
    owners = node_owners(cluster.nvidia_drivers, cluster.nodes)
    return tuple(sorted(n.name for n in cluster.nodes if n.name not in owners))


def stage_order(plans: Sequence[DriverPlan], canary: str = "") -> tuple[DriverPlan, ...]:
    """Roll-out order: the canary CR first (named, or the one with the fewest GPU nodes; ties by name),
    then the rest by name. CRs owning no node are left out. Raises ValueError for an unknown canary."""
    serving = [p for p in plans if p.nodes or p.skipped]
    if canary:
        first = next((p for p in serving if p.name == canary), None)
        if first is None:
            names = ", ".join(p.name for p in serving) or "none"
            raise ValueError(
                f"canary_pool {canary!r} is not an NVIDIADriver that owns GPU nodes (those are: {names}); "
                "name one of them or leave it empty for the smallest"
            )
    else:
        if not serving:
            return ()
        first = min(serving, key=lambda p: (len(p.nodes) + len(p.skipped), p.name))
    return (first, *sorted((p for p in serving if p is not first), key=lambda p: p.name))


def describe_plans(plans: Sequence[DriverPlan], repository: str, image: str, version: str) -> list[str]:
    """Per NVIDIADriver pool: nodes, DaemonSet, the image pulled now and the one this run's driver means."""
    lines = []
    for plan in plans:
        kind = "precompiled" if plan.precompiled else "compiled"
        if plan.skipped:
            lines.append(
                f"NVIDIADriver {plan.name} ({kind}): GPU node(s) {', '.join(plan.skipped)} lack the NFD "
                f"label {OSTREE_LABEL}, so the operator runs no driver there: is Node Feature Discovery "
                "running?"
            )
        elif not plan.pools:
            lines.append(f"NVIDIADriver {plan.name} ({kind}): owns no GPU node")
        for pool in plan.pools:
            where = f"{pool.os_tag}" + (f" kernel {pool.kernel}" if pool.kernel else "")
            now = pool.image or pool.problem
            line = (
                f"NVIDIADriver {plan.name} ({kind}), pool {where} (nodes {', '.join(pool.nodes)}): "
                f"DaemonSet {pool.daemonset} pulls {now}"
            )
            if plan.precompiled:
                target = naming.operator_image(repository, image, version, pool.kernel, pool.os_tag)
                line += f"; this run's driver: {target}"
            else:
                line += (
                    "; usePrecompiled is immutable: switching this pool means replacing the NVIDIADriver "
                    "(its driver pods restart)"
                )
            lines.append(line)
    return lines


# --------------------------------------------------------------------------- the per-CR rollout (planning)

SPEC_PATH = "/spec"
_DRIVER_FIELDS = ("repository", "image", "version")
# What a recreated NVIDIADriver carries over from the original: the API server assigns the rest (uid,
# resourceVersion, generation, creationTimestamp, managedFields) and the operator writes status.
_KEPT_METADATA = ("name", "labels", "annotations")


class StageRefused(ValueError):
    """A stage cannot be rolled out as asked; the message names the NVIDIADriver, the reason and the fix."""


@dataclass(frozen=True)
class PoolTarget:
    """What verification must see on one pool after its stage: Ready driver pods on this image's digest."""

    os_tag: str
    kernel: str
    nodes: tuple[str, ...]
    image: str
    digest: str
    # The DaemonSet that serves the pool after the stage, when known before it: a patched CR keeps its UID
    # (so its DaemonSet names); a replacement gets a new UID, hence new names ("": matched by owner).
    daemonset: str = ""


@dataclass(frozen=True)
class Stage:
    """One NVIDIADriver's rollout: a guarded patch (precompiled CR) or a replacement (compiled CR)."""

    driver: str
    action: str  # "patch" or "replace"
    nodes: tuple[str, ...]
    targets: tuple[PoolTarget, ...]
    patch: list[dict[str, Any]]  # "patch": the guarded JSON patch of /spec; "replace": []
    undo: list[dict[str, Any]]  # "patch": restores /spec exactly, guarded by the applied spec
    replacement: dict[str, Any]  # "replace": the new NVIDIADriver (every other field kept); else {}
    original: dict[str, Any]  # "replace": the original, as recreated on undo; else {}
    uid: str = ""  # the NVIDIADriver's UID as read: a replacement deletes only that object
    selector: dict[str, str] = field(default_factory=dict)  # its nodeSelector (what its pools' nodes carry)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for XCom."""
        return asdict(self)


def _kept(cr: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    meta = cr.get("metadata") or {}
    return {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "NVIDIADriver",
        "metadata": {k: meta[k] for k in _KEPT_METADATA if k in meta},
        "spec": dict(spec),
    }


def driver_patch(cr: Mapping[str, Any], *, repository: str, image: str, version: str) -> list[dict[str, Any]]:
    """Guarded JSON patch of a precompiled NVIDIADriver: ``test`` the whole /spec as read, then set
    repository, image and version (``add`` where absent), as ``cluster_policy.enable_patch`` does."""
    spec = dict(cr.get("spec") or {})
    wanted = {"repository": repository, "image": image, "version": version}
    ops: list[dict[str, Any]] = [{"op": "test", "path": SPEC_PATH, "value": spec}]
    for key in _DRIVER_FIELDS:
        op = "replace" if key in spec else "add"
        ops.append({"op": op, "path": f"{SPEC_PATH}/{key}", "value": wanted[key]})
    return ops


def replacement(cr: Mapping[str, Any], *, repository: str, image: str, version: str) -> dict[str, Any]:
    """The NVIDIADriver that replaces a compiled one: every field kept, precompiled with this run's image."""
    spec = dict(cr.get("spec") or {})
    if any((spec.get(k) or {}).get("enabled") is True for k in ("gds", "gdrcopy")):
        raise StageRefused(
            f"NVIDIADriver {cr['metadata']['name']}: spec.gds or spec.gdrcopy is enabled, which the operator "
            "refuses with precompiled drivers; disable them on that NVIDIADriver or keep it compiled"
        )
    spec.update(usePrecompiled=True, repository=repository, image=image, version=version)
    return _kept(cr, spec)


def original(cr: Mapping[str, Any]) -> dict[str, Any]:
    """The NVIDIADriver the undo of a replacement recreates: spec, name, labels, annotations as read."""
    return _kept(cr, cr.get("spec") or {})


def _targets(
    plan: DriverPlan,
    nodes: Sequence[GpuNode],
    operator_version: str,
    repository: str,
    image: str,
    version: str,
) -> list[tuple[str, str, tuple[str, ...], str]]:
    # After the stage the CR is precompiled: its nodes pool by OS tag and kernel whatever they were before.
    groups: dict[tuple[str, str], list[str]] = {}
    for node in nodes:
        if node.name in plan.nodes or node.name in plan.skipped:
            tag = naming.os_tag(node.os_id, node.os_version_id, operator_version)
            groups.setdefault((tag, node.labels.get(KERNEL_LABEL, node.kernel)), []).append(node.name)
    return [
        (tag, kernel, tuple(sorted(names)), naming.operator_image(repository, image, version, kernel, tag))
        for (tag, kernel), names in sorted(groups.items())
    ]


def plan_stages(
    cluster: ClusterState,
    *,
    repository: str,
    image: str,
    version: str,
    available: Mapping[str, str],
    allow_driver_restart: bool = False,
    canary: str = "",
) -> tuple[Stage, ...]:
    """Every NVIDIADriver that owns GPU nodes, as one stage each, canary first (``stage_order``).

    Refuses (StageRefused, every problem listed) a compiled NVIDIADriver unless ``allow_driver_restart``
    (usePrecompiled is immutable: switching means delete + create, which restarts its driver pods), and
    any pool whose image is not in ``available`` (image -> digest): the coverage gate, per pool.
    """
    by_name = {d["metadata"]["name"]: d for d in cluster.nvidia_drivers}
    stages, problems = [], []
    for plan in stage_order(plan_drivers(cluster), canary):
        cr = by_name[plan.name]
        targets = _targets(plan, cluster.nodes, cluster.operator_version, repository, image, version)
        missing = [f"{ref} (nodes {', '.join(n)})" for _, _, n, ref in targets if not available.get(ref)]
        if missing:
            problems.append(f"NVIDIADriver {plan.name}: no published image {'; '.join(missing)}")
        if not plan.precompiled and not allow_driver_restart:
            problems.append(
                f"NVIDIADriver {plan.name} has usePrecompiled: false, which the CRD makes immutable: "
                "switching it means deleting and recreating it, which restarts the driver on "
                f"{', '.join(sorted({*plan.nodes, *plan.skipped}))}. "
                "Allow that in the form (allow_driver_restart), or create a precompiled NVIDIADriver for "
                "those nodes yourself"
            )
        if problems:
            continue
        pools = tuple(
            PoolTarget(
                tag,
                kernel,
                names,
                ref,
                available[ref],
                daemonset_name(plan.driver_type, plan.uid, tag, kernel) if plan.precompiled else "",
            )
            for tag, kernel, names, ref in targets
        )
        nodes = tuple(sorted({*plan.nodes, *plan.skipped}))
        if plan.precompiled:
            patch = driver_patch(cr, repository=repository, image=image, version=version)
            applied = dict(cr.get("spec") or {})
            applied.update(repository=repository, image=image, version=version)
            undo = cluster_policy.rollback_patch(dict(cr.get("spec") or {}), applied, SPEC_PATH)
            stages.append(
                Stage(plan.name, "patch", nodes, pools, patch, undo, {}, {}, plan.uid, plan.selector)
            )
        else:
            new = replacement(cr, repository=repository, image=image, version=version)
            stages.append(
                Stage(plan.name, "replace", nodes, pools, [], [], new, original(cr), plan.uid, plan.selector)
            )
    if problems:
        raise StageRefused(
            "not rolling out the NVIDIADriver resources:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\nNothing on the cluster was changed."
        )
    return tuple(stages)


def target_spec(stage: Stage) -> dict[str, Any]:
    """The NVIDIADriver's spec once its stage is applied (a CR found with it needs no apply: a re-run)."""
    if stage.action == "replace":
        return dict(stage.replacement["spec"])
    spec = dict(stage.patch[0]["value"])
    spec.update({op["path"].rsplit("/", 1)[1]: op["value"] for op in stage.patch[1:]})
    return spec


def guard(stage: Stage) -> list[dict[str, Any]]:
    """``test`` ops that hold when the NVIDIADriver is still as read (its UID and spec): checked on the
    object just before a replacement deletes it, so a concurrent change is never deleted."""
    ops = [{"op": "test", "path": "/metadata/uid", "value": stage.uid}] if stage.uid else []
    if stage.action == "replace":
        return [*ops, {"op": "test", "path": SPEC_PATH, "value": stage.original["spec"]}]
    return [*ops, stage.patch[0]]


def describe_stages(stages: Sequence[Stage]) -> list[str]:
    """Per stage, in order: what changes, what verification must see, the undo (``stage_commands``: JSON)."""
    lines = []
    for number, stage in enumerate(stages, 1):
        role = "canary" if number == 1 else f"stage {number}"
        wait = "; ".join(f"{', '.join(t.nodes)} Ready on {t.image}@{t.digest}" for t in stage.targets)
        if stage.action == "patch":
            before = stage.patch[0]["value"]
            changes = ", ".join(
                f"{op['path'].rsplit('/', 1)[1]} {before.get(op['path'].rsplit('/', 1)[1], '<unset>')} -> "
                f"{op['value']}"
                for op in stage.patch[1:]
                if before.get(op["path"].rsplit("/", 1)[1]) != op["value"]
            )
            lines.append(
                f"{role}: patch NVIDIADriver {stage.driver} ({changes or 'no change'}; guarded by a test of "
                f"its spec as read), wait for {wait}; undo: restore its spec exactly"
            )
        else:
            lines.append(
                f"{role}: replace NVIDIADriver {stage.driver} by a precompiled one keeping every other field "
                f"(its driver pods restart), wait for {wait}; undo: delete it and recreate the original"
            )
    return lines


def stage_commands(stages: Sequence[Stage]) -> list[str]:
    """The exact changes and undos of each stage as kubectl would apply them (JSON, for logs)."""
    import json

    def compact(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"))

    lines = []
    for stage in stages:
        if stage.action == "patch":
            lines.append(f"kubectl patch nvidiadriver {stage.driver} --type=json -p '{compact(stage.patch)}'")
            lines.append(
                f"  undo: kubectl patch nvidiadriver {stage.driver} --type=json -p '{compact(stage.undo)}'"
            )
        else:
            recreate = f"kubectl delete nvidiadriver {stage.driver}; kubectl create -f - <<<"
            lines.append(f"{recreate} '{compact(stage.replacement)}'")
            lines.append(f"  undo: {recreate} '{compact(stage.original)}'")
    return lines
