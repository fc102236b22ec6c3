"""The kubelet stand-in places pods by nodeSelector and refuses an image of another arch, as runc does."""

from __future__ import annotations

from helpers import core_api, kpo_pod, wait_for

from testcluster import Scenario, TestCluster

ARM_DTK = "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:" + "c" * 64
KARM = "5.14.0-570.12.1.el9_6.aarch64"


def pod_with(name: str, image: str, selector: dict[str, str] | None = None, sidecar: bool = False) -> dict:
    pod = kpo_pod(name, "inspect", sidecar=sidecar)
    pod["spec"]["containers"][0]["image"] = image
    if selector:
        pod["spec"]["nodeSelector"] = selector
    return pod


def log_of(api, container: str) -> str:
    resp = api.read_namespaced_pod_log("p", "default", container=container, _preload_content=False)
    return resp.data.decode()


def test_arm64_image_on_an_arm64_node_runs(test_cluster: TestCluster) -> None:
    test_cluster.store.add_node("arm-worker", KARM, gpu=False)
    test_cluster.kubelet.image_arches[ARM_DTK] = "arm64"
    test_cluster.scenarios.set("inspect", Scenario(logs=["read"], duration=0.1))
    api = core_api(test_cluster)
    api.create_namespaced_pod("default", pod_with("p", ARM_DTK, {"kubernetes.io/arch": "arm64"}))
    wait_for(lambda: api.read_namespaced_pod("p", "default").status.phase == "Succeeded")
    assert api.read_namespaced_pod("p", "default").spec.node_name == "arm-worker"
    assert "read" in log_of(api, "base")


def test_arm64_image_without_a_selector_fails_with_exec_format_error(test_cluster: TestCluster) -> None:
    test_cluster.store.add_node("arm-worker", KARM, gpu=False)
    test_cluster.kubelet.image_arches[ARM_DTK] = "arm64"
    ran = []
    test_cluster.scenarios.set("inspect", Scenario(action=lambda pod: ran.append(pod)))
    api = core_api(test_cluster)
    api.create_namespaced_pod("default", pod_with("p", ARM_DTK))
    wait_for(lambda: api.read_namespaced_pod("p", "default").status.phase == "Failed")
    pod = api.read_namespaced_pod("p", "default")
    assert pod.spec.node_name == "testcluster-node"  # amd64
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (255, "Error")
    assert log_of(api, "base") == "exec /usr/bin/bash: exec format error\n"
    assert ran == [], "the container's process never started"


def test_multi_arch_images_run_anywhere(test_cluster: TestCluster) -> None:
    api = core_api(test_cluster)
    api.create_namespaced_pod("default", pod_with("p", "quay.io/openshift/origin-cli:4.18"))
    wait_for(lambda: api.read_namespaced_pod("p", "default").status.phase == "Succeeded")


def test_no_node_matches_the_selector_stays_pending_unschedulable(test_cluster: TestCluster) -> None:
    api = core_api(test_cluster)
    api.create_namespaced_pod("default", pod_with("p", ARM_DTK, {"kubernetes.io/arch": "arm64"}))

    def condition():
        conditions = api.read_namespaced_pod("p", "default").status.conditions or []
        return next((c for c in conditions if c.type == "PodScheduled" and c.status == "False"), None)

    cond = wait_for(condition)
    assert cond.reason == "Unschedulable"
    assert "didn't match Pod's node affinity/selector" in cond.message
    pod = api.read_namespaced_pod("p", "default")
    assert pod.status.phase == "Pending" and not pod.spec.node_name
    events = api.list_namespaced_event("default").items
    assert any(e.reason == "FailedScheduling" for e in events)


def test_init_container_of_another_arch_fails_the_pod(test_cluster: TestCluster) -> None:
    test_cluster.store.add_node("arm-worker", KARM, gpu=False)
    amd_dtk10 = "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:" + "e" * 64
    test_cluster.kubelet.image_arches.update({ARM_DTK: "arm64", amd_dtk10: "amd64"})
    ran = []
    test_cluster.scenarios.set("inspect", Scenario(action=lambda pod: ran.append(pod)))
    pod = pod_with("p", ARM_DTK, {"kubernetes.io/arch": "arm64"})
    pod["spec"]["initContainers"] = [{"name": "dtk10", "image": amd_dtk10, "command": ["cp", "a", "b"]}]
    api = core_api(test_cluster)
    api.create_namespaced_pod("default", pod)
    wait_for(lambda: api.read_namespaced_pod("p", "default").status.phase == "Failed")
    status = api.read_namespaced_pod("p", "default").status
    assert status.init_container_statuses[0].state.terminated.exit_code == 255
    assert status.container_statuses[0].state.waiting.reason == "PodInitializing"
    assert log_of(api, "dtk10") == "exec /usr/bin/cp: exec format error\n"
    assert ran == []
