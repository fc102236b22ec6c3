"""The GPU-operator stand-in: DaemonSets per kernel, image pulls from the real test registry."""

from __future__ import annotations

import subprocess

import pytest
from helpers import core_api, custom_api, kpo_pod, wait_for

from testcluster import Scenario, ScenarioResult, TestCluster
from testcluster.gpu_naming import daemonset_name, os_tag, sanitize_kernel
from testcluster.registry import Registry

K_A = "5.14.0-427.50.1.el9_4.x86_64"
K_B = "5.14.0-570.12.1.el9_6.x86_64"
NS = "nvidia-gpu-operator"


@pytest.mark.parametrize(
    ("kernel", "expected"),
    [
        ("5.14.0-427.37.1.el9_4.x86_64", "5.14.0-427.37.1.el9.4"),
        ("5.14.0-427.37.1.el9_4.aarch64", "5.14.0-427.37.1.el9.4"),
        ("5.14.0-427.37.1.el9_4.aarch64_64k", "5.14.0-427.37.1.el9.4"),
        ("5.14.0-427.37.1.el9_4.aarch64+64k", "5.14.0-427.37.1.el9.4"),
        ("4.18.0-372.9.1.EL8_6.x86_64", "4.18.0-372.9.1.el8.6"),
    ],
)
def test_sanitize_kernel(kernel: str, expected: str) -> None:
    assert sanitize_kernel(kernel) == expected


def test_os_tag_rules_by_operator_version() -> None:
    assert os_tag("v25.10.0", "rhel", "9.6") == "rhel9.6"
    assert os_tag("v25.10.0", "rhcos", "4.18") == "rhcos4.18"
    assert os_tag("v26.3.1", "rhel", "9.6") == "rhel9.6"
    assert os_tag("v26.7.0", "rhel", "9.6") == "rhel9"
    assert os_tag("v26.7.0", "rhcos", "4.18") == "rhcos4.18"
    assert daemonset_name(K_A, "rhel", "9.4") == "nvidia-driver-daemonset-5.14.0-427.50.1.el9.4-rhel9.4"


def test_registry_push_is_a_real_image_for_skopeo(registry: Registry) -> None:
    digest = registry.push_test_image("nvidia/driver", "1.0-test")
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{registry.host}/nvidia/driver:1.0-test"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert f'"Digest": "{digest}"' in out.stdout
    assert registry.manifest_digest("nvidia/driver", "1.0-test") == digest
    assert registry.manifest_digest("nvidia/driver", "missing") is None


def _driver_pods(cluster: TestCluster) -> list[dict]:
    return cluster.store.list_objects("Pod", NS)


