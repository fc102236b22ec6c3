"""The GPU-operator stand-in, NVIDIADriver mode: per-pool DaemonSets, immutable fields, conflicts, status."""

from __future__ import annotations

import pytest
from helpers import custom_api, wait_for
from kubernetes.client.exceptions import ApiException

from precompiled_drivers import nvidia_driver as nvd
from precompiled_drivers.cluster import parse_cluster
from testcluster import TestCluster
from testcluster.nvd_operator import OWNER_LABEL, Pool, app_name, image_path, os_tag, sanitized_kernel
from testcluster.registry import Registry
from testcluster.resources import by_kind

K_A = "5.14.0-427.50.1.el9_4.x86_64"
K_B = "5.14.0-570.12.1.el9_6.x86_64"
NS = "nvidia-gpu-operator"
POOL_LABEL = "example.com/pool"


def test_app_name_matches_upstream_unit_test_vectors() -> None:
    # NVIDIA/gpu-operator internal/state/driver_test.go TestGetDriverAppName / TestGetDriverAppNameRHCOS.
    uid = "bfac7359-6033-45ce-88d6-53db0078526e"
    assert app_name("gpu", uid, Pool(os_tag("ubuntu", "20.04"))) == "nvidia-gpu-driver-ubuntu20.04-67cc6dbb79"
    with_kernel = Pool(os_tag("ubuntu", "20.04"), kernel="5.15.0-70-generic")
    assert app_name("gpu", uid, with_kernel) == "nvidia-gpu-driver-ubuntu20.04-59b779bcc5"
    long_os = Pool(os_tag("redhatCoreOS", "4.14-414.92.202309282257"), kernel="5.15.0-70-generic")
    assert app_name("gpu", uid, long_os) == "nvidia-gpu-driver-redhatCoreOS4.14-414.92.2023092822-59b779bcc5"
    assert len(app_name("gpu", uid, long_os)) == 63
    for os_id, version, tag in (("rocky", "9.6", "rocky9"), ("ol", "9.7", "ol9"), ("rhel", "10.1", "rhel10")):
        pool = Pool(os_tag(os_id, version), kernel="5.15.0-70-generic")
        assert app_name("gpu", uid, pool) == f"nvidia-gpu-driver-{tag}-59b779bcc5"
    rhcos = Pool(os_tag("rhcos", "4.14"), rhcos="414.92.202309282257")
    assert (
        app_name("gpu", "d5b3a1f2-38a9-4b72-bff1-21fd569fd305", rhcos)
        == "nvidia-gpu-driver-rhcos4.14-6f4fc4fc6"
    )


def test_image_path_rules() -> None:
    pool = Pool("rhcos4.18", kernel=K_A)
    spec = {"repository": "quay.io/x", "image": "driver", "version": "570.1", "usePrecompiled": True}
    assert image_path(spec, pool) == f"quay.io/x/driver:570.1-{K_A}-rhcos4.18"
    assert image_path({**spec, "usePrecompiled": False}, pool) == "quay.io/x/driver:570.1-rhcos4.18"
    with pytest.raises(RuntimeError, match="digest is not supported when precompiled"):
        image_path({**spec, "version": "sha256:" + "a" * 64}, pool)
    with pytest.raises(RuntimeError, match="repository, image and version must all be set"):
        image_path({"image": "driver", "version": "570.1"}, pool)
    assert sanitized_kernel("5.14.0-427.37.1.el9_4.aarch64_64k") == "5.14.0-427.37.1.el9.4"


