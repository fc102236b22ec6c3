"""NVIDIADriver mode planning: mode detection, node owners and conflicts, pools, DaemonSet names, images."""

from __future__ import annotations

from typing import Any

import pytest

from precompiled_drivers import nvidia_driver as nvd
from precompiled_drivers.cluster import KERNEL_LABEL, ClusterState, GpuNode

K418 = "5.14.0-427.50.1.el9_4.x86_64"
K419 = "5.14.0-570.12.1.el9_6.x86_64"
POOL = "example.com/pool"


def node(name: str, kernel: str, os_id: str, version: str, **labels: str) -> GpuNode:
    all_labels = {
        "nvidia.com/gpu.present": "true",
        KERNEL_LABEL: kernel,
        "feature.node.kubernetes.io/system-os_release.ID": os_id,
        "feature.node.kubernetes.io/system-os_release.VERSION_ID": version,
        **labels,
    }
    return GpuNode(name, kernel, os_id, version, labels=all_labels)


def cr(name: str, pool: str | None, precompiled: bool = True, uid: str = "", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "driverType": "gpu",
        "usePrecompiled": precompiled,
        "repository": "quay.io/acme",
        "image": "driver",
        "version": "570.1",
        **spec,
    }
    if pool is not None:
        body["nodeSelector"] = {POOL: pool}
    return {"metadata": {"name": name, "uid": uid or f"uid-{name}"}, "spec": body}


NODES = (
    node("a1", K418, "rhcos", "4.18", **{POOL: "a"}),
    node("a2", K418, "rhcos", "4.18", **{POOL: "a"}),
    node("b1", K419, "rhel", "9.6", **{POOL: "b"}),
    node("b2", K418, "rhcos", "4.18", **{POOL: "b"}),
    node("b3", K419, "rhel", "9.6", **{POOL: "b"}),
)


def state(
    *drivers: dict[str, Any], policy: dict | None = None, gpu_clusters: tuple[str, ...] = ()
) -> ClusterState:
    return ClusterState(
        nodes=NODES,
        operator_version="v26.7.0",
        policy=policy,
        cluster_version="4.19.3",
        nvidia_drivers=drivers,
        gpu_clusters=gpu_clusters,
    )


def test_mode_detection() -> None:
    flagged = {"spec": {"driver": {"useNvidiaDriverCRD": True}}}
    plain = {"spec": {"driver": {"usePrecompiled": False}}}
    assert nvd.driver_mode(state(policy=flagged)) == nvd.NVIDIA_DRIVER
    assert nvd.driver_mode(state(cr("p", "a"), policy=plain)) == nvd.CLUSTER_POLICY  # CRs are disabled
    assert nvd.driver_mode(state(gpu_clusters=("gpu-cluster",))) == nvd.NVIDIA_DRIVER
    assert nvd.driver_mode(state()) == nvd.CLUSTER_POLICY
    assert "GPUCluster gpu-cluster" in nvd.describe_mode(state(gpu_clusters=("gpu-cluster",)))
    assert "useNvidiaDriverCRD is true" in nvd.describe_mode(state(cr("p", "a"), policy=flagged))


def test_daemonset_names_match_upstream_vectors() -> None:
    # NVIDIA/gpu-operator internal/state/driver_test.go TestGetDriverAppName / TestGetDriverAppNameRHCOS.
    uid = "bfac7359-6033-45ce-88d6-53db0078526e"
    assert nvd.daemonset_name("gpu", uid, "ubuntu20.04") == "nvidia-gpu-driver-ubuntu20.04-67cc6dbb79"
    kernel = "5.15.0-70-generic"
    assert nvd.daemonset_name("gpu", uid, "ubuntu20.04", kernel) == "nvidia-gpu-driver-ubuntu20.04-59b779bcc5"
    long_name = nvd.daemonset_name("gpu", uid, "redhatCoreOS4.14-414.92.202309282257", kernel)
    assert long_name == "nvidia-gpu-driver-redhatCoreOS4.14-414.92.2023092822-59b779bcc5"
    rhcos = nvd.daemonset_name(
        "gpu", "d5b3a1f2-38a9-4b72-bff1-21fd569fd305", "rhcos4.14", rhcos="414.92.202309282257"
    )
    assert rhcos == "nvidia-gpu-driver-rhcos4.14-6f4fc4fc6"