def test_operator_rolls_out_precompiled_pods_only_ready_with_image(
    test_cluster: TestCluster, registry: Registry
) -> None:
    store = test_cluster.store
    store.add_node("gpu-a1", K_A, "rhel", "9.4")
    store.add_node("gpu-a2", K_A, "rhel", "9.4")
    store.add_node("gpu-b1", K_B, "rhel", "9.6")
    store.add_node("cpu-1", K_B, "rhel", "9.6", gpu=False)
    store.put(
        "ClusterPolicy",
        {
            "metadata": {"name": "gpu-cluster-policy"},
            "spec": {
                "driver": {
                    "enabled": True,
                    "usePrecompiled": False,
                    "repository": "nvcr.io/nvidia",
                    "image": "driver",
                    "version": "550.90.07",
                }
            },
        },
    )
    operator = test_cluster.enable_operator("v25.10.0", registry=registry.host)
    deploy = store.get_object("Deployment", "gpu-operator", NS)
    assert (
        deploy["spec"]["template"]["spec"]["containers"][0]["image"] == "nvcr.io/nvidia/gpu-operator:v25.10.0"
    )
    # Compiled mode first: one DaemonSet per OS, pods Ready, policy ready.
    wait_for(
        lambda: (
            store.get_object("ClusterPolicy", "gpu-cluster-policy").get("status", {}).get("state") == "ready"
        )
    )
    old = {p["metadata"]["name"] for p in _driver_pods(test_cluster)}
    assert len(old) == 3

    digest_a = registry.push_test_image("nvidia/driver", f"550.90.07-{K_A}-rhel9.4")
    custom_api(test_cluster).patch_cluster_custom_object(
        "nvidia.com",
        "v1",
        "clusterpolicies",
        "gpu-cluster-policy",
        {"spec": {"driver": {"usePrecompiled": True, "repository": f"{registry.host}/nvidia"}}},
    )
    operator.reconcile_now()
    pods = _driver_pods(test_cluster)
    names = {p["metadata"]["name"] for p in pods}
    assert old <= names, "old pods must still exist right after the patch"
    new = [p for p in pods if p["metadata"]["name"] not in old]
    assert sorted(p["metadata"]["name"].rsplit("-", 1)[0] for p in new) == sorted(
        [daemonset_name(K_A, "rhel", "9.4")] * 2 + [daemonset_name(K_B, "rhel", "9.6")]
    )
    assert all(p["metadata"]["labels"]["nvidia.com/precompiled"] == "true" for p in new)
    for pod in new:  # each pod's name and image speak of the same kernel as its node
        node_kernel = store.get_object("Node", pod["spec"]["nodeName"])["metadata"]["labels"][
            "feature.node.kubernetes.io/kernel-version.full"
        ]
        assert pod["metadata"]["name"].startswith(f"nvidia-driver-daemonset-{sanitize_kernel(node_kernel)}-")
        assert f"-{node_kernel}-" in pod["spec"]["containers"][0]["image"]
    # ONE OS tag for the whole cluster, from the first GPU node listed (gpu-a1, rhel 9.4): kernel B's
    # node reports rhel 9.6, yet its DaemonSet (named after its own OS) pulls the rhel9.4 tag.
    assert {p["spec"]["containers"][0]["image"] for p in new} == {
        f"{registry.host}/nvidia/driver:550.90.07-{K_A}-rhel9.4",
        f"{registry.host}/nvidia/driver:550.90.07-{K_B}-rhel9.4",
    }
    api = core_api(test_cluster)

    def states() -> dict[str, str]:
        out = {}
        for pod in api.list_namespaced_pod(
            NS, label_selector="app=nvidia-driver-daemonset,nvidia.com/precompiled=true"
        ).items:
            state = pod.status.container_statuses[0].state
            out[pod.spec.node_name] = (
                "ready" if state.running else (state.waiting.reason if state.waiting else "?")
            )
        return out

    wait_for(lambda: states() == {"gpu-a1": "ready", "gpu-a2": "ready", "gpu-b1": "ImagePullBackOff"})
    ready_pod = next(
        p
        for p in _driver_pods(test_cluster)
        if p["spec"]["nodeName"] == "gpu-a1" and p["metadata"]["name"] not in old
    )
    assert (
        ready_pod["status"]["containerStatuses"][0]["imageID"] == f"{registry.host}/nvidia/driver@{digest_a}"
    )
    # Old generation goes away shortly after; the policy is not ready while kernel B has no image.
    wait_for(lambda: not old & {p["metadata"]["name"] for p in _driver_pods(test_cluster)})
    assert store.get_object("ClusterPolicy", "gpu-cluster-policy")["status"]["state"] == "notReady"

    # What a per-node plan publishes (each kernel under its own node's tag) does not help kernel B.
    registry.push_test_image("nvidia/driver", f"550.90.07-{K_B}-rhel9.6")
    operator.reconcile_now()
    assert states()["gpu-b1"] == "ImagePullBackOff"
    registry.push_test_image("nvidia/driver", f"550.90.07-{K_B}-rhel9.4")
    wait_for(lambda: states() == {"gpu-a1": "ready", "gpu-a2": "ready", "gpu-b1": "ready"})
    wait_for(lambda: store.get_object("ClusterPolicy", "gpu-cluster-policy")["status"]["state"] == "ready")
    ds = store.get_object("DaemonSet", daemonset_name(K_B, "rhel", "9.6"), NS)
    assert ds["metadata"]["labels"]["app"] == "nvidia-driver-daemonset"


def test_operator_v26_7_looks_for_major_only_tag(test_cluster: TestCluster, registry: Registry) -> None:
    test_cluster.store.add_node("gpu-1", K_B, "rhel", "9.6")
    registry.push_test_image("nvidia/driver", f"550.90.07-{K_B}-rhel9.6")  # the old rule's tag only
    test_cluster.store.put(
        "ClusterPolicy",
        {
            "metadata": {"name": "gpu-cluster-policy"},
            "spec": {
                "driver": {
                    "usePrecompiled": True,
                    "repository": f"{registry.host}/nvidia",
                    "image": "driver",
                    "version": "550.90.07",
                }
            },
        },
    )
    test_cluster.enable_operator("v26.7.0", registry=registry.host).reconcile_now()
    pod = _driver_pods(test_cluster)[0]
    assert pod["spec"]["containers"][0]["image"].endswith(f"{K_B}-rhel9")
    wait_for(
        lambda: (
            _driver_pods(test_cluster)[0]["status"]["containerStatuses"][0]["state"]
            .get("waiting", {})
            .get("reason")
            == "ImagePullBackOff"
        )
    )
    assert (
        test_cluster.store.get_object("ClusterPolicy", "gpu-cluster-policy")["status"]["state"] == "notReady"
    )


def test_scenario_action_pushes_image_and_returns_xcom(test_cluster: TestCluster, registry: Registry) -> None:

    def build(pod: dict) -> ScenarioResult:
        digest = registry.push_test_image("nvidia/driver", "550.90.07-built")
        return ScenarioResult(xcom={"digest": digest}, logs=[f"pushed {digest}"])

    test_cluster.scenarios.set("build", Scenario(action=build, duration=0.1), map_index=2)
    api = core_api(test_cluster)
    api.create_namespaced_pod("default", kpo_pod("b", "build", map_index="2"))
    wait_for(lambda: api.read_namespaced_pod("b", "default").status.container_statuses[0].state.terminated)
    digest = registry.manifest_digest("nvidia/driver", "550.90.07-built")
    assert digest is not None
    assert f"pushed {digest}" in api.read_namespaced_pod_log("b", "default", container="base")
    pod_dir = next((test_cluster.workdir / "pods" / "default").glob("b-*"))
    assert (pod_dir / "volumes" / "xcom" / "return.json").read_text() == f'{{"digest": "{digest}"}}'
