"""Rollout rules: what precompiled mode can serve, the coverage gate, what verification must see, the patches.

The ClusterPolicy is patched only when the operator can serve every GPU node in precompiled mode and every
kernel running on a GPU node has an image under every OS tag the operator may look for (it takes one tag for
the whole cluster from whichever GPU node it lists first: see ``os_tag``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from precompiled_drivers import cluster_policy, naming, nvidia_driver, os_tag
from precompiled_drivers.cluster import ClusterState, GpuNode


class RolloutBlocked(RuntimeError):
    """Patching now would leave a GPU node without a driver; the message lists which and why."""


@dataclass(frozen=True)
class KernelRollout:
    """What one kernel's driver DaemonSet must run after the patch."""

    kernel: str  # the node label kernel-version.full
    daemonset: str
    images: dict[str, str]  # OS tag -> the image the operator pulls when that tag is the cluster's
    digests: dict[str, str]  # image -> digest it is published with ({} until the gate has checked)
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class RolloutPlan:
    """The patch to apply, how to undo it, and what verification expects."""

    kernels: tuple[KernelRollout, ...]
    os_tags: dict[str, tuple[str, ...]]  # every tag the operator may pick -> GPU nodes reporting it
    os_tag_note: str
    previous_driver: dict[str, Any]
    patch: list[dict[str, Any]]
    rollback: list[dict[str, Any]]
    summary: str
    upgrade_note: str = ""  # spec.driver.upgradePolicy in effect: how fast nodes switch

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for XCom."""
        return asdict(self)

    @property
    def expected_lines(self) -> str:
        """verify_rollout.sh's EXPECTED input: ``<kernel> <DaemonSet> <image> <digest>``, one line per image
        the operator may pull for that kernel (verification accepts any of them, on its own digest). The
        DaemonSet is named here, once, as the operator names it; the script only matches pods to it."""
        return "\n".join(
            f"{k.kernel} {k.daemonset} {image} {k.digests[image]}"
            for k in self.kernels
            for image in sorted(set(k.images.values()))
        )


def policy_refusals(policy: Mapping[str, Any]) -> list[str]:
    """Why the ClusterPolicy's driver section is not the place to switch drivers (empty = it is)."""
    driver = (policy.get("spec") or {}).get("driver") or {}
    problems = []
    if driver.get("enabled") is False:
        problems.append(
            "spec.driver.enabled is false: the GPU Operator deploys no driver at all (the nodes' drivers are "
            "managed elsewhere); set it to true first if the operator should manage them"
        )
    return problems


def node_refusals(nodes: Iterable[GpuNode], operator_version: str) -> list[str]:
    """Why the operator cannot serve some GPU nodes in precompiled mode (empty = it can serve them all)."""
    nodes = tuple(nodes)
    problems: list[str] = []
    by_kernel: dict[str, dict[tuple[str, str], list[str]]] = {}  # kernel label -> (ID, VERSION_ID) -> nodes
    for node in nodes:
        per_os = by_kernel.setdefault(node.kernel, {})
        per_os.setdefault((node.os_id, node.os_version_id), []).append(node.name)
        try:
            os_tag.node_os_tag(node, operator_version)
        except os_tag.OsTagRefused as exc:
            problems.append(f"{exc}; fix the node's os-release or upgrade the GPU Operator")
    names: dict[str, list[str]] = {}  # DaemonSet name -> kernels that map to it
    for kernel, oses in sorted(by_kernel.items()):
        where = ", ".join(sorted(n for group in oses.values() for n in group))
        if naming.kernel_variant(kernel) == "rt":
            problems.append(
                f"GPU node(s) {where} run the real-time kernel {kernel}: NVIDIA's precompiled build refuses "
                "PREEMPT_RT and the operator cannot name a DaemonSet for it. Keep real-time GPU nodes on "
                "compiled drivers (usePrecompiled: false) or move them to the standard kernel"
            )
            continue
        if len(oses) > 1:
            # object_controls.go getKernelVersionsMap fails the whole reconcile in this case.
            listed = "; ".join(f"{i}{v} on {', '.join(sorted(n))}" for (i, v), n in sorted(oses.items()))
            problems.append(
                f"kernel {kernel} runs on GPU nodes with different OS releases ({listed}): the GPU Operator "
                "refuses this ('different OS versions found for the same kernel version'); finish the "
                "upgrade of those nodes first"
            )
            continue
        [(os_id, os_version_id)] = oses
        try:
            names.setdefault(naming.daemonset_name(kernel, os_id, os_version_id), []).append(kernel)
        except ValueError as exc:
            problems.append(f"GPU node(s) {where}: {exc}")
    for name, kernels in sorted(names.items()):
        if len(kernels) > 1:
            # getSanitizedKernelVersion strips the arch: precompiledDriverDaemonsets creates, then
            # overwrites, one DaemonSet; the kernel processed last wins and the other nodes get no driver.
            problems.append(
                f"kernels {' and '.join(kernels)} map to the same DaemonSet {name} (the operator strips the "
                "architecture from the name), so one of them would get no driver; run one architecture per "
                "kernel release, or keep compiled drivers"
            )
    return problems


