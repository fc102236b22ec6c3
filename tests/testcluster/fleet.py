"""Seed data for the demo: GPU nodes on two kernels, a ClusterPolicy, the OpenShift ClusterVersion."""

from __future__ import annotations

from testcluster.cluster import TestCluster

DEMO_NODES = (
    ("gpu-worker-0", "5.14.0-427.50.1.el9_4.x86_64", "rhcos", "4.18"),
    ("gpu-worker-1", "5.14.0-427.50.1.el9_4.x86_64", "rhcos", "4.18"),
    ("gpu-worker-2", "5.14.0-570.12.1.el9_6.x86_64", "rhel", "9.6"),
)
CPU_NODES = (("worker-0", "5.14.0-427.50.1.el9_4.x86_64", "rhcos", "4.18"),)


def seed_demo(cluster: TestCluster, openshift_version: str = "4.18.12") -> None:
    """Nodes, ``gpu-cluster-policy`` (compiled drivers, as after a default install), ClusterVersion."""
    seed_member(cluster, openshift_version, DEMO_NODES, CPU_NODES)


def seed_member(
    cluster: TestCluster,
    openshift_version: str,
    gpu_nodes: tuple[tuple[str, str, str, str], ...],
    cpu_nodes: tuple[tuple[str, str, str, str], ...] = (),
) -> None:
    """One cluster of a fleet: its GPU and CPU nodes ``(name, kernel, os_id, os_version)``, the
    ClusterPolicy and the ClusterVersion of ``openshift_version`` (channel ``stable-<minor>``)."""
    for name, kernel, os_id, os_version in gpu_nodes:
        cluster.store.add_node(name, kernel, os_id, os_version, gpu=True)
    for name, kernel, os_id, os_version in cpu_nodes:
        cluster.store.add_node(name, kernel, os_id, os_version, gpu=False)
    cluster.store.put(
        "ClusterPolicy",
        {
            "metadata": {"name": "gpu-cluster-policy"},
            # Every section NVIDIA's CRD requires, as after a default OperatorHub install.
            "spec": {
                "operator": {"defaultRuntime": "crio"},
                "daemonsets": {"updateStrategy": "RollingUpdate"},
                "dcgm": {"enabled": True},
                "dcgmExporter": {"enabled": True},
                "devicePlugin": {"enabled": True},
                "gfd": {"enabled": True},
                "nodeStatusExporter": {"enabled": True},
                "toolkit": {"enabled": True},
                "driver": {
                    "enabled": True,
                    "usePrecompiled": False,
                    "repository": "nvcr.io/nvidia",
                    "image": "driver",
                    "version": "550.90.07",
                },
            },
        },
    )
    cluster.store.put(
        "ClusterVersion",
        {
            "metadata": {"name": "version"},
            "spec": {"channel": f"stable-{'.'.join(openshift_version.split('.')[:2])}"},
            "status": {
                "desired": {"version": openshift_version},
                "history": [{"state": "Completed", "version": openshift_version}],
            },
        },
    )
