"""Pods, events, logs, exec and watch through the official ``kubernetes`` client."""

from __future__ import annotations

import re
import time

import pytest
from helpers import core_api, kpo_pod, wait_for
from kubernetes import watch
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

from testcluster import Scenario, TestCluster

TS_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (.*)$")


def test_create_list_with_selectors_patch_labels_and_delete(test_cluster: TestCluster) -> None:
    api = core_api(test_cluster)
    api.create_namespaced_pod("default", kpo_pod("a", "t1", sidecar=False, tier="x"))
    api.create_namespaced_pod("default", kpo_pod("b", "t2", sidecar=False, tier="y", already_checked="True"))
    api.create_namespaced_pod("default", kpo_pod("c", "t3", sidecar=False, **{"airflow-worker": "1"}))

    def names(selector: str) -> list[str]:
        return [p.metadata.name for p in api.list_namespaced_pod("default", label_selector=selector).items]

    assert names("tier=x") == ["a"]
    assert names("already_checked!=True") == ["a", "c"]
    assert names("!airflow-worker") == ["a", "b"]
    assert names("task_id in (t1,t3)") == ["a", "c"]
    assert names("task_id notin (t1,t3),tier") == ["b"]
    # The selector KPO builds to find its pod.
    assert names("task_id=t1,already_checked!=True,!airflow-worker") == ["a"]

    api.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"already_checked": "True"}}})
    assert names("already_checked!=True") == ["c"]
    assert api.read_namespaced_pod("a", "default").metadata.labels["tier"] == "x"

    api.delete_namespaced_pod("a", "default")
    with pytest.raises(ApiException) as err:
        api.read_namespaced_pod("a", "default")
    assert err.value.status == 404


def test_pod_lifecycle_events_and_logs_follow_with_timestamps(test_cluster: TestCluster) -> None:
    test_cluster.scenarios.set("build", Scenario(logs=["one", "two", "three"], duration=1.2, exit_code=3))
    api = core_api(test_cluster)
    api.create_namespaced_pod("default", kpo_pod("p", "build", sidecar=False))
    wait_for(lambda: api.read_namespaced_pod("p", "default").status.phase == "Running")

    started = time.monotonic()
    resp = api.read_namespaced_pod_log(
        "p", "default", container="base", follow=True, timestamps=True, _preload_content=False
    )
    arrivals = []
    for line in resp.stream():
        arrivals.append((time.monotonic() - started, line.decode()))
    text = "".join(chunk for _, chunk in arrivals)
    lines = text.splitlines()
    assert [TS_LINE.match(line)[1] for line in lines] == ["one", "two", "three"]
    # Streamed while running: the first line came well before the container ended.
    assert arrivals[0][0] < arrivals[-1][0] - 0.3

    pod = wait_for(lambda: (p := api.read_namespaced_pod("p", "default")).status.phase == "Failed" and p)
    assert pod.status.container_statuses[0].state.terminated.exit_code == 3
    events = api.list_namespaced_event("default", field_selector="involvedObject.name=p").items
    assert {e.reason for e in events} >= {"Scheduled", "Started"}
    assert api.list_namespaced_event("default", field_selector="involvedObject.name=other").items == []


def test_xcom_exec_read_then_kill_completes_pod(test_cluster: TestCluster) -> None:
    test_cluster.scenarios.set(
        "t", Scenario(xcom={"image": "r/x:1"}, duration=0.1, termination_message="bye")
    )
    api = core_api(test_cluster)
    api.create_namespaced_pod("default", kpo_pod("p", "t"))
    # The base container finishes but the pod stays Running while the sidecar lives.
    wait_for(lambda: api.read_namespaced_pod("p", "default").status.container_statuses[0].state.terminated)
    pod = api.read_namespaced_pod("p", "default")
    assert pod.status.phase == "Running"
    assert pod.status.container_statuses[0].state.terminated.message == "bye"

    out = stream(
        api.connect_get_namespaced_pod_exec,
        "p",
        "default",
        container="airflow-xcom-sidecar",
        command=["/bin/sh", "-c", "cat /airflow/xcom/return.json"],
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    out.run_forever(timeout=5)
    assert out.returncode == 0  # before read_all(), which empties every channel
    assert out.read_all() == '{"image": "r/x:1"}'

    missing = stream(
        api.connect_get_namespaced_pod_exec,
        "p",
        "default",
        container="airflow-xcom-sidecar",
        command=["cat", "/airflow/xcom/nope"],
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    missing.run_forever(timeout=5)
    assert missing.returncode == 1

    killer = stream(
        api.connect_get_namespaced_pod_exec,
        "p",
        "default",
        container="airflow-xcom-sidecar",
        command=["/bin/sh"],
        stdin=True,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    killer.write_stdin("kill -2 $(pgrep -u $(id -u) -f 'sh')\n")
    killer.run_forever(timeout=5)
    assert not killer.is_open()
    pod = wait_for(lambda: (p := api.read_namespaced_pod("p", "default")).status.phase == "Succeeded" and p)
    assert all(s.state.terminated for s in pod.status.container_statuses)


def test_watch_resumes_from_resource_version_and_times_out(test_cluster: TestCluster) -> None:
    api = core_api(test_cluster)
    api.create_namespaced_pod("default", kpo_pod("first", "w", sidecar=False))
    listed = api.list_namespaced_pod("default", label_selector="task_id=w")
    rv = listed.metadata.resource_version
    test_cluster.scenarios.set("w2", Scenario(duration=0.1))
    api.create_namespaced_pod("default", kpo_pod("second", "w2", sidecar=False))

    started = time.monotonic()
    seen = []
    for event in watch.Watch().stream(
        api.list_namespaced_pod,
        "default",
        label_selector="task_id=w2",
        resource_version=rv,
        timeout_seconds=2,
    ):
        seen.append((event["type"], event["object"].metadata.name, event["object"].status.phase))
    assert time.monotonic() - started >= 1.5  # the server ended the watch at timeoutSeconds
    assert seen[0] == ("ADDED", "second", "Pending")
    assert ("MODIFIED", "second", "Succeeded") in seen
    assert all(name == "second" for _, name, _ in seen)


def test_conflict_on_stale_resource_version(test_cluster: TestCluster) -> None:
    api = core_api(test_cluster)
    created = api.create_namespaced_pod("default", kpo_pod("p", "none", sidecar=False))
    api.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"x": "1"}}})
    created.metadata.labels["x"] = "2"
    with pytest.raises(ApiException) as err:
        api.replace_namespaced_pod("p", "default", created)
    assert err.value.status == 409
    assert api.read_namespaced_pod("p", "default").metadata.labels["x"] == "1"