def test_pools_per_os_tag_and_kernel_with_images() -> None:
    [plan_a, plan_b] = nvd.plan_drivers(state(cr("pool-a", "a"), cr("pool-b", "b")))
    assert plan_a.nodes == ("a1", "a2")
    [pool] = plan_a.pools
    assert (pool.os_tag, pool.kernel, pool.nodes) == ("rhcos4.18", K418, ("a1", "a2"))
    assert pool.image == f"quay.io/acme/driver:570.1-{K418}-rhcos4.18"
    assert pool.daemonset == nvd.daemonset_name("gpu", "uid-pool-a", "rhcos4.18", K418)
    # Pool b mixes two OS releases: two pools, each with ITS OWN OS tag (v26.7: rhel major only).
    assert [(p.os_tag, p.nodes) for p in plan_b.pools] == [("rhcos4.18", ("b2",)), ("rhel9", ("b1", "b3"))]
    assert plan_b.pools[1].image == f"quay.io/acme/driver:570.1-{K419}-rhel9"
    # An older operator keeps VERSION_ID whole.
    old = ClusterState(NODES, "v25.10.0", None, "4.19.3", (cr("pool-b", "b"),))
    assert [p.os_tag for p in nvd.plan_drivers(old)[0].pools] == ["rhcos4.18", "rhel9.6"]


def test_compiled_pools_on_openshift_by_rhcos_version() -> None:
    ostree = "feature.node.kubernetes.io/system-os_release.OSTREE_VERSION"
    nodes = (
        node("a1", K418, "rhcos", "4.18", **{POOL: "a", ostree: "418.94.1"}),
        node("a2", K418, "rhcos", "4.18", **{POOL: "a"}),  # no OSTREE label: the operator skips it
    )
    cluster = ClusterState(nodes, "v26.7.0", None, "4.18.3", (cr("pool-a", "a", precompiled=False),))
    [pool] = nvd.plan_drivers(cluster)[0].pools
    assert (pool.rhcos, pool.nodes, pool.image) == (
        "418.94.1",
        ("a1",),
        "quay.io/acme/driver:570.1-rhcos4.18",
    )
    assert pool.daemonset == nvd.daemonset_name("gpu", "uid-pool-a", "rhcos4.18", rhcos="418.94.1")


def test_conflicts_and_defaults() -> None:
    everything = cr("all", None)
    with pytest.raises(
        nvd.DriverConflict, match=r"multiple NVIDIADrivers match the same node a1: \['all', 'pool-a'\]"
    ):
        nvd.plan_drivers(state(everything, cr("pool-a", "a")))
    fallback = cr("fallback", None, default=True)
    fallback["spec"].pop("nodeSelector", None)
    plans = {p.name: p for p in nvd.plan_drivers(state(cr("pool-a", "a"), fallback))}
    assert plans["fallback"].nodes == ("b1", "b2", "b3")
    with pytest.raises(nvd.DriverConflict, match="multiple default NVIDIADrivers"):
        nvd.plan_drivers(state(fallback, {**cr("other", None, default=True)}))
    assert nvd.unowned_nodes(state(cr("pool-a", "a"))) == ("b1", "b2", "b3")


def test_image_refusals_are_reported_per_pool() -> None:
    [plan] = nvd.plan_drivers(state(cr("pool-a", "a", version="sha256:" + "a" * 64)))
    assert plan.pools[0].image == ""
    assert "digest is not supported when precompiled" in plan.pools[0].problem
    compiled = cr("pool-a", "a", precompiled=False, version="sha256:" + "a" * 64)
    assert nvd.driver_image(compiled["spec"], "rhcos4.18", "") == "quay.io/acme/driver@sha256:" + "a" * 64


def test_stage_order_canary_first() -> None:
    plans = nvd.plan_drivers(state(cr("pool-b", "b"), cr("pool-a", "a"), cr("empty", "none")))
    assert [p.name for p in nvd.stage_order(plans)] == ["pool-a", "pool-b"]  # smallest first, empty left out
    assert [p.name for p in nvd.stage_order(plans, "pool-b")] == ["pool-b", "pool-a"]
    with pytest.raises(ValueError, match="canary_pool 'empty' is not an NVIDIADriver that owns GPU nodes"):
        nvd.stage_order(plans, "empty")


