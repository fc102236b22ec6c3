"""Rollout rules: the coverage gate, per-kernel expectations, the guarded patch and its exact undo."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from precompiled_drivers import cluster_policy
from precompiled_drivers.cluster import ClusterState, GpuNode
from precompiled_drivers.rollout import KernelRollout, RolloutBlocked, kernel_rollouts, plan_rollout

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


def test_kernel_rollouts_group_nodes_by_kernel_and_os() -> None:
    rollouts = kernel_rollouts([N3, N2, N1], REPO, "driver", "570.158.01", "v26.7.0")
    assert rollouts == [
        KernelRollout(
            kernel=K418,
            os_tag="rhcos4.18",
            daemonset="nvidia-driver-daemonset-5.14.0-427.50.1.el9.4-rhcos4.18",
            image=IMG418,
            digest="",
            nodes=("gpu-1", "gpu-2"),
        ),
        KernelRollout(
            kernel=K419,
            os_tag="rhel9",
            # The DaemonSet name keeps the raw ID+VERSION_ID, whatever the OS tag rule.
            daemonset="nvidia-driver-daemonset-5.14.0-570.12.1.el9.6-rhel9.6",
            image=IMG419,
            digest="",
            nodes=("gpu-3",),
        ),
    ]


def test_kernel_rollouts_follow_operator_os_tag_rule() -> None:
    [rollout] = kernel_rollouts([N3], REPO, "driver", "570.158.01", "v26.3.0")
    assert rollout.image == f"{REPO}/driver:570.158.01-{K419}-rhel9.6"


def test_gate_blocks_naming_every_uncovered_kernel_and_its_nodes() -> None:
    cluster = state(N1, N2, N3, pol=policy())
    with pytest.raises(RolloutBlocked) as err:
        plan_rollout(cluster, repository=REPO, image="driver", version="570.158.01", available={})
    message = str(err.value)
    assert f"{K418} (rhcos4.18) on gpu-1, gpu-2: no {IMG418}" in message
    assert f"{K419} (rhel9) on gpu-3: no {IMG419}" in message
    assert "ocp_versions" in message


def test_gate_blocks_on_the_one_missing_kernel() -> None:
    cluster = state(N1, N3, pol=policy())
    with pytest.raises(RolloutBlocked) as err:
        plan_rollout(cluster, repository=REPO, image="driver", version="570.158.01", available={IMG418: D1})
    assert K419 in str(err.value)
    assert "gpu-3" in str(err.value)
    assert "gpu-1" not in str(err.value)


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
        available={IMG418: D1, IMG419: D2, f"{REPO}/driver:unrelated": D1},
    )
    assert [(k.kernel, k.image, k.digest) for k in plan.kernels] == [(K418, IMG418, D1), (K419, IMG419, D2)]
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
        available={IMG418: D1, IMG419: D2},
    )
    assert plan.expected_lines == (
        f"5.14.0-427.50.1.el9.4 {IMG418} {D1}\n5.14.0-570.12.1.el9.6 {IMG419} {D2}"
    )
    for line in plan.expected_lines.splitlines():
        assert len(line.split(" ")) == 3


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
