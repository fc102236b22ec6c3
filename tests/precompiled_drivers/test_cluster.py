"""Parsing inspect_cluster's XCom: GPU nodes, the GPU Operator version, the ClusterPolicy."""

from __future__ import annotations

from typing import Any

import pytest

from precompiled_drivers.cluster import (
    KERNEL_LABEL,
    OS_ID_LABEL,
    OS_VERSION_LABEL,
    ClusterError,
    GpuNode,
    operator_version_of,
    parse_cluster,
    parse_nodes,
)
from precompiled_drivers.validation import ValidationError

K418 = "5.14.0-427.50.1.el9_4.x86_64"
K419 = "5.14.0-570.12.1.el9_6.x86_64"


def node(name: str, kernel: str = K418, os_id: str = "rhcos", version: str = "4.18") -> dict[str, Any]:
    labels = {
        "kubernetes.io/hostname": name,
        "nvidia.com/gpu.present": "true",
        KERNEL_LABEL: kernel,
        OS_ID_LABEL: os_id,
        OS_VERSION_LABEL: version,
    }
    return {"name": name, "labels": labels}


def deployment(image: str, olm_owner: str | None = None) -> dict[str, Any]:
    labels = {"app": "gpu-operator"} | ({"olm.owner": olm_owner} if olm_owner else {})
    return {
        "metadata": {"name": "gpu-operator", "labels": labels},
        "spec": {"template": {"spec": {"containers": [{"name": "gpu-operator", "image": image}]}}},
    }


POLICY = {"metadata": {"name": "gpu-cluster-policy"}, "spec": {"driver": {"enabled": True}}}


def xcom(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "nodes": [node("gpu-b"), node("gpu-a", K419, "rhel", "9.6"), None],
        "operator": deployment("nvcr.io/nvidia/gpu-operator:v26.7.0"),
        "policy": POLICY,
        "cluster_version": "4.18.12",
        "cluster_channel": "stable-4.18",
    }
    base.update(overrides)
    return base


def test_nodes_with_nfd_labels() -> None:
    nodes = parse_nodes([node("gpu-b"), node("gpu-a", K419, "rhel", "9.6"), None])
    assert nodes == (
        GpuNode("gpu-a", K419, "rhel", "9.6"),
        GpuNode("gpu-b", K418, "rhcos", "4.18"),
    )


@pytest.mark.parametrize("label", [KERNEL_LABEL, OS_ID_LABEL, OS_VERSION_LABEL])
def test_missing_label_names_node_and_label(label: str) -> None:
    bad = node("gpu-7")
    del bad["labels"][label]
    with pytest.raises(ClusterError) as err:
        parse_nodes([node("gpu-1"), bad, None])
    assert "'gpu-7'" in str(err.value)
    assert label in str(err.value)
    assert "Node Feature Discovery" in str(err.value)


def test_node_without_labels_lists_all_three() -> None:
    with pytest.raises(ClusterError) as err:
        parse_nodes([{"name": "bare", "labels": None}])
    for label in (KERNEL_LABEL, OS_ID_LABEL, OS_VERSION_LABEL):
        assert label in str(err.value)


def test_hostile_kernel_label_is_refused_naming_the_node() -> None:
    with pytest.raises(ValidationError) as err:
        parse_nodes([node("gpu-1", kernel="5.14.0;reboot.x86_64")])
    assert err.value.field == f"node gpu-1 {KERNEL_LABEL}"


def test_kernels_are_distinct_and_sorted() -> None:
    state = parse_cluster(xcom(nodes=[node("a", K419), node("b", K418), node("c", K419), None]))
    assert state.kernels == (K418, K419)


def test_parse_cluster() -> None:
    state = parse_cluster(xcom())
    assert [n.name for n in state.nodes] == ["gpu-a", "gpu-b"]
    assert state.operator_version == "v26.7.0"
    assert state.policy == POLICY
    assert state.cluster_version == "4.18.12"


@pytest.mark.parametrize("nodes", [[None], [], None])
def test_no_gpu_nodes(nodes: list[Any] | None) -> None:
    with pytest.raises(ClusterError) as err:
        parse_cluster(xcom(nodes=nodes))
    assert "nvidia.com/gpu.present=true" in str(err.value)


@pytest.mark.parametrize(
    ("dep", "expected"),
    [
        (deployment("nvcr.io/nvidia/gpu-operator:v26.7.0"), "v26.7.0"),
        (deployment("nvcr.io/nvidia/gpu-operator:v25.10.1"), "v25.10.1"),
        (deployment("registry.local:5000/nvidia/gpu-operator:26.3.1"), "v26.3.1"),
        (deployment("nvcr.io/nvidia/gpu-operator:v26.7"), "v26.7"),
        # OLM installs by digest: the CSV name in olm.owner carries the version.
        (
            deployment(
                "registry.connect.redhat.com/nvidia/gpu-operator@sha256:" + "a" * 64,
                "gpu-operator-certified.v26.7.0",
            ),
            "v26.7.0",
        ),
        # Tag and digest: the digest is what runs, trust the OLM label.
        (
            deployment(
                "nvcr.io/nvidia/gpu-operator:v25.3.0@sha256:" + "b" * 64, "gpu-operator-certified.v26.3.0"
            ),
            "v26.3.0",
        ),
        # A registry port is not a tag.
        (deployment("registry.local:5000/gpu-operator", "gpu-operator-certified.v25.10.0"), "v25.10.0"),
        (deployment("nvcr.io/nvidia/gpu-operator:latest"), ""),
        (deployment("nvcr.io/nvidia/gpu-operator@sha256:" + "c" * 64), ""),
        ({"spec": {"template": {"spec": {"containers": []}}}}, ""),
        (None, ""),
        ({}, ""),
    ],
)
def test_operator_version_of(dep: dict[str, Any] | None, expected: str) -> None:
    assert operator_version_of(dep) == expected


def test_operator_version_from_olm_in_parse_cluster() -> None:
    dep = deployment("nvcr.io/nvidia/gpu-operator@sha256:" + "d" * 64, "gpu-operator-certified.v26.7.0")
    assert parse_cluster(xcom(operator=dep)).operator_version == "v26.7.0"


def test_override_wins() -> None:
    assert parse_cluster(xcom(), operator_override="v25.10.1").operator_version == "v25.10.1"


def test_override_needed_when_unknown() -> None:
    assert parse_cluster(xcom(operator=None), "v26.3.0").operator_version == "v26.3.0"
    with pytest.raises(ClusterError) as err:
        parse_cluster(xcom(operator=None))
    assert "operator_version" in str(err.value)


def test_missing_policy_and_version_are_optional() -> None:
    state = parse_cluster(xcom(policy=None, cluster_version=""))
    assert state.policy is None
    assert state.cluster_version == ""


def test_bad_cluster_version_is_refused() -> None:
    with pytest.raises(ValidationError) as err:
        parse_cluster(xcom(cluster_version="4.18.12; id"))
    assert err.value.field == "cluster_version"