def test_rollout_refuses_nvidiadriver_mode_with_the_per_pool_plan() -> None:
    from precompiled_drivers.rollout import RolloutBlocked, plan_rollout

    cluster = state(cr("pool-a", "a"), cr("pool-b", "b", precompiled=False), gpu_clusters=("gpu-cluster",))
    with pytest.raises(RolloutBlocked) as err:
        plan_rollout(cluster, repository="quay.io/acme", image="driver", version="570.2", available={})
    text = str(err.value)
    assert "GPUCluster gpu-cluster" in text
    assert f"this run's driver: quay.io/acme/driver:570.2-{K418}-rhcos4.18" in text
    # Compiled on OpenShift: pooled by OSTREE_VERSION, which these nodes lack: the operator skips them.
    assert "NVIDIADriver pool-b (compiled): GPU node(s) b1, b2, b3 lack the NFD label" in text
    assert "nothing on the cluster was changed" in text
    plain = ClusterState(NODES, "v26.7.0", None, "", (cr("pool-b", "b", precompiled=False),), ("g",))
    with pytest.raises(RolloutBlocked) as err:
        plan_rollout(plain, repository="quay.io/acme", image="driver", version="570.2", available={})
    assert "NVIDIADriver pool-b (compiled), pool rhel9 (nodes b1, b3)" in str(err.value)
    assert "usePrecompiled is immutable" in str(err.value)
    with pytest.raises(RolloutBlocked, match="multiple NVIDIADrivers match the same node a1"):
        plan_rollout(
            state(cr("pool-a", "a"), cr("all", None), gpu_clusters=("g",)),
            repository="quay.io/acme",
            image="driver",
            version="570.2",
            available={},
        )


# --------------------------------------------------------------------------- staged per-CR rollout planning

REPO = "quay.io/acme"


def published(*kernel_tags: tuple[str, str], version: str = "570.2") -> dict[str, str]:
    return {
        f"{REPO}/driver:{version}-{k}-{t}": "sha256:" + str(i) * 64 for i, (k, t) in enumerate(kernel_tags, 1)
    }


ALL_IMAGES = published((K418, "rhcos4.18"), (K419, "rhel9"))


def test_precompiled_stages_patch_with_a_guard_and_undo_exactly() -> None:
    from precompiled_drivers.cluster_policy import PolicyError, apply_patch

    pool_a = cr("pool-a", "a", labels_kept="x")
    cluster = state(pool_a, cr("pool-b", "b"))
    stages = nvd.plan_stages(cluster, repository=REPO, image="driver", version="570.2", available=ALL_IMAGES)
    assert [(s.driver, s.action) for s in stages] == [
        ("pool-a", "patch"),
        ("pool-b", "patch"),
    ]  # canary: smallest
    first = stages[0]
    assert first.nodes == ("a1", "a2")
    assert [(t.os_tag, t.image) for t in first.targets] == [
        ("rhcos4.18", f"{REPO}/driver:570.2-{K418}-rhcos4.18")
    ]
    assert first.targets[0].digest == ALL_IMAGES[first.targets[0].image]
    assert first.patch[0] == {"op": "test", "path": "/spec", "value": pool_a["spec"]}
    patched = apply_patch(pool_a, first.patch)
    assert patched["spec"] == {**pool_a["spec"], "version": "570.2"}
    assert apply_patch(patched, first.undo) == pool_a  # exact undo
    with pytest.raises(PolicyError, match="guard failed"):  # someone changed the CR after the read
        apply_patch({**pool_a, "spec": {**pool_a["spec"], "version": "999"}}, first.patch)
    with pytest.raises(PolicyError, match="guard failed"):  # ...or after our patch: the undo refuses
        apply_patch({**patched, "spec": {**patched["spec"], "image": "other"}}, first.undo)
    # Pool b spans two OS releases: one target per pool, each with its own tag.
    assert [t.os_tag for t in stages[1].targets] == ["rhcos4.18", "rhel9"]
    named = nvd.plan_stages(
        cluster, repository=REPO, image="driver", version="570.2", available=ALL_IMAGES, canary="pool-b"
    )
    assert [s.driver for s in named] == ["pool-b", "pool-a"]


