"""The pipeline's steps in procedure order: the one list the DAG, the report, the docs and the tests read.

Pure (no Airflow): ``report`` and ``dag_docs`` import it too. Each entry is one task of the DAG, named
after its step: a Python task (``tasks.<task_id>``) or a pod (``steps/<task_id>.py`` and
``scripts/<task_id>.sh``). The DAG file wires them; ``check_order`` holds it to this list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Step:
    """One task of the DAG: its id, how it runs, what it does, and how it is mapped."""

    task_id: str
    kind: Literal["python", "pod", "approval"]  # approval: a person answers (Airflow human-in-the-loop)
    doc: str
    per: Literal["release", "image"] | None = None  # mapped: one pod per release / per image
    tool: str = ""  # the main tool of a pod step's script, for the docs ("oc", "skopeo", "podman")

    @property
    def runs_as(self) -> str:
        """How the step runs, as the docs' step table says it (``pod per image (podman)``)."""
        if self.kind == "python":
            return "Python"
        if self.kind == "approval":
            return "human in the loop"
        per = f" per {self.per}" if self.per else ""
        return f"pod{per}" + (f" ({self.tool})" if self.tool else "")


STEPS: tuple[Step, ...] = (
    Step(
        "validate_inputs",
        "python",
        "checks every form field, release event and setting; nothing starts before",
    ),
    Step(
        "inspect_cluster",
        "pod",
        "GPU nodes with their kernels and OS, GPU Operator, ClusterPolicy, version",
        tool="oc",
    ),
    Step("plan_releases", "python", "form/event releases + the cluster's release + its upgrade targets"),
    Step("resolve_driver_toolkit", "pod", "`oc adm release info --image-for=driver-toolkit`", per="release"),
    Step(
        "inspect_driver_toolkit", "pod", "reads the kernel and RHEL version of the DTK image", per="release"
    ),
    Step("plan_builds", "python", "releases x driver versions: image tag, build directory, OS tag"),
    Step("check_published_images", "pod", "which tags already exist in the target repository", tool="skopeo"),
    Step("select_builds", "python", "drops existing tags (unless *Force rebuild*)"),
    Step("build_driver_image", "pod", "NVIDIA's `make image`, pushed to staging", per="image", tool="podman"),
    Step(
        "push_driver_image",
        "pod",
        "copies staging to the target repository, digest checked",
        per="image",
        tool="skopeo",
    ),
    Step(
        "publish_os_tags",
        "pod",
        "copies each image, by digest, to every other OS tag the operator may look for",
        tool="skopeo",
    ),
    Step(
        "plan_rollout",
        "python",
        "refuses nodes precompiled mode cannot serve; coverage gate: every GPU-node kernel has an image "
        "under every OS tag the cluster reports; the guarded patch",
    ),
    Step(
        "record_readiness",
        "pod",
        "per planned release, whether every image it needs is published: the report and a ConfigMap "
        "(`precompiled-drivers-readiness`), also when the gate refuses",
        tool="oc",
    ),
    Step(
        "approve_rollout",
        "approval",
        "when approval is required: a person approves the patch (Required Actions) seeing the gate, the "
        "ClusterPolicy diff and the kernel -> image table; reject or timeout: no patch, images stay "
        "published; otherwise passes at once",
    ),
    Step(
        "patch_cluster_policy",
        "pod",
        "switches the ClusterPolicy to `usePrecompiled` (*Dry run*: prints)",
        tool="oc",
    ),
    Step(
        "roll_out_nvidia_drivers",
        "pod",
        "NVIDIADriver mode instead of the ClusterPolicy steps: one NVIDIADriver at a time, canary first "
        "(guarded patch, or replacement when *Allow driver restart*), each verified (its pools' driver pods "
        "Ready on the pushed digest, status ready, then the GPU workload check per pool); the first failure "
        "restores that NVIDIADriver exactly and stops, stages already verified stay (*Dry run*: prints)",
        tool="oc",
    ),
    Step("verify_rollout", "pod", "waits until the new driver pods are Ready on every kernel", tool="oc"),
    Step(
        "check_gpu_workload",
        "pod",
        "per kernel, one pod on one GPU runs NVIDIA's CUDA vectorAdd sample (or `nvidia-smi`); which node, "
        "what it printed (off: `PRECOMPILED_DRIVERS_GPU_CHECK=false`)",
        tool="oc",
    ),
    Step("needs_rollback", "python", "only when the patch, its verification or the GPU check failed"),
    Step("rollback_cluster_policy", "pod", "restores the previous `spec.driver` exactly", tool="oc"),
    Step(
        "report",
        "python",
        "the run's summary (its log, and the run page's *Pipeline report* tab); fails the run if any step "
        "failed",
    ),
)

TASK_IDS: tuple[str, ...] = tuple(s.task_id for s in STEPS)
_BY_ID = {s.task_id: s for s in STEPS}


def step(task_id: str) -> Step:
    """The registry entry of a step, e.g. ``step("push_driver_image").per == "image"``."""
    return _BY_ID[task_id]


def pod_steps() -> tuple[Step, ...]:
    """The steps that run as pods, in procedure order."""
    return tuple(s for s in STEPS if s.kind == "pod")


def step_of(task_id: str) -> str:
    """The step a task runs: its id without its cluster group (``dev.verify_rollout``: ``verify_rollout``)."""
    return task_id.rpartition(".")[2]


def sibling(task_id: str, step: str) -> str:
    """The task of ``step`` for the same cluster as ``task_id``: in its group for a fleet's cluster
    (``prod-a.verify_rollout`` -> ``prod-a.patch_cluster_policy``), the bare step id for one cluster."""
    group, dot, _ = task_id.rpartition(".")
    return f"{group}{dot}{step}"


def check_order(task_ids: Sequence[str]) -> None:
    """Refuse a DAG whose tasks are not the registry's steps in procedure order (names the difference).

    A fleet's per-cluster steps are in one group per cluster (``dev.inspect_cluster``): each step counts
    where it first appears, so the groups of later clusters repeat steps without reordering them.
    """
    steps = tuple(dict.fromkeys(step_of(t) for t in task_ids))
    if steps != TASK_IDS:
        missing = [t for t in TASK_IDS if t not in steps]
        extra = [t for t in steps if t not in TASK_IDS]
        raise ValueError(
            f"the DAG's tasks {list(task_ids)} are not precompiled_drivers.procedure.STEPS in order "
            f"(missing {missing}, not registered {extra}): add a new step to procedure.STEPS where it runs"
        )