def _cluster(test_cluster: TestCluster, registry: Registry, gpu_cluster: bool = False) -> None:
    store = test_cluster.store
    store.add_node("gpu-a1", K_A, "rhcos", "4.18", extra_labels={POOL_LABEL: "a"})
    store.add_node("gpu-a2", K_A, "rhcos", "4.18", extra_labels={POOL_LABEL: "a"})
    store.add_node("gpu-b1", K_B, "rhel", "9.6", extra_labels={POOL_LABEL: "b"})
    store.add_node("cpu-1", K_B, "rhel", "9.6", gpu=False, extra_labels={POOL_LABEL: "b"})
    if gpu_cluster:
        store.put("GPUCluster", {"metadata": {"name": "gpu-cluster"}, "spec": {}})
    else:
        store.put(
            "ClusterPolicy",
            {"metadata": {"name": "gpu-cluster-policy"}, "spec": {"driver": {"useNvidiaDriverCRD": True}}},
        )
    test_cluster.enable_operator("v26.7.0", registry=registry.host)


def _driver(name: str, pool: str, registry: Registry, precompiled: bool = True, **spec: object) -> dict:
    return {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "NVIDIADriver",
        "metadata": {"name": name},
        "spec": {
            "driverType": "gpu",
            "usePrecompiled": precompiled,
            "repository": f"{registry.host}/nvidia",
            "image": "driver",
            "version": "570.1",
            "nodeSelector": {POOL_LABEL: pool},
            **spec,
        },
    }


def _state(test_cluster: TestCluster, name: str) -> str | None:
    return (test_cluster.store.get_object("NVIDIADriver", name).get("status") or {}).get("state")


def _condition(test_cluster: TestCluster, name: str, ctype: str) -> dict:
    status = test_cluster.store.get_object("NVIDIADriver", name).get("status") or {}
    return next(c for c in status.get("conditions") or [] if c["type"] == ctype)


@pytest.mark.parametrize("gpu_cluster", [False, True], ids=["clusterpolicy-flag", "gpucluster"])
def test_per_pool_daemonsets_images_and_status(
    test_cluster: TestCluster, registry: Registry, gpu_cluster: bool
) -> None:
    _cluster(test_cluster, registry, gpu_cluster)
    api = custom_api(test_cluster)
    store = test_cluster.store
    digest_a = registry.push_test_image("nvidia/driver", f"570.1-{K_A}-rhcos4.18")
    for name, pool in (("pool-a", "a"), ("pool-b", "b")):
        api.create_cluster_custom_object(
            "nvidia.com", "v1alpha1", "nvidiadrivers", _driver(name, pool, registry)
        )
    wait_for(lambda: _state(test_cluster, "pool-a") == "ready")
    cr_a = store.get_object("NVIDIADriver", "pool-a")
    cr_b = store.get_object("NVIDIADriver", "pool-b")
    # Nodes are routed to their CR by the owner label; the CPU node is not.
    owners = {
        n["metadata"]["name"]: n["metadata"]["labels"].get(OWNER_LABEL) for n in store.list_objects("Node")
    }
    assert owners == {"gpu-a1": "pool-a", "gpu-a2": "pool-a", "gpu-b1": "pool-b", "cpu-1": None}
    ds = {d["metadata"]["name"]: d for d in store.list_objects("DaemonSet", NS)}
    name_a = app_name("gpu", cr_a["metadata"]["uid"], Pool("rhcos4.18", kernel=K_A))
    name_b = app_name("gpu", cr_b["metadata"]["uid"], Pool("rhel9", kernel=K_B))  # per-pool tag, major only
    assert set(ds) == {name_a, name_b}
    assert ds[name_a]["metadata"]["ownerReferences"][0]["uid"] == cr_a["metadata"]["uid"]
    assert (
        ds[name_a]["metadata"]["labels"]["nvidia.com/precompiled.kernel-version"] == "5.14.0-427.50.1.el9.4"
    )
    template = ds[name_b]["spec"]["template"]["spec"]
    assert template["containers"][0]["image"] == f"{registry.host}/nvidia/driver:570.1-{K_B}-rhel9"
    assert template["nodeSelector"][OWNER_LABEL] == "pool-b"
    pods_a = [p for p in store.list_objects("Pod", NS) if p["metadata"]["labels"].get("app") == name_a]
    assert sorted(p["spec"]["nodeName"] for p in pods_a) == ["gpu-a1", "gpu-a2"]
    wait_for(lambda: all(p["status"]["containerStatuses"][0]["ready"] for p in _pods(test_cluster, name_a)))
    assert {p["status"]["containerStatuses"][0]["imageID"] for p in _pods(test_cluster, name_a)} == {
        f"{registry.host}/nvidia/driver@{digest_a}"
    }
    assert _condition(test_cluster, "pool-a", "Ready")["status"] == "True"
    # Pool b has no image: notReady, waiting for its driver pod.
    wait_for(lambda: _state(test_cluster, "pool-b") == "notReady")
    error = _condition(test_cluster, "pool-b", "Error")
    assert (error["status"], error["reason"]) == ("True", "DriverNotReady")
    # Once the image exists, the pod pulls it and the CR turns ready.
    registry.push_test_image("nvidia/driver", f"570.1-{K_B}-rhel9")
    wait_for(lambda: _state(test_cluster, "pool-b") == "ready")


