"""Rollout rules: the coverage gate, what verification must see, and the ClusterPolicy patches.

The ClusterPolicy is patched only when every kernel running on a GPU node has an image, under the
exact reference the installed GPU Operator will look for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from precompiled_drivers import cluster_policy, naming
from precompiled_drivers.cluster import ClusterState, GpuNode


class RolloutBlocked(RuntimeError):
    """Patching now would leave a GPU node without a driver image; the message lists which."""


@dataclass(frozen=True)
class KernelRollout:
    """What one kernel's driver DaemonSet must run after the patch."""

    kernel: str
    os_tag: str
    daemonset: str
    image: str
    digest: str
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class RolloutPlan:
    """The patch to apply, how to undo it, and what verification expects."""

    kernels: tuple[KernelRollout, ...]
    previous_driver: dict[str, Any]
    patch: list[dict[str, Any]]
    rollback: list[dict[str, Any]]
    summary: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for XCom."""
        return asdict(self)

    @property
    def expected_lines(self) -> str:
        """verify_rollout.sh's EXPECTED input: ``<sanitized kernel> <image> <digest>`` per line."""
        return "\n".join(f"{naming.sanitize_kernel(k.kernel)} {k.image} {k.digest}" for k in self.kernels)


def kernel_rollouts(
    nodes: Iterable[GpuNode], repository: str, image: str, version: str, operator_version: str
) -> list[KernelRollout]:
    """Group GPU nodes by (kernel, OS) and name the image the operator will pull for each group."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for node in nodes:
        groups.setdefault((node.kernel, node.os_id, node.os_version_id), []).append(node.name)
    rollouts = []
    for (kernel, os_id, os_version_id), names in sorted(groups.items()):
        tag_os = naming.os_tag(os_id, os_version_id, operator_version)
        rollouts.append(
            KernelRollout(
                kernel=kernel,
                os_tag=tag_os,
                daemonset=naming.daemonset_name(kernel, os_id, os_version_id),
                image=naming.operator_image(repository, image, version, kernel, tag_os),
                digest="",
                nodes=tuple(sorted(names)),
            )
        )
    return rollouts


def plan_rollout(
    cluster: ClusterState,
    *,
    repository: str,
    image: str,
    version: str,
    available: Mapping[str, str],
) -> RolloutPlan:
    """Apply the coverage gate and compute the guarded patch and its exact undo.

    ``available`` maps final image references to digests: images pushed by this run plus those that
    already existed. Raises ``RolloutBlocked`` naming every uncovered kernel.
    """
    if cluster.policy is None:
        raise RolloutBlocked(
            "no ClusterPolicy was found: install the GPU Operator and create its ClusterPolicy first"
        )
    # Refuses GDS/GDRCopy policies first; guards the whole driver section read by inspect_cluster.
    patch = cluster_policy.plan_enable(cluster.policy, repository=repository, image=image, version=version)
    wanted = kernel_rollouts(cluster.nodes, repository, image, version, cluster.operator_version)
    missing = [k for k in wanted if not available.get(k.image)]
    if missing:
        lines = "\n".join(f"  {k.kernel} ({k.os_tag}) on {', '.join(k.nodes)}: no {k.image}" for k in missing)
        raise RolloutBlocked(
            "not patching the ClusterPolicy: these GPU-node kernels have no driver image yet\n"
            f"{lines}\nBuild for the release those nodes run (form: ocp_versions), then run again."
        )
    kernels = tuple(KernelRollout(**{**asdict(k), "digest": available[k.image]}) for k in wanted)
    previous = cluster_policy.driver_spec(cluster.policy)
    applied = cluster_policy.driver_spec(cluster_policy.apply_patch(cluster.policy, patch))
    return RolloutPlan(
        kernels=kernels,
        previous_driver=previous,
        patch=patch,
        rollback=cluster_policy.rollback_patch(previous, applied),
        summary=cluster_policy.describe_patch(patch),
    )
