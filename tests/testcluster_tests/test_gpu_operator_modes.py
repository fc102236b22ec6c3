"""The GPU-operator stand-in does what NVIDIA's operator does where our pipeline must refuse or survive.

Each case cites the upstream function it copies (NVIDIA/gpu-operator v26.7.0, controllers/).
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import wait_for

from testcluster import TestCluster
from testcluster.gpu_naming import daemonset_name
from testcluster.registry import Registry

K_A = "5.14.0-427.50.1.el9_4.x86_64"
K_B = "5.14.0-570.12.1.el9_6.x86_64"
NS = "nvidia-gpu-operator"


def _policy(registry: Registry, **driver: Any) -> dict[str, Any]:
    spec = {
        "enabled": True,
        "usePrecompiled": True,
        "repository": f"{registry.host}/nvidia",
        "image": "driver",
        "version": "570.158.01",
        **driver,
    }
    return {"metadata": {"name": "gpu-cluster-policy"}, "spec": {"driver": spec}}


def _images(cluster: TestCluster) -> dict[str, str]:
    """Node -> image of its driver pod."""
    return {
        p["spec"]["nodeName"]: p["spec"]["containers"][0]["image"]
        for p in cluster.store.list_objects("Pod", NS)
    }


def _status(cluster: TestCluster) -> dict[str, Any]:
    return cluster.store.get_object("ClusterPolicy", "gpu-cluster-policy").get("status") or {}


def _mixed_fleet(cluster: TestCluster) -> None:
    cluster.store.add_node("gpu-a", K_A, "rhcos", "4.18")
    cluster.store.add_node("gpu-b", K_B, "rhel", "9.6")


@pytest.mark.parametrize(("order", "tag"), [("name", "rhcos4.18"), ("reverse", "rhel9")])
def test_one_os_tag_for_the_whole_cluster_from_the_first_node_listed(
    test_cluster: TestCluster, registry: Registry, order: str, tag: str
) -> None:
    # state_manager.go getGPUNodeOSInfo (client.Limit(1)) + object_controls.go resolveDriverTag.
    _mixed_fleet(test_cluster)
    test_cluster.store.put("ClusterPolicy", _policy(registry))
    operator = test_cluster.enable_operator("v26.7.0", registry=registry.host)
    operator.list_order = order
    operator.reconcile_now()
    base = f"{registry.host}/nvidia/driver:570.158.01"
    # (Pods of a reconcile that ran before the order was set go away after their grace period.)
    wait_for(
        lambda: _images(test_cluster) == {"gpu-a": f"{base}-{K_A}-{tag}", "gpu-b": f"{base}-{K_B}-{tag}"}
    )
    # DaemonSet names keep each node's raw ID+VERSION_ID (getKernelVersionsMap).
    names = {d["metadata"]["name"] for d in test_cluster.store.list_objects("DaemonSet", NS)}
    assert names == {daemonset_name(K_A, "rhcos", "4.18"), daemonset_name(K_B, "rhel", "9.6")}


def test_same_kernel_on_two_os_releases_stops_the_operator(
    test_cluster: TestCluster, registry: Registry
) -> None:
    # object_controls.go getKernelVersionsMap returns an error: nothing is created.
    test_cluster.store.add_node("gpu-a", K_A, "rhcos", "4.18")
    test_cluster.store.add_node("gpu-b", K_A, "rhel", "9.4")
    test_cluster.store.put("ClusterPolicy", _policy(registry))
    test_cluster.enable_operator("v26.7.0", registry=registry.host).reconcile_now()
    assert test_cluster.store.list_objects("DaemonSet", NS) == []
    status = _status(test_cluster)
    assert status["state"] == "notReady"
    error = next(c for c in status["conditions"] if c["type"] == "Error")
    assert error["status"] == "True"
    assert "different OS versions found for the same kernel version" in error["message"]


def test_rt_kernel_gets_no_daemonset_the_others_do(test_cluster: TestCluster, registry: Registry) -> None:
    # The NFD label of uname '...x86_64+rt' is '..._rt'; the sanitized name holds '..' and the API server
    # refuses it, so precompiledDriverDaemonsets records an error for that kernel and goes on.
    test_cluster.store.add_node("gpu-a", K_A, "rhcos", "4.18")
    test_cluster.store.add_node("gpu-rt", "5.14.0-427.50.1.el9_4.x86_64_rt", "rhcos", "4.18")
    registry.push_test_image("nvidia/driver", f"570.158.01-{K_A}-rhcos4.18")
    test_cluster.store.put("ClusterPolicy", _policy(registry))
    operator = test_cluster.enable_operator("v26.7.0", registry=registry.host)
    operator.reconcile_now()
    assert set(_images(test_cluster)) == {"gpu-a"}
    assert any("is invalid" in e for e in operator.errors)
    wait_for(lambda: _status(test_cluster).get("state") == "notReady")


def test_two_arches_of_one_kernel_release_share_one_daemonset(
    test_cluster: TestCluster, registry: Registry
) -> None:
    # getSanitizedKernelVersion strips the arch: one name, created then updated; the last kernel wins.
    arm = "5.14.0-427.50.1.el9_4.aarch64"
    test_cluster.store.add_node("gpu-a", K_A, "rhcos", "4.18")
    test_cluster.store.add_node("gpu-b", arm, "rhcos", "4.18")
    test_cluster.store.put("ClusterPolicy", _policy(registry))
    test_cluster.enable_operator("v26.7.0", registry=registry.host).reconcile_now()
    [ds] = test_cluster.store.list_objects("DaemonSet", NS)
    assert (
        ds["metadata"]["name"] == daemonset_name(K_A, "rhcos", "4.18") == daemonset_name(arm, "rhcos", "4.18")
    )
    assert set(_images(test_cluster)) == {"gpu-b"}, "the x86_64 node is left without a driver pod"


def test_nvidiadriver_mode_ignores_the_driver_section(test_cluster: TestCluster, registry: Registry) -> None:
    # state_manager.go step(): state-driver skipped, ClusterPolicy driver DaemonSets deleted with
    # DeletePropagationOrphan (the pods keep running until NVIDIADriver resources replace them).
    _mixed_fleet(test_cluster)
    test_cluster.store.put("ClusterPolicy", _policy(registry, usePrecompiled=False))
    operator = test_cluster.enable_operator("v26.7.0", registry=registry.host)
    operator.reconcile_now()
    pods = {p["metadata"]["name"] for p in test_cluster.store.list_objects("Pod", NS)}
    assert len(pods) == 2
    policy = test_cluster.store.get_object("ClusterPolicy", "gpu-cluster-policy")
    policy["spec"]["driver"].update(useNvidiaDriverCRD=True, usePrecompiled=True)
    test_cluster.store.put("ClusterPolicy", policy)
    operator.reconcile_now()
    wait_for(lambda: test_cluster.store.list_objects("DaemonSet", NS) == [])
    assert {p["metadata"]["name"] for p in test_cluster.store.list_objects("Pod", NS)} == pods


def test_driver_disabled_deploys_nothing(test_cluster: TestCluster, registry: Registry) -> None:
    _mixed_fleet(test_cluster)
    test_cluster.store.put("ClusterPolicy", _policy(registry, enabled=False))
    test_cluster.enable_operator("v26.7.0", registry=registry.host).reconcile_now()
    assert test_cluster.store.list_objects("DaemonSet", NS) == []


def test_v26_3_refuses_a_version_id_it_cannot_parse(test_cluster: TestCluster, registry: Registry) -> None:
    # v26.3 state_manager.go getGPUNodeOSTag: strconv.Atoi(major) fails -> the reconcile returns the error.
    test_cluster.store.add_node("gpu-a", K_A, "rhel", "nine")
    test_cluster.store.put("ClusterPolicy", _policy(registry))
    operator = test_cluster.enable_operator("v26.3.1", registry=registry.host)
    operator.reconcile_now()
    assert test_cluster.store.list_objects("DaemonSet", NS) == []
    assert any("error processing OS major version nine" in e for e in operator.errors)