def _pods(test_cluster: TestCluster, ds_name: str) -> list[dict]:
    return [
        p for p in test_cluster.store.list_objects("Pod", NS) if p["metadata"]["labels"].get("app") == ds_name
    ]


def test_version_bump_rolls_the_pool_and_deletion_collects_it(
    test_cluster: TestCluster, registry: Registry
) -> None:
    _cluster(test_cluster, registry)
    api = custom_api(test_cluster)
    registry.push_test_image("nvidia/driver", f"570.1-{K_A}-rhcos4.18")
    new_digest = registry.push_test_image("nvidia/driver", f"570.2-{K_A}-rhcos4.18")
    api.create_cluster_custom_object(
        "nvidia.com", "v1alpha1", "nvidiadrivers", _driver("pool-a", "a", registry)
    )
    wait_for(lambda: _state(test_cluster, "pool-a") == "ready")
    patch = [
        {"op": "test", "path": "/spec/version", "value": "570.1"},
        {"op": "replace", "path": "/spec/version", "value": "570.2"},
    ]
    test_cluster.store.patch(by_kind("NVIDIADriver"), None, "pool-a", "application/json-patch+json", patch)
    uid = test_cluster.store.get_object("NVIDIADriver", "pool-a")["metadata"]["uid"]
    name = app_name("gpu", uid, Pool("rhcos4.18", kernel=K_A))  # same pool, same DaemonSet, new image

    def rolled() -> bool:
        pods = _pods(test_cluster, name)
        return len(pods) == 2 and all(
            p["status"]["containerStatuses"][0].get("imageID", "").endswith(new_digest) for p in pods
        )

    wait_for(rolled)
    wait_for(lambda: _state(test_cluster, "pool-a") == "ready")
    api.delete_cluster_custom_object("nvidia.com", "v1alpha1", "nvidiadrivers", "pool-a")
    wait_for(lambda: not test_cluster.store.list_objects("DaemonSet", NS) and not _pods(test_cluster, name))