def kernel_rollouts(
    nodes: Iterable[GpuNode], repository: str, image: str, version: str, os_tags: Iterable[str]
) -> list[KernelRollout]:
    """Group GPU nodes by kernel and name, per possible cluster OS tag, the image the operator will pull.

    Nodes the operator cannot serve (see ``node_refusals``) are left out.
    """
    tags = tuple(os_tags)
    groups: dict[str, list[GpuNode]] = {}
    for node in nodes:
        groups.setdefault(node.kernel, []).append(node)
    rollouts = []
    for kernel, members in sorted(groups.items()):
        first = min(members, key=lambda n: n.name)
        try:
            # The DaemonSet name keeps the node's raw ID+VERSION_ID (getKernelVersionsMap), not the tag.
            daemonset = naming.daemonset_name(kernel, first.os_id, first.os_version_id)
        except ValueError:
            continue  # an RT kernel: refused by node_refusals
        rollouts.append(
            KernelRollout(
                kernel=kernel,
                daemonset=daemonset,
                images={t: naming.operator_image(repository, image, version, kernel, t) for t in tags},
                digests={},
                nodes=tuple(sorted(n.name for n in members)),
            )
        )
    return rollouts


def wanted_images(cluster: ClusterState, repository: str, image: str, version: str) -> list[str]:
    """Every image the operator may pull for the cluster's GPU nodes now (for the registry look-up)."""
    servable = os_tag.servable(cluster.nodes, cluster.operator_version)
    tags = os_tag.cluster_os_tags(servable, cluster.operator_version)
    return sorted(
        {i for k in kernel_rollouts(servable, repository, image, version, tags) for i in k.images.values()}
    )


def nvidia_driver_refusal(
    cluster: ClusterState, repository: str, image: str, version: str, available: Mapping[str, str]
) -> str:
    """Why nothing is patched in NVIDIADriver mode: each NVIDIADriver's pools as the operator runs them,
    and the staged rollout to do by hand (canary = smallest pool), or why it cannot be done yet."""
    commands: list[str] = []
    try:
        lines = nvidia_driver.describe_plans(nvidia_driver.plan_drivers(cluster), repository, image, version)
        unowned = nvidia_driver.unowned_nodes(cluster)
        stages = nvidia_driver.plan_stages(
            cluster, repository=repository, image=image, version=version, available=available
        )
    except nvidia_driver.DriverConflict as exc:
        lines, unowned = [str(exc)], ()
    except nvidia_driver.StageRefused as exc:  # its lines between the heading and the closing line
        lines += [line.strip(" -") for line in str(exc).splitlines()[1:-1]]
    except ValueError as exc:  # a driver version the operator cannot use in a precompiled tag
        lines.append(str(exc))
    else:
        lines += [f"by hand, {line}" for line in nvidia_driver.describe_stages(stages)]
        commands = nvidia_driver.stage_commands(stages)
    if unowned:
        lines.append(f"GPU node(s) {', '.join(unowned)}: no NVIDIADriver selects them, so they get no driver")
    text = (
        f"not patching the ClusterPolicy: {nvidia_driver.describe_mode(cluster)}; "
        "its spec.driver is not read.\n"
        + "\n".join(f"  - {line}" for line in lines)
        + "\nThe ClusterPolicy path does not apply: the NVIDIADriver resources are rolled out stage by "
        "stage instead (plan_nvidia_drivers, roll_out_nvidia_drivers); nothing on the cluster was changed."
    )
    if commands:  # last: the report keeps the beginning of a long reason, the task log all of it
        text += "\nThe stages as commands (guarded patches, exact undos):\n" + "\n".join(commands)
    return text


@dataclass(frozen=True)
class DriverRollout:
    """NVIDIADriver mode: the stages to roll out (canary first) and what the report says about them."""

    mode_note: str
    pools: tuple[str, ...]  # each NVIDIADriver's pools as the operator runs them now
    stages: tuple[nvidia_driver.Stage, ...]
    stage_lines: tuple[str, ...]  # per stage: the change, what verification waits for, the undo
    commands: tuple[str, ...]  # the same as kubectl commands (for the log)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for XCom; ``mode`` tells the report and the approval which plan this is."""
        return {"mode": nvidia_driver.NVIDIA_DRIVER, "kernels": [], **asdict(self)}


