"""Rollout rules: the coverage gate, per-kernel expectations, the guarded patch and its exact undo."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from precompiled_drivers import cluster_policy
from precompiled_drivers.cluster import ClusterState, GpuNode
from precompiled_drivers.rollout import (
    KernelRollout,
    RolloutBlocked,
    kernel_rollouts,
    node_refusals,
    plan_rollout,
    policy_refusals,
    wanted_images,
)

K418 = "5.14.0-427.50.1.el9_4.x86_64"
K419 = "5.14.0-570.12.1.el9_6.x86_64"
REPO = "quay.io/acme/nvidia"
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64

PREVIOUS_DRIVER = {
    "enabled": True,
    "useNvidiaDriverCRD": False,
    "kernelModuleType": "auto",
    "repository": "nvcr.io/nvidia",
    "image": "driver",
    "version": "550.163.01",
    "upgradePolicy": {"autoUpgrade": True, "maxParallelUpgrades": 1},
    "licensingConfig": {"nlsEnabled": True, "secretName": ""},
}


def policy(driver: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "nvidia.com/v1",
        "kind": "ClusterPolicy",
        "metadata": {"name": "gpu-cluster-policy"},
        "spec": {
            "operator": {"defaultRuntime": "crio"},
            "driver": copy.deepcopy(PREVIOUS_DRIVER if driver is None else driver),
            "gds": {"enabled": False},
            **spec,
        },
    }


def state(*nodes: GpuNode, operator: str = "v26.7.0", pol: dict[str, Any] | None = None) -> ClusterState:
    return ClusterState(nodes=nodes, operator_version=operator, policy=pol, cluster_version="4.18.12")


N1 = GpuNode("gpu-1", K418, "rhcos", "4.18")
N2 = GpuNode("gpu-2", K418, "rhcos", "4.18")
N3 = GpuNode("gpu-3", K419, "rhel", "9.6")
IMG418 = f"{REPO}/driver:570.158.01-{K418}-rhcos4.18"
IMG419 = f"{REPO}/driver:570.158.01-{K419}-rhel9"


# N1/N2 report rhcos 4.18 and N3 rhel 9.6: the operator takes ONE tag for the whole cluster from whichever
# GPU node it lists first, so every kernel needs its image under both tags (UPSTREAM-FACTS.md).
IMG418_RHEL = f"{REPO}/driver:570.158.01-{K418}-rhel9"
IMG419_RHCOS = f"{REPO}/driver:570.158.01-{K419}-rhcos4.18"
ALL_FOUR = {IMG418: D1, IMG418_RHEL: D1, IMG419: D2, IMG419_RHCOS: D2}


def test_kernel_rollouts_group_nodes_by_kernel_one_image_per_cluster_os_tag() -> None:
    rollouts = kernel_rollouts([N3, N2, N1], REPO, "driver", "570.158.01", ["rhcos4.18", "rhel9"])
    assert rollouts == [
        KernelRollout(
            kernel=K418,
            daemonset="nvidia-driver-daemonset-5.14.0-427.50.1.el9.4-rhcos4.18",
            images={"rhcos4.18": IMG418, "rhel9": IMG418_RHEL},
            digests={},
            nodes=("gpu-1", "gpu-2"),
        ),
        KernelRollout(
            kernel=K419,
            # The DaemonSet name keeps the node's raw ID+VERSION_ID, whatever the OS tag rule.
            daemonset="nvidia-driver-daemonset-5.14.0-570.12.1.el9.6-rhel9.6",
            images={"rhcos4.18": IMG419_RHCOS, "rhel9": IMG419},
            digests={},
            nodes=("gpu-3",),
        ),
    ]


def test_wanted_images_follow_the_operator_os_tag_rule() -> None:
    images = wanted_images(state(N3, operator="v26.3.0"), REPO, "driver", "570.158.01")
    assert images == [f"{REPO}/driver:570.158.01-{K419}-rhel9.6"]
    assert wanted_images(state(N1, N3), REPO, "driver", "570.158.01") == sorted(ALL_FOUR)


def test_gate_blocks_naming_every_uncovered_kernel_and_os_tag() -> None:
    cluster = state(N1, N2, N3, pol=policy())
    with pytest.raises(RolloutBlocked) as err:
        plan_rollout(cluster, repository=REPO, image="driver", version="570.158.01", available={})
    message = str(err.value)
    assert f"{K418} under OS tag rhcos4.18 (nodes gpu-1, gpu-2): no {IMG418}" in message
    assert f"{K418} under OS tag rhel9 (nodes gpu-1, gpu-2): no {IMG418_RHEL}" in message
    assert f"{K419} under OS tag rhel9 (nodes gpu-3): no {IMG419}" in message
    assert "one of rhcos4.18 (gpu-1, gpu-2); rhel9 (gpu-3)" in message
    assert "ocp_versions" in message


def test_gate_blocks_on_a_kernel_missing_under_one_os_tag() -> None:
    # What a per-node plan published: each kernel under its own nodes' tag only. The operator may pick
    # rhcos4.18 for the whole cluster and then gpu-3 pulls a tag nobody pushed.
    cluster = state(N1, N3, pol=policy())
    with pytest.raises(RolloutBlocked) as err:
        plan_rollout(
            cluster, repository=REPO, image="driver", version="570.158.01", available={IMG418: D1, IMG419: D2}
        )
    message = str(err.value)
    assert f"no {IMG419_RHCOS}" in message
    assert f"no {IMG418_RHEL}" in message


def test_gate_treats_empty_digest_as_missing() -> None:
    cluster = state(N1, pol=policy())
    with pytest.raises(RolloutBlocked):
        plan_rollout(cluster, repository=REPO, image="driver", version="570.158.01", available={IMG418: ""})


def test_no_policy_blocks() -> None:
    with pytest.raises(RolloutBlocked, match="ClusterPolicy"):
        plan_rollout(state(N1), repository=REPO, image="driver", version="570.158.01", available={IMG418: D1})


@pytest.mark.parametrize("component", ["gds", "gdrcopy"])
def test_gds_or_gdrcopy_enabled_is_refused(component: str) -> None:
    cluster = state(N1, pol=policy(**{component: {"enabled": True}}))
    with pytest.raises(cluster_policy.PolicyError, match=re.escape(f"spec.{component}.enabled")):
        plan_rollout(cluster, repository=REPO, image="driver", version="570.158.01", available={IMG418: D1})


def test_plan_when_every_kernel_is_covered() -> None:
    pol = policy()
    cluster = state(N1, N3, pol=pol)
    plan = plan_rollout(
        cluster,
        repository=REPO,
        image="driver",
        version="570.158.01",
        available={**ALL_FOUR, f"{REPO}/driver:unrelated": D1},
    )
    assert [(k.kernel, k.digests) for k in plan.kernels] == [
        (K418, {IMG418: D1, IMG418_RHEL: D1}),
        (K419, {IMG419_RHCOS: D2, IMG419: D2}),
    ]
    assert plan.os_tags == {"rhcos4.18": ("gpu-1",), "rhel9": ("gpu-3",)}
    assert "ONE OS tag" in plan.os_tag_note
    assert plan.upgrade_note.startswith("spec.driver.upgradePolicy")
    assert plan.previous_driver == PREVIOUS_DRIVER
    assert pol == policy()  # planning never mutates what inspect_cluster read

    # Guarded: the first op tests the whole driver section as read.
    assert plan.patch[0] == {"op": "test", "path": "/spec/driver", "value": PREVIOUS_DRIVER}
    patched = cluster_policy.apply_patch(pol, plan.patch)
    driver = patched["spec"]["driver"]
    assert (driver["usePrecompiled"], driver["repository"], driver["image"], driver["version"]) == (
        True,
        REPO,
        "driver",
        "570.158.01",
    )
    assert driver["upgradePolicy"] == PREVIOUS_DRIVER["upgradePolicy"]  # the rest is kept

    # Rollback restores the exact previous driver dict, and only over our own patch.
    restored = cluster_policy.apply_patch(patched, plan.rollback)
    assert restored["spec"]["driver"] == PREVIOUS_DRIVER
    assert list(restored["spec"]["driver"]) == list(PREVIOUS_DRIVER)
    assert restored == pol

    assert "spec.driver.usePrecompiled" in plan.summary
    assert "guard" in plan.summary


def test_patch_guard_catches_a_concurrent_change() -> None:
    pol = policy()
    plan = plan_rollout(
        state(N1, pol=pol), repository=REPO, image="driver", version="570.158.01", available={IMG418: D1}
    )
    changed = copy.deepcopy(pol)
    changed["spec"]["driver"]["version"] = "550.999.01"
    with pytest.raises(cluster_policy.PolicyError, match="guard failed"):
        cluster_policy.apply_patch(changed, plan.patch)


def test_rollback_guard_refuses_to_clobber_a_later_edit() -> None:
    pol = policy()
    plan = plan_rollout(
        state(N1, pol=pol), repository=REPO, image="driver", version="570.158.01", available={IMG418: D1}
    )
    patched = cluster_policy.apply_patch(pol, plan.patch)
    patched["spec"]["driver"]["version"] = "580.65.06"  # someone else, after us
    with pytest.raises(cluster_policy.PolicyError, match="guard failed"):
        cluster_policy.apply_patch(patched, plan.rollback)


def test_policy_without_precompiled_fields_rolls_back_exactly() -> None:
    previous = {"enabled": True, "upgradePolicy": {"autoUpgrade": False}}
    pol = policy(previous)
    plan = plan_rollout(
        state(N1, pol=pol), repository=REPO, image="driver", version="570.158.01", available={IMG418: D1}
    )
    assert [op["op"] for op in plan.patch] == ["test", "add", "add", "add", "add"]
    restored = cluster_policy.apply_patch(cluster_policy.apply_patch(pol, plan.patch), plan.rollback)
    assert restored["spec"]["driver"] == previous
    assert "usePrecompiled" not in restored["spec"]["driver"]


def test_expected_lines() -> None:
    plan = plan_rollout(
        state(N1, N3, pol=policy()),
        repository=REPO,
        image="driver",
        version="570.158.01",
        available=ALL_FOUR,
    )
    # Verification accepts either tag for each kernel, each on its own digest.
    ds418 = "nvidia-driver-daemonset-5.14.0-427.50.1.el9.4-rhcos4.18"
    ds419 = "nvidia-driver-daemonset-5.14.0-570.12.1.el9.6-rhel9.6"
    # The kernel as the node reports it and the DaemonSet as the operator names it: the script rebuilds
    # neither.
    assert plan.expected_lines.splitlines() == [
        f"{K418} {ds418} {IMG418} {D1}",
        f"{K418} {ds418} {IMG418_RHEL} {D1}",
        f"{K419} {ds419} {IMG419_RHCOS} {D2}",
        f"{K419} {ds419} {IMG419} {D2}",
    ]


def test_plan_to_dict_is_json_ready() -> None:
    import json

    plan = plan_rollout(
        state(N1, pol=policy()), repository=REPO, image="driver", version="570.158.01", available={IMG418: D1}
    )
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["kernels"][0]["nodes"] == ["gpu-1"]
    assert data["previous_driver"] == PREVIOUS_DRIVER
    assert data["rollback"] == plan.rollback


def test_bad_image_name_is_refused_before_any_patch() -> None:
    with pytest.raises(cluster_policy.PolicyError, match=re.escape("spec.driver.image")):
        plan_rollout(
            state(N1, pol=policy()),
            repository=REPO,
            image="driver/evil",
            version="570.158.01",
            available={f"{REPO}/driver/evil:570.158.01-{K418}-rhcos4.18": D1},
        )


def test_sample_policy_from_reference() -> None:
    import json
    from pathlib import Path

    sample = Path(__file__).resolve().parents[3] / "shared" / "reference" / "clusterpolicy-sample.json"
    if not sample.is_file():
        pytest.skip(f"{sample} is not available here")
    pol = json.loads(sample.read_text())
    plan = plan_rollout(
        state(N1, pol=pol), repository=REPO, image="driver", version="570.158.01", available={IMG418: D1}
    )
    restored = cluster_policy.apply_patch(cluster_policy.apply_patch(pol, plan.patch), plan.rollback)
    assert restored == pol


# ----------------------------------------------------------------------------- what precompiled cannot serve

KRT = "5.14.0-427.50.1.el9_4.x86_64_rt"  # NFD's label for uname '...x86_64+rt'
KARM = "5.14.0-427.50.1.el9_4.aarch64"


def test_rt_node_is_refused_and_named() -> None:
    [problem] = node_refusals([N1, GpuNode("gpu-rt", KRT, "rhcos", "4.18")], "v26.7.0")
    assert "gpu-rt" in problem and "real-time kernel" in problem and "compiled drivers" in problem


def test_rt_node_blocks_the_patch_but_not_the_other_kernels_planning() -> None:
    cluster = state(N1, GpuNode("gpu-rt", KRT, "rhcos", "4.18"), pol=policy())
    # Planning still knows what to publish for the kernels it can serve.
    assert wanted_images(cluster, REPO, "driver", "570.158.01") == [IMG418]
    with pytest.raises(RolloutBlocked, match="real-time kernel"):
        plan_rollout(cluster, repository=REPO, image="driver", version="570.158.01", available={IMG418: D1})


def test_two_arches_of_one_kernel_release_are_refused() -> None:
    [problem] = node_refusals([N1, GpuNode("gpu-arm", KARM, "rhcos", "4.18")], "v26.7.0")
    assert f"kernels {KARM} and {K418} map to the same DaemonSet" in problem


def test_same_kernel_on_two_os_releases_is_refused() -> None:
    [problem] = node_refusals([N1, GpuNode("gpu-9", K418, "rhel", "9.4")], "v26.7.0")
    assert "different OS versions found for the same kernel version" in problem
    assert "rhcos4.18 on gpu-1" in problem and "rhel9.4 on gpu-9" in problem


def test_unparseable_version_id_gets_the_operators_refusal() -> None:
    node = GpuNode("gpu-x", K418, "rhel", "nine")
    [problem] = node_refusals([node], "v26.3.1")
    assert "error processing OS major version 'nine'" in problem
    assert node_refusals([node], "v26.7.0") == []  # v26.7 does not parse it: 'rhelnine'


@pytest.mark.parametrize(
    ("driver", "reason"),
    [
        ({**PREVIOUS_DRIVER, "enabled": False}, "spec.driver.enabled is false"),
        # NVIDIADriver mode is planned elsewhere; with no NVIDIADriver resource it is refused, never patched.
        ({**PREVIOUS_DRIVER, "useNvidiaDriverCRD": True}, "no NVIDIADriver selects them"),
    ],
)
def test_policy_modes_without_a_clusterpolicy_driver_are_refused(driver: dict[str, Any], reason: str) -> None:
    cluster = state(N1, pol=policy(driver))
    with pytest.raises(RolloutBlocked, match=reason) as err:
        plan_rollout(cluster, repository=REPO, image="driver", version="570.158.01", available={IMG418: D1})
    assert "nothing on the cluster was changed" in str(err.value)


def test_the_clusterpolicy_refusals_leave_nvidiadriver_mode_to_its_own_planner() -> None:
    assert any(
        "spec.driver.enabled is false" in p
        for p in policy_refusals(policy({**PREVIOUS_DRIVER, "enabled": False}))
    )
    assert policy_refusals(policy({**PREVIOUS_DRIVER, "useNvidiaDriverCRD": True})) == []
