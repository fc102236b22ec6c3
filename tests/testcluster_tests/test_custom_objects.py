"""Cluster-scoped custom objects (ClusterPolicy) through the official client: patches, status, 409."""

from __future__ import annotations

import pytest
from helpers import core_api, custom_api
from kubernetes.client.exceptions import ApiException

from testcluster import TestCluster

ARGS = ("nvidia.com", "v1", "clusterpolicies", "gpu-cluster-policy")
# CustomObjectsApi sends merge-patch unless told otherwise, even for a list body.
JSON_PATCH = {"_content_type": "application/json-patch+json"}


@pytest.fixture
def api(test_cluster: TestCluster):
    test_cluster.store.put(
        "ClusterPolicy",
        {"metadata": {"name": "gpu-cluster-policy"}, "spec": {"driver": {"usePrecompiled": False}}},
    )
    return custom_api(test_cluster)


def test_json_patch_with_failing_test_is_422_and_changes_nothing(api, test_cluster: TestCluster) -> None:
    before = api.get_cluster_custom_object(*ARGS)
    patch = [
        {"op": "test", "path": "/spec/driver/usePrecompiled", "value": True},
        {"op": "add", "path": "/spec/driver/version", "value": "570.1"},
    ]
    with pytest.raises(ApiException) as err:
        api.patch_cluster_custom_object(*ARGS, patch, **JSON_PATCH)
    assert err.value.status == 422
    assert api.get_cluster_custom_object(*ARGS) == before
    patch[0]["value"] = False
    after = api.patch_cluster_custom_object(*ARGS, patch, **JSON_PATCH)
    assert after["spec"]["driver"] == {"usePrecompiled": False, "version": "570.1"}
    assert after["metadata"]["generation"] == 2
    assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])


def test_merge_patch_removes_with_null_and_status_is_a_subresource(api) -> None:
    api.patch_cluster_custom_object(*ARGS, {"spec": {"driver": {"usePrecompiled": None, "image": "driver"}}})
    assert api.get_cluster_custom_object(*ARGS)["spec"]["driver"] == {"image": "driver"}
    # Status written through the main resource is ignored; through /status it sticks.
    api.patch_cluster_custom_object(*ARGS, {"status": {"state": "ready"}})
    assert "status" not in api.get_cluster_custom_object(*ARGS)
    api.patch_cluster_custom_object_status(*ARGS, {"status": {"state": "notReady"}})
    obj = api.get_cluster_custom_object(*ARGS)
    assert obj["status"] == {"state": "notReady"}
    assert obj["metadata"]["generation"] == 2  # status changes do not bump generation


def test_update_with_stale_resource_version_is_409(api) -> None:
    stale = api.get_cluster_custom_object(*ARGS)
    api.patch_cluster_custom_object(*ARGS, {"spec": {"driver": {"version": "1"}}})
    stale["spec"]["driver"]["version"] = "2"
    with pytest.raises(ApiException) as err:
        api.replace_cluster_custom_object(*ARGS, stale)
    assert err.value.status == 409
    fresh = api.get_cluster_custom_object(*ARGS)
    fresh["spec"]["driver"]["version"] = "3"
    assert api.replace_cluster_custom_object(*ARGS, fresh)["spec"]["driver"]["version"] == "3"
    assert (
        api.list_cluster_custom_object("nvidia.com", "v1", "clusterpolicies")["items"][0]["spec"]["driver"][
            "version"
        ]
        == "3"
    )


def test_a_put_without_resource_version_is_refused_for_a_custom_resource_only(
    api, test_cluster: TestCluster
) -> None:
    """Custom resources refuse unconditional updates (apiextensions-apiserver customresource strategy.go
    AllowUnconditionalUpdate: false); a ConfigMap takes one (core configmap strategy.go: true)."""
    body = api.get_cluster_custom_object(*ARGS)
    del body["metadata"]["resourceVersion"]
    body["spec"]["driver"]["usePrecompiled"] = True
    with pytest.raises(ApiException) as err:
        api.replace_cluster_custom_object(*ARGS, body)
    assert err.value.status == 422
    assert "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update" in err.value.body
    assert api.get_cluster_custom_object(*ARGS)["spec"]["driver"]["usePrecompiled"] is False

    core = core_api(test_cluster)
    cm = {"metadata": {"name": "cm", "namespace": "default"}, "data": {"a": "1"}}
    core.create_namespaced_config_map("default", cm)
    core.replace_namespaced_config_map("cm", "default", {**cm, "data": {"a": "2"}})
    assert core.read_namespaced_config_map("cm", "default").data == {"a": "2"}


def test_delete_preconditions_refuse_another_uid_or_resource_version(api) -> None:
    # k8s.io/apiserver pkg/storage/interfaces.go Preconditions.Check: a DeleteOptions precondition that does
    # not match the stored object is a 409 Conflict and nothing is deleted.
    current = api.get_cluster_custom_object(*ARGS)
    meta = current["metadata"]
    for wrong in ({"uid": "another-uid"}, {"uid": meta["uid"], "resourceVersion": "1"}):
        with pytest.raises(ApiException) as err:
            api.delete_cluster_custom_object(*ARGS, body={"preconditions": wrong})
        assert err.value.status == 409
        assert "Precondition failed" in err.value.body
        assert api.get_cluster_custom_object(*ARGS) == current
    matching = {"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]}
    api.delete_cluster_custom_object(*ARGS, body={"preconditions": matching})
    with pytest.raises(ApiException) as err:
        api.get_cluster_custom_object(*ARGS)
    assert err.value.status == 404