def plan_nvidia_drivers(
    cluster: ClusterState,
    *,
    repository: str,
    image: str,
    version: str,
    available: Mapping[str, str],
    allow_driver_restart: bool = False,
    canary: str = "",
) -> DriverRollout:
    """NVIDIADriver mode's plan: one stage per NVIDIADriver that owns GPU nodes, canary first.

    Raises ``RolloutBlocked`` (before anything changes) where the operator refuses the CRs as they are
    (overlapping selectors), where a pool has no published image, where a compiled NVIDIADriver would
    have to be replaced without ``allow_driver_restart``, or for an unknown canary; the message lists
    each NVIDIADriver's pools and what the user must do.
    """
    mode = nvidia_driver.describe_mode(cluster)
    pools: list[str] = []
    try:
        pools = nvidia_driver.describe_plans(nvidia_driver.plan_drivers(cluster), repository, image, version)
        unowned = nvidia_driver.unowned_nodes(cluster)
        if unowned:
            pools.append(
                f"GPU node(s) {', '.join(unowned)}: no NVIDIADriver selects them, so they get no driver"
            )
        stages = nvidia_driver.plan_stages(
            cluster,
            repository=repository,
            image=image,
            version=version,
            available=available,
            allow_driver_restart=allow_driver_restart,
            canary=canary,
        )
    except nvidia_driver.DriverConflict as exc:
        problems = [str(exc)]
    except nvidia_driver.StageRefused as exc:  # its lines between the heading and the closing line
        problems = [line.strip(" -") for line in str(exc).splitlines()[1:-1]]
    except ValueError as exc:  # an unknown canary, a driver version the operator cannot tag
        problems = [str(exc)]
    else:
        if stages:
            return DriverRollout(
                mode_note=mode,
                pools=tuple(pools),
                stages=stages,
                stage_lines=tuple(nvidia_driver.describe_stages(stages)),
                commands=tuple(nvidia_driver.stage_commands(stages)),
            )
        problems = [
            "no NVIDIADriver owns a GPU node: create one NVIDIADriver per node pool (spec.nodeSelector), "
            "then run again"
        ]
    listed = [line for line in pools if line not in problems]
    raise RolloutBlocked(
        f"not rolling out the NVIDIADriver resources: {mode}\n"
        + "\n".join(f"  - {line}" for line in [*problems, *listed])
        + "\nThe images of this run are published all the same; nothing on the cluster was changed."
    )


def plan_rollout(
    cluster: ClusterState,
    *,
    repository: str,
    image: str,
    version: str,
    available: Mapping[str, str],
) -> RolloutPlan:
    """Refuse what precompiled mode cannot serve, apply the coverage gate, compute the guarded patch and undo.

    ``available`` maps final image references to digests: images pushed by this run, published under extra
    OS tags, or already there. Raises ``RolloutBlocked`` naming every refusal, or every uncovered
    (kernel, OS tag) pair.
    """
    if nvidia_driver.driver_mode(cluster) == nvidia_driver.NVIDIA_DRIVER:
        raise RolloutBlocked(nvidia_driver_refusal(cluster, repository, image, version, available))
    if cluster.policy is None:
        raise RolloutBlocked(
            "no ClusterPolicy was found: install the GPU Operator and create its ClusterPolicy first"
        )
    problems = policy_refusals(cluster.policy) + node_refusals(cluster.nodes, cluster.operator_version)
    if problems:
        raise RolloutBlocked(
            "not patching the ClusterPolicy: precompiled drivers cannot serve this cluster as it is\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\nThe images of this run are published all the same; nothing on the cluster was changed."
        )
    # Refuses GDS/GDRCopy policies first; guards the whole driver section read by inspect_cluster.
    patch = cluster_policy.plan_enable(cluster.policy, repository=repository, image=image, version=version)
    tags = os_tag.cluster_os_tags(cluster.nodes, cluster.operator_version)
    wanted = kernel_rollouts(cluster.nodes, repository, image, version, tags)
    missing = [
        f"  {k.kernel} under OS tag {tag} (nodes {', '.join(k.nodes)}): no {ref}"
        for k in wanted
        for tag, ref in k.images.items()
        if not available.get(ref)
    ]
    if missing:
        raise RolloutBlocked(
            "not patching the ClusterPolicy: these GPU-node kernels have no driver image under every OS tag "
            "the operator may use\n"
            + "\n".join(missing)
            + f"\n{os_tag.describe(tags, cluster.operator_version)}.\n"
            "Build for the release those nodes run (form: ocp_versions), then run again."
        )
    kernels = tuple(
        KernelRollout(**{**asdict(k), "digests": {ref: available[ref] for ref in k.images.values()}})
        for k in wanted
    )
    previous = cluster_policy.driver_spec(cluster.policy)
    applied = cluster_policy.driver_spec(cluster_policy.apply_patch(cluster.policy, patch))
    return RolloutPlan(
        kernels=kernels,
        os_tags=tags,
        os_tag_note=os_tag.describe(tags, cluster.operator_version),
        previous_driver=previous,
        patch=patch,
        rollback=cluster_policy.rollback_patch(previous, applied),
        summary=cluster_policy.describe_patch(patch),
        upgrade_note=cluster_policy.upgrade_policy_note(cluster.policy),
    )