def test_immutable_fields_are_refused_with_422(test_cluster: TestCluster, registry: Registry) -> None:
    _cluster(test_cluster, registry)
    api = custom_api(test_cluster)
    api.create_cluster_custom_object(
        "nvidia.com", "v1alpha1", "nvidiadrivers", _driver("pool-a", "a", registry, precompiled=False)
    )
    before = test_cluster.store.get_object("NVIDIADriver", "pool-a")
    assert before["spec"]["default"] is False  # CRD default
    for field, value in (("usePrecompiled", True), ("driverType", "vgpu")):
        with pytest.raises(ApiException) as err:
            api.patch_cluster_custom_object(
                "nvidia.com", "v1alpha1", "nvidiadrivers", "pool-a", {"spec": {field: value}}
            )
        assert err.value.status == 422
        assert f"spec.{field}: Invalid value" in err.value.body
        assert f"{field} is an immutable field" in err.value.body
    wait_for(lambda: _state(test_cluster, "pool-a") == "ready")  # no status write races the PUT below
    current = test_cluster.store.get_object("NVIDIADriver", "pool-a")
    replaced = {**current, "spec": {**current["spec"], "usePrecompiled": True}}
    with pytest.raises(ApiException) as err:
        api.replace_cluster_custom_object("nvidia.com", "v1alpha1", "nvidiadrivers", "pool-a", replaced)
    assert err.value.status == 422
    assert test_cluster.store.get_object("NVIDIADriver", "pool-a")["spec"] == before["spec"]
    # Other fields stay mutable.
    api.patch_cluster_custom_object(
        "nvidia.com", "v1alpha1", "nvidiadrivers", "pool-a", {"spec": {"version": "2"}}
    )
    with pytest.raises(ApiException) as err:
        api.create_cluster_custom_object(
            "nvidia.com", "v1alpha1", "nvidiadrivers", _driver("fallback", "a", registry, default=True)
        )
    assert err.value.status == 422
    assert "default NVIDIADriver must not use nodeSelector" in err.value.body


def test_overlapping_selectors_are_reported_and_nothing_changes(
    test_cluster: TestCluster, registry: Registry
) -> None:
    _cluster(test_cluster, registry)
    api = custom_api(test_cluster)
    registry.push_test_image("nvidia/driver", f"570.1-{K_A}-rhcos4.18")
    api.create_cluster_custom_object(
        "nvidia.com", "v1alpha1", "nvidiadrivers", _driver("pool-a", "a", registry)
    )
    wait_for(lambda: _state(test_cluster, "pool-a") == "ready")
    daemonsets = test_cluster.store.list_objects("DaemonSet", NS)
    overlapping = _driver("all-gpus", "a", registry)
    overlapping["spec"]["nodeSelector"] = {"nvidia.com/gpu.present": "true"}
    api.create_cluster_custom_object("nvidia.com", "v1alpha1", "nvidiadrivers", overlapping)
    message = "multiple NVIDIADrivers match the same node gpu-a1: ['all-gpus', 'pool-a']"
    for name in ("pool-a", "all-gpus"):
        wait_for(lambda n=name: _condition_or_none(test_cluster, n) == ("ConflictingNodeSelector", message))
        assert _state(test_cluster, name) == "notReady"
    assert [d["metadata"]["name"] for d in test_cluster.store.list_objects("DaemonSet", NS)] == [
        d["metadata"]["name"] for d in daemonsets
    ]
    assert test_cluster.store.get_object("Node", "gpu-b1")["metadata"]["labels"].get(OWNER_LABEL) is None


def _condition_or_none(test_cluster: TestCluster, name: str) -> tuple[str, str] | None:
    try:
        error = _condition(test_cluster, name, "Error")
    except StopIteration:
        return None
    return (error["reason"], error["message"]) if error["status"] == "True" else None


def test_clusterpolicy_without_flag_disables_every_cr(test_cluster: TestCluster, registry: Registry) -> None:
    store = test_cluster.store
    store.add_node("gpu-a1", K_A, "rhcos", "4.18", extra_labels={POOL_LABEL: "a"})
    store.put(
        "ClusterPolicy",
        {
            "metadata": {"name": "gpu-cluster-policy"},
            "spec": {"driver": {"repository": "nvcr.io/nvidia", "image": "driver", "version": "550.90.07"}},
        },
    )
    test_cluster.enable_operator("v26.7.0", registry=registry.host)
    custom_api(test_cluster).create_cluster_custom_object(
        "nvidia.com", "v1alpha1", "nvidiadrivers", _driver("pool-a", "a", registry)
    )
    wait_for(lambda: _state(test_cluster, "pool-a") == "disabled")
    error = _condition(test_cluster, "pool-a", "Error")
    assert (error["reason"], error["message"]) == (
        "Reconciled",
        "useNvidiaDriverCRD is not enabled in ClusterPolicy",
    )
    assert not any(d["metadata"].get("ownerReferences") for d in store.list_objects("DaemonSet", NS))


