"""NVIDIADriver mode on the demo fleet, for the end-to-end tests: node pools and NVIDIADriver resources."""

from __future__ import annotations

from typing import Any

from testcluster.resources import by_kind

POOL = "example.com/gpu-pool"


def into_pools(world: Any) -> None:
    """gpu-worker-0/1 (RHCOS 4.18) in pool "a", gpu-worker-2 (RHEL 9.6) in pool "b"."""
    store = world.cluster.store
    for node in store.list_objects("Node"):
        name = node["metadata"]["name"]
        if name.startswith("gpu-worker-"):
            node["metadata"]["labels"][POOL] = "b" if name == "gpu-worker-2" else "a"
            store.put("Node", node)


def nvidia_driver(name: str, pool: str, repository: str, precompiled: bool = True) -> dict[str, Any]:
    """A pool CR shaped like NVIDIA's sample (gpu-driver-container rhel9-precompiled-nvidiadriver.json),
    with labels and an annotation a replacement must keep."""
    return {
        "metadata": {
            "name": name,
            "labels": {"team": "ml", "pool": pool},
            "annotations": {"example.com/owner": "gpu platform team"},
        },
        "spec": {
            "driverType": "gpu",
            "usePrecompiled": precompiled,
            "repository": repository,
            "image": "driver",
            "version": "550.90.07",
            "imagePullPolicy": "Always",
            "nodeSelector": {POOL: pool},
            "manager": {},
        },
    }


def use_nvidia_driver_crd(world: Any) -> None:
    """The ClusterPolicy half of NVIDIA's sample pair: drivers come from NVIDIADriver resources."""
    store = world.cluster.store
    policy = store.get_object("ClusterPolicy", "gpu-cluster-policy")
    policy["spec"]["driver"]["useNvidiaDriverCRD"] = True
    store.put("ClusterPolicy", policy)


def create_pools(world: Any, precompiled: bool = True) -> None:
    """NVIDIADrivers pool-a (two nodes) and pool-b (one node), reconciled once by the operator stand-in."""
    into_pools(world)
    for name, pool in (("pool-a", "a"), ("pool-b", "b")):
        world.cluster.store.create(
            by_kind("NVIDIADriver"), None, nvidia_driver(name, pool, world.repository, precompiled)
        )
    world.cluster.operator.reconcile_now()


# -- the step's pool fixture, shared by its pod-contract and script tests -----------------------------
K418 = "5.14.0-427.50.1.el9_4.x86_64"
NEW_VERSION = "570.2"


def pool_node(name: str, pool: str) -> Any:
    """A GPU node (RHCOS 4.18, kernel ``K418``) in ``pool``, with the labels inspect_cluster reads."""
    from precompiled_drivers.cluster import KERNEL_LABEL, GpuNode

    labels = {
        "nvidia.com/gpu.present": "true",
        KERNEL_LABEL: K418,
        "feature.node.kubernetes.io/system-os_release.ID": "rhcos",
        "feature.node.kubernetes.io/system-os_release.VERSION_ID": "4.18",
        POOL: pool,
    }
    return GpuNode(name, K418, "rhcos", "4.18", labels=labels)


def pool_stages(nvidia_drivers: tuple[dict[str, Any], ...], repository: str, allow: bool = True) -> Any:
    """The stages plan_rollout computes for nodes a1 (pool "a"), b1 and b2 (pool "b") and ``nvidia_drivers``:
    driver ``NEW_VERSION`` from ``repository``, its image published."""
    from precompiled_drivers import nvidia_driver
    from precompiled_drivers.cluster import ClusterState

    cluster = ClusterState(
        nodes=(pool_node("a1", "a"), pool_node("b1", "b"), pool_node("b2", "b")),
        operator_version="v26.7.0",
        policy=None,
        cluster_version="4.19.3",
        nvidia_drivers=nvidia_drivers,
        gpu_clusters=("gpu-cluster",),
    )
    image = f"{repository}/driver:{NEW_VERSION}-{K418}-rhcos4.18"
    return nvidia_driver.plan_stages(
        cluster,
        repository=repository,
        image="driver",
        version=NEW_VERSION,
        available={image: "sha256:" + "1" * 64},
        allow_driver_restart=allow,
    )
