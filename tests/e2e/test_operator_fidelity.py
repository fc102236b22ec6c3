"""The real DAG against a GPU-operator stand-in that behaves like NVIDIA's operator in ClusterPolicy mode.

The demo fleet mixes RHCOS 4.18 and RHEL 9.6 GPU nodes (every 4.18 -> 4.19 upgrade passes through that):
the operator takes ONE OS tag for all kernels from whichever GPU node it lists first
(gpu-operator state_manager.go getGPUNodeOSInfo), so both orders must roll out.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from harness.dag_runner import task_states, xcom
from precompiled_drivers import kernel_module

pytestmark = pytest.mark.e2e
OPERATOR_NS = "nvidia-gpu-operator"


def driver_images(world) -> dict[str, str]:
    """Node -> image of its current (Ready) driver pod."""
    return {
        p["spec"]["nodeName"]: p["spec"]["containers"][0]["image"]
        for p in world.cluster.store.list_objects("Pod", OPERATOR_NS)
        if (p.get("status") or {}).get("containerStatuses", [{}])[0].get("ready")
    }


@pytest.mark.parametrize(("order", "tag"), [("name", "rhcos4.18"), ("reverse", "rhel9")])
def test_mixed_fleet_rolls_out_whichever_node_the_operator_lists_first(world, run_dag, order, tag) -> None:
    world.cluster.operator.list_order = order
    dag_run = run_dag(driver_versions=["570.158.01"])
    assert dag_run.state == "success", task_states(dag_run)
    images = driver_images(world)
    assert set(images) == {"gpu-worker-0", "gpu-worker-1", "gpu-worker-2"}
    assert all(image.endswith(f"-{tag}") for image in images.values()), images
    # One build per kernel; the other OS tag is a copy with the same digest, not a second build.
    assert len(world.builds) == 2
    copies = xcom(dag_run, "publish_os_tags")
    assert len(copies) == 2 and all(copies.values())
    report = xcom(dag_run, "report")
    assert "uses ONE OS tag for every kernel" in report
    assert f"  {tag}  " in next(line for line in report.splitlines() if line.startswith("5.14.0-570"))


def test_rt_node_is_refused_before_the_patch_and_the_other_kernels_are_built(world, run_dag) -> None:
    # NFD's label for uname '...x86_64+rt'; NVIDIA's build refuses PREEMPT_RT, the operator cannot name it.
    world.cluster.store.add_node("gpu-rt-0", "5.14.0-427.50.1.el9_4.x86_64_rt", "rhcos", "4.18", gpu=True)
    before = world.policy_driver()
    dag_run = run_dag(driver_versions=["570.158.01"])
    states = task_states(dag_run)
    assert dag_run.state == "failed"
    assert states["plan_rollout"] == "failed"
    assert states["patch_cluster_policy"] == "upstream_failed"
    assert len(world.builds) == 2, "the kernels precompiled mode can serve are still built and pushed"
    assert states["push_driver_image[0]"] == states["push_driver_image[1]"] == "success"
    assert world.policy_driver() == before
    report = xcom(dag_run, "report")
    assert report.startswith("Run FAILED at plan_rollout: not patching the ClusterPolicy"), report
    assert "gpu-rt-0 run the real-time kernel" in report


def test_nvidiadriver_mode_is_never_patched_or_waited_for(world, run_dag) -> None:
    policy = world.cluster.store.get_object("ClusterPolicy", "gpu-cluster-policy")
    policy["spec"]["driver"]["useNvidiaDriverCRD"] = True
    world.cluster.store.put("ClusterPolicy", policy)
    before = world.policy_driver()
    dag_run = run_dag(driver_versions=["570.158.01"])
    states = task_states(dag_run)
    assert dag_run.state == "failed"
    assert states["plan_rollout"] == "failed"
    assert states["verify_rollout"] == "upstream_failed"  # no 30-minute wait on a field nobody reads
    assert world.policy_driver() == before
    report = xcom(dag_run, "report")
    assert report.startswith("Run FAILED at plan_rollout"), report
    assert "spec.driver.useNvidiaDriverCRD is true" in report
    # rollout.nvidia_driver_refusal: NVIDIADriver mode with no NVIDIADriver resource to roll out.
    assert "no NVIDIADriver owns a GPU node: create one NVIDIADriver per node pool" in report
    assert states["roll_out_nvidia_drivers"] == "upstream_failed"


def module_type_label(world, image: str) -> str:
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{image}"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)["Labels"].get(kernel_module.LABEL, "")


def test_kernel_module_type_decides_the_build_and_a_tag_of_the_other_type_is_rebuilt(world, run_dag) -> None:
    # Images prepared ahead (dry run) while the policy asked for proprietary modules.
    policy = world.cluster.store.get_object("ClusterPolicy", "gpu-cluster-policy")
    policy["spec"]["driver"]["kernelModuleType"] = "proprietary"
    world.cluster.store.put("ClusterPolicy", policy)
    first = run_dag(driver_versions=["570.158.01"], dry_run=True)
    assert first.state == "success", task_states(first)
    image = xcom(first, "push_driver_image", 0)["image"]
    assert module_type_label(world, image) == "proprietary"
    assert "proprietary" in xcom(first, "report")

    # The policy now asks for auto: open modules on the 570 branch. The existing tags carry proprietary
    # modules, so they are not "already published": both kernels are rebuilt, then rolled out.
    policy = world.cluster.store.get_object("ClusterPolicy", "gpu-cluster-policy")
    policy["spec"]["driver"]["kernelModuleType"] = "auto"
    world.cluster.store.put("ClusterPolicy", policy)
    second = run_dag(driver_versions=["570.158.01"])
    assert second.state == "success", task_states(second)
    assert len(world.builds) == 4
    assert module_type_label(world, image) == "open"
    assert xcom(second, "verify_rollout")["verified"] is True