def test_precompiled_with_digest_fails_reconcile(test_cluster: TestCluster, registry: Registry) -> None:
    _cluster(test_cluster, registry)
    custom_api(test_cluster).create_cluster_custom_object(
        "nvidia.com",
        "v1alpha1",
        "nvidiadrivers",
        _driver("pool-a", "a", registry, version="sha256:" + "a" * 64),
    )
    wait_for(lambda: _condition_or_none(test_cluster, "pool-a") is not None)
    reason, message = _condition_or_none(test_cluster, "pool-a")
    assert reason == "ReconcileFailed"
    assert message.endswith("specifying image digest is not supported when precompiled is enabled")
    assert not test_cluster.store.list_objects("DaemonSet", NS)


def test_product_plan_predicts_the_daemonsets(test_cluster: TestCluster, registry: Registry) -> None:
    """The product's plan and the stand-in are written independently; both follow upstream."""
    store = test_cluster.store
    store.add_node("gpu-a1", K_A, "rhcos", "4.18", extra_labels={POOL_LABEL: "a"})
    store.add_node("gpu-b1", K_B, "rhel", "9.6", extra_labels={POOL_LABEL: "b"})
    store.add_node("gpu-b2", K_A, "rhcos", "4.18", extra_labels={POOL_LABEL: "b"})
    store.put("GPUCluster", {"metadata": {"name": "gpu-cluster"}, "spec": {}})
    for name, pool in (("pool-a", "a"), ("pool-b", "b")):
        store.create(by_kind("NVIDIADriver"), None, _driver(name, pool, registry))
    test_cluster.enable_operator("v26.7.0", registry=registry.host)
    wait_for(lambda: len(store.list_objects("DaemonSet", "nvidia-gpu-operator")) == 3)
    xcom = {
        "nodes": [
            {"name": n["metadata"]["name"], "labels": n["metadata"]["labels"]}
            for n in store.list_objects("Node")
        ],
        "operator": store.get_object("Deployment", "gpu-operator", "nvidia-gpu-operator"),
        "policy": None,
        "cluster_version": "",
        "nvidia_drivers": {"items": store.list_objects("NVIDIADriver")},
        "gpu_clusters": {"items": store.list_objects("GPUCluster")},
    }
    cluster = parse_cluster(xcom)
    assert nvd.driver_mode(cluster) == nvd.NVIDIA_DRIVER
    predicted = {(p.daemonset, p.image, p.nodes) for d in nvd.plan_drivers(cluster) for p in d.pools}
    actual = set()
    for ds in store.list_objects("DaemonSet", "nvidia-gpu-operator"):
        pods = store.list_objects("Pod", "nvidia-gpu-operator")
        nodes = tuple(
            sorted(
                p["spec"]["nodeName"]
                for p in pods
                if p["metadata"]["labels"]["app"] == ds["metadata"]["name"]
            )
        )
        actual.add((ds["metadata"]["name"], ds["spec"]["template"]["spec"]["containers"][0]["image"], nodes))
    assert predicted == actual


def test_deleting_the_clusterpolicy_collects_its_driver_daemonsets(
    test_cluster: TestCluster, registry: Registry
) -> None:
    store = test_cluster.store
    store.add_node("gpu-a1", K_A, "rhcos", "4.18")
    store.put(
        "ClusterPolicy",
        {
            "metadata": {"name": "gpu-cluster-policy"},
            "spec": {"driver": {"repository": "nvcr.io/nvidia", "image": "driver", "version": "550.90.07"}},
        },
    )
    test_cluster.enable_operator("v26.7.0", registry=registry.host)
    wait_for(lambda: store.list_objects("Pod", NS))
    store.delete(by_kind("ClusterPolicy"), None, "gpu-cluster-policy")
    wait_for(lambda: not store.list_objects("DaemonSet", NS) and not store.list_objects("Pod", NS))
