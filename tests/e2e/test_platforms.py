"""The real DAG on a cluster of several platforms: x86_64, aarch64, a 64k-page aarch64 node, and a
release whose payload carries two Driver Toolkits (driver-toolkit and driver-toolkit-10, RHEL 10 stream).

Every DTK is a single-arch image the kubelet stand-in knows the arch of: a pod without the right
``kubernetes.io/arch`` selector would land on the amd64 node and fail with ``exec format error``.
"""

from __future__ import annotations

import pytest

from harness.dag_runner import task_states, xcom
from harness.pipeline_world import RELEASES, RELEASES_RHEL10, World
from testcluster.resources import by_kind

pytestmark = pytest.mark.e2e

DRIVER = "570.158.01"
K4203 = RELEASES["4.20.3"][0]  # x86_64
K4204_ARM = RELEASES["4.20.4"][0].replace(".x86_64", ".aarch64")
K10_ARM = RELEASES_RHEL10["4.20.4"][0].replace(".x86_64", ".aarch64")
# GPU nodes mid-upgrade from 4.20.3 to 4.20.4, as NFD labels them (a 64k kernel's '+' becomes '_').
NODES = (
    ("gpu-x86-0", K4203, "rhel", "9.6"),
    ("gpu-arm-64k-0", f"{K4204_ARM}_64k", "rhel", "9.6"),
    ("gpu-arm-rhel10-0", K10_ARM, "rhel", "10.0"),  # a rhel-coreos-10 node of the same release
)


def platform_cluster(world: World) -> None:
    """Replace the demo's GPU nodes by the platform mix; the cluster reports 4.20.4."""
    store = world.cluster.store
    for node in store.list_objects("Node"):
        store.delete(by_kind("Node"), None, node["metadata"]["name"])
    for name, kernel, os_id, os_version in NODES:
        store.add_node(name, kernel, os_id, os_version, gpu=True)
    version = store.get_object("ClusterVersion", "version")
    version["spec"]["channel"] = "stable-4.20"
    version["status"] = {
        "desired": {"version": "4.20.4"},
        "history": [{"state": "Completed", "version": "4.20.4"}],
    }
    store.put("ClusterVersion", version)


def test_x86_aarch64_64k_and_two_streams(world: World, run_dag) -> None:
    platform_cluster(world)
    dag_run = run_dag(ocp_versions=["4.20.3"], arches=["x86_64", "aarch64"], driver_versions=[DRIVER])
    states = task_states(dag_run)
    assert dag_run.state == "success", states

    # The right builds: each release x arch, both streams of 4.20.4, and 64k for every aarch64 toolkit
    # (a GPU node runs a 64k kernel).
    k4203_arm = K4203.replace(".x86_64", ".aarch64")
    k4204 = RELEASES["4.20.4"][0]
    k10 = RELEASES_RHEL10["4.20.4"][0]
    expected_tags = {
        f"{DRIVER}-{K4203}-rhel9",
        f"{DRIVER}-{k4203_arm}-rhel9",
        f"{DRIVER}-{k4203_arm}_64k-rhel9",
        f"{DRIVER}-{k4204}-rhel9",
        f"{DRIVER}-{K4204_ARM}-rhel9",
        f"{DRIVER}-{K4204_ARM}_64k-rhel9",
        f"{DRIVER}-{k10}-rhel10",
        f"{DRIVER}-{K10_ARM}-rhel10",
        f"{DRIVER}-{K10_ARM}_64k-rhel10",
    }
    candidates = xcom(dag_run, "plan_builds")["candidates"]
    assert {c["tag"] for c in candidates} == expected_tags
    assert {c["tag"]: c["build_dir"] for c in candidates}[
        f"{DRIVER}-{K10_ARM}-rhel10"
    ] == "rhel10/precompiled"
    assert {c["tag"]: c["build_arch"] for c in candidates}[f"{DRIVER}-{K4204_ARM}_64k-rhel9"] == "aarch64+64k"
    assert {b.rsplit(":", 1)[1] for b in world.builds} == expected_tags
    assert xcom(dag_run, "plan_builds")["rejected"] == []

    # Each pod on a node of its arch, by its selector.
    node_arch = {name: ("arm64" if "aarch64" in kernel else "amd64") for name, kernel, *_ in NODES}
    node_arch["testcluster-node"] = "amd64"
    for task, what, node, selector in world.placements:
        want = "arm64" if "aarch64" in what else "amd64"
        assert selector == {"kubernetes.io/arch": want}, (task, what)
        assert node_arch[node] == want, (task, what, node)
    inspected = sorted(what for task, what, *_ in world.placements if task == "inspect_driver_toolkit")
    assert inspected == ["4.20.3-aarch64", "4.20.3-x86_64", "4.20.4-aarch64", "4.20.4-x86_64"]
    assert len([p for p in world.placements if p[0] == "build_driver_image"]) == len(expected_tags)

    # The gate is satisfied and every GPU node's driver pod runs the pushed image.
    verified = xcom(dag_run, "verify_rollout")
    assert verified["verified"] is True
    # Keyed by the kernel as each GPU node reports it.
    assert sorted(verified["kernels"]) == sorted(kernel for _name, kernel, _os, _version in NODES)
    assert world.policy_driver()["usePrecompiled"] is True

    report = xcom(dag_run, "report")
    print(report)
    for tag in expected_tags:
        assert f":{tag} " in report, tag
    assert report.count("built+pushed") == len(expected_tags)
    assert "driver-toolkit-10 quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:" in report
    assert "left out" not in report
    for kernel in (K4203, f"{K4204_ARM}_64k", K10_ARM):
        row = next(line for line in report.splitlines() if line.startswith(kernel + " "))
        assert row.rstrip().endswith("yes"), row


def test_a_malformed_toolkit_fails_its_release_only_and_visibly(world: World, run_dag) -> None:
    # 4.19.5's toolkit file says RHEL_VERSION "9" (not major.minor): that release cannot be planned.
    kernel, _ = world.releases["4.19.5"]
    world.releases["4.19.5"] = (kernel, "9")
    dag_run = run_dag(ocp_versions=["4.19.3", "4.19.5"], driver_versions=[DRIVER])
    states = task_states(dag_run)
    assert dag_run.state == "failed"
    # Every step did its work for the other releases; only the final report fails the run.
    failed = sorted(task for task, state in states.items() if state != "success")
    assert failed == ["report", "roll_out_nvidia_drivers", "rollback_cluster_policy"], states
    assert states["report"] == "failed"
    # Nothing to undo, and no NVIDIADriver to roll out in ClusterPolicy mode.
    assert states["rollback_cluster_policy"] == states["roll_out_nvidia_drivers"] == "skipped"
    assert xcom(dag_run, "report").startswith("Run FAILED: release 4.19.5-x86_64 left out: ")
    assert {b.rsplit(":", 1)[1] for b in world.builds} == {
        f"{DRIVER}-{RELEASES['4.18.12'][0]}-rhcos4.18",
        f"{DRIVER}-{RELEASES['4.19.3'][0]}-rhel9",
    }
    assert xcom(dag_run, "verify_rollout")["verified"] is True  # the GPU nodes' kernels were covered
    [rejected] = xcom(dag_run, "plan_builds")["rejected"]
    assert (rejected["version"], rejected["arch"]) == ("4.19.5", "x86_64")
    assert "RHEL_VERSION: got '9'" in rejected["error"]