def test_compiled_stage_needs_permission_and_replaces_keeping_every_field() -> None:
    compiled = cr("pool-b", "b", precompiled=False, kernelModuleType="open", manager={"env": [{"name": "X"}]})
    compiled["metadata"].update(labels={"team": "ml"}, resourceVersion="42", generation=3)
    compiled["status"] = {"state": "ready"}
    plain = ClusterState(NODES, "v26.7.0", None, "", (cr("pool-a", "a"), compiled), ("g",))
    with pytest.raises(nvd.StageRefused) as err:
        nvd.plan_stages(plain, repository=REPO, image="driver", version="570.2", available=ALL_IMAGES)
    assert "NVIDIADriver pool-b has usePrecompiled: false" in str(err.value)
    assert "allow_driver_restart" in str(err.value) and "Nothing on the cluster was changed" in str(err.value)
    stages = nvd.plan_stages(
        plain,
        repository=REPO,
        image="driver",
        version="570.2",
        available=ALL_IMAGES,
        allow_driver_restart=True,
    )
    replace = next(s for s in stages if s.driver == "pool-b")
    assert replace.action == "replace" and replace.patch == [] and replace.undo == []
    assert replace.replacement["spec"] == {
        **compiled["spec"],
        "usePrecompiled": True,
        "repository": REPO,
        "image": "driver",
        "version": "570.2",
    }
    assert replace.replacement["metadata"] == {"name": "pool-b", "labels": {"team": "ml"}}
    assert replace.original == {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "NVIDIADriver",
        "metadata": {"name": "pool-b", "labels": {"team": "ml"}},
        "spec": compiled["spec"],
    }
    # After the replacement the pool is precompiled: one target per OS tag and kernel.
    assert [(t.os_tag, t.kernel, t.nodes) for t in replace.targets] == [
        ("rhcos4.18", K418, ("b2",)),
        ("rhel9", K419, ("b1", "b3")),
    ]


def test_stage_refused_without_every_pool_image() -> None:
    only_418 = published((K418, "rhcos4.18"))
    with pytest.raises(nvd.StageRefused) as err:
        nvd.plan_stages(
            state(cr("pool-a", "a"), cr("pool-b", "b")),
            repository=REPO,
            image="driver",
            version="570.2",
            available=only_418,
        )
    assert f"NVIDIADriver pool-b: no published image {REPO}/driver:570.2-{K419}-rhel9 (nodes b1, b3)" in str(
        err.value
    )
    assert "pool-a" not in str(err.value)
    gds = cr("pool-b", "b", precompiled=False, gds={"enabled": True})
    with pytest.raises(nvd.StageRefused, match=r"spec\.gds or spec\.gdrcopy"):
        nvd.replacement(gds, repository=REPO, image="driver", version="570.2")


def test_the_refusal_shows_the_staged_rollout_to_do_by_hand() -> None:
    from precompiled_drivers.rollout import RolloutBlocked, plan_rollout

    cluster = state(cr("pool-a", "a"), cr("pool-b", "b"), gpu_clusters=("g",))
    with pytest.raises(RolloutBlocked) as err:
        plan_rollout(cluster, repository=REPO, image="driver", version="570.2", available=ALL_IMAGES)
    text = str(err.value)
    assert "by hand, canary: patch NVIDIADriver pool-a (version 570.1 -> 570.2; guarded by a test" in text
    assert "by hand, stage 2: patch NVIDIADriver pool-b" in text
    assert "wait for a1, a2 Ready on " + f"{REPO}/driver:570.2-{K418}-rhcos4.18@sha256:" in text
    commands = text.split("The stages as commands (guarded patches, exact undos):\n", 1)[1].splitlines()
    assert commands[0].startswith('kubectl patch nvidiadriver pool-a --type=json -p \'[{"op":"test"')
    assert commands[1].startswith("  undo: kubectl patch nvidiadriver pool-a --type=json")
    compiled = state(cr("pool-a", "a"), cr("pool-b", "b", precompiled=False), gpu_clusters=("g",))
    with pytest.raises(RolloutBlocked) as err:
        plan_rollout(compiled, repository=REPO, image="driver", version="570.2", available=ALL_IMAGES)
    assert "  - NVIDIADriver pool-b has usePrecompiled: false" in str(err.value)
    assert "by hand" not in str(err.value)
