"""Tests for the ClusterPolicy JSON patches: enable, guard, disable, rollback, describe, CRD validation."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.crd_schema import crd_schema, validate_policy
from precompiled_drivers import cluster_policy as cp

REFERENCE = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference"

REPO = "quay.io/acme/nvidia"
IMAGE = "nvidia-gpu-driver"
DRIVER_VERSION = "570.158.01"

# Transcribed from the OLM CSV sample ClusterPolicy (gpu-operator-certified v26.7.0): its driver section,
# in its original key order, and the GDS/GDRCopy switches.
SAMPLE_DRIVER: dict[str, Any] = {
    "enabled": True,
    "useNvidiaDriverCRD": False,
    "kernelModuleType": "auto",
    "upgradePolicy": {
        "autoUpgrade": True,
        "drain": {"deleteEmptyDir": False, "enable": False, "force": False, "timeoutSeconds": 300},
        "maxParallelUpgrades": 1,
        "maxUnavailable": "25%",
        "podDeletion": {"deleteEmptyDir": False, "force": False, "timeoutSeconds": 300},
        "waitForCompletion": {"timeoutSeconds": 0},
    },
    "repoConfig": {"configMapName": ""},
    "certConfig": {"name": ""},
    "licensingConfig": {"nlsEnabled": True, "secretName": ""},
    "virtualTopology": {"config": ""},
    "kernelModuleConfig": {"name": ""},
}


def make_policy(driver: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"operator": {"use_ocp_driver_toolkit": True}}
    if driver is not None:
        spec["driver"] = copy.deepcopy(driver)
    spec.update({"gds": {"enabled": False}, "gdrcopy": {"enabled": False}})
    spec.update(extra)
    return {
        "apiVersion": "nvidia.com/v1",
        "kind": "ClusterPolicy",
        "metadata": {"name": "gpu-cluster-policy"},
        "spec": spec,
    }


def enable(driver: dict[str, Any] | None) -> list[dict[str, Any]]:
    return cp.enable_patch(driver, repository=REPO, image=IMAGE, version=DRIVER_VERSION)


# --- driver_spec ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (make_policy(SAMPLE_DRIVER), SAMPLE_DRIVER),
        (make_policy(None), {}),
        ({"metadata": {"name": "x"}}, {}),
        (make_policy({"enabled": True}), {"enabled": True}),
    ],
)
def test_driver_spec(policy: dict[str, Any], expected: dict[str, Any]) -> None:
    assert cp.driver_spec(policy) == expected


def test_driver_spec_is_a_deep_copy() -> None:
    policy = make_policy(SAMPLE_DRIVER)
    driver = cp.driver_spec(policy)
    driver["upgradePolicy"]["drain"]["enable"] = True
    assert policy["spec"]["driver"]["upgradePolicy"]["drain"]["enable"] is False


def test_has_driver_section() -> None:
    assert cp.has_driver_section(make_policy({}))
    assert not cp.has_driver_section(make_policy(None))


# --- check_precompiled_compatible ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gds", "gdrcopy", "named"),
    [
        (True, False, ["spec.gds.enabled"]),
        (False, True, ["spec.gdrcopy.enabled"]),
        (True, True, ["spec.gds.enabled", "spec.gdrcopy.enabled"]),
    ],
)
def test_precompiled_refuses_gds_and_gdrcopy(gds: bool, gdrcopy: bool, named: list[str]) -> None:
    policy = make_policy(SAMPLE_DRIVER, gds={"enabled": gds}, gdrcopy={"enabled": gdrcopy})
    with pytest.raises(cp.PolicyError) as err:
        cp.check_precompiled_compatible(policy)
    for field in named:
        assert f"{field} is true" in str(err.value)
    assert "set spec." in str(err.value)  # the fix is spelled out
    with pytest.raises(cp.PolicyError):
        cp.plan_enable(policy, repository=REPO, image=IMAGE, version=DRIVER_VERSION)


@pytest.mark.parametrize("extra", [{}, {"gds": {"enabled": False}}, {"gds": {}, "gdrcopy": None}])
def test_precompiled_accepts_disabled_or_absent_gds(extra: dict[str, Any]) -> None:
    policy = make_policy(SAMPLE_DRIVER)
    policy["spec"].pop("gds")
    policy["spec"].pop("gdrcopy")
    policy["spec"].update(extra)
    cp.check_precompiled_compatible(policy)  # no exception


# --- enable_patch --------------------------------------------------------------------------------------


def test_enable_patch_on_sample_driver() -> None:
    ops = enable(SAMPLE_DRIVER)
    assert ops == [
        {"op": "test", "path": "/spec/driver", "value": SAMPLE_DRIVER},
        {"op": "add", "path": "/spec/driver/usePrecompiled", "value": True},
        {"op": "add", "path": "/spec/driver/repository", "value": REPO},
        {"op": "add", "path": "/spec/driver/image", "value": IMAGE},
        {"op": "add", "path": "/spec/driver/version", "value": DRIVER_VERSION},
    ]
    patched = cp.apply_patch(make_policy(SAMPLE_DRIVER), ops)
    assert patched["spec"]["driver"] == {
        **SAMPLE_DRIVER,
        "usePrecompiled": True,
        "repository": REPO,
        "image": IMAGE,
        "version": DRIVER_VERSION,
    }
    # Everything outside the four fields is untouched.
    assert {k: v for k, v in patched["spec"].items() if k != "driver"} == {
        k: v for k, v in make_policy(SAMPLE_DRIVER)["spec"].items() if k != "driver"
    }


def test_enable_patch_replaces_fields_already_set() -> None:
    previous = {
        "enabled": True,
        "usePrecompiled": False,
        "repository": "nvcr.io/nvidia",
        "image": "driver",
        "version": "550.90.07",
    }
    ops = enable(previous)
    assert [op["op"] for op in ops] == ["test", "replace", "replace", "replace", "replace"]
    patched = cp.apply_patch(make_policy(previous), ops)
    assert patched["spec"]["driver"] == {
        "enabled": True,
        "usePrecompiled": True,
        "repository": REPO,
        "image": IMAGE,
        "version": DRIVER_VERSION,
    }


def test_enable_patch_on_empty_driver_section_is_still_guarded() -> None:
    ops = enable({})
    assert ops[0] == {"op": "test", "path": "/spec/driver", "value": {}}
    assert cp.apply_patch(make_policy({}), ops)["spec"]["driver"]["usePrecompiled"] is True


def test_enable_patch_without_driver_section_adds_it() -> None:
    policy = make_policy(None)
    ops = cp.plan_enable(policy, repository=REPO, image=IMAGE, version=DRIVER_VERSION)
    assert ops == [
        {
            "op": "add",
            "path": "/spec/driver",
            "value": {"usePrecompiled": True, "repository": REPO, "image": IMAGE, "version": DRIVER_VERSION},
        }
    ]
    assert cp.apply_patch(policy, ops)["spec"]["driver"]["image"] == IMAGE


def test_enable_patch_does_not_alias_the_input() -> None:
    previous = copy.deepcopy(SAMPLE_DRIVER)
    ops = enable(previous)
    previous["enabled"] = False
    assert ops[0]["value"]["enabled"] is True


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("spec.driver.image", {"image": "bad/name"}),
        ("spec.driver.image", {"image": ""}),
        ("spec.driver.image", {"image": "driver:tag"}),
        ("spec.driver.repository", {"repository": "https://quay.io/acme"}),
        ("spec.driver.repository", {"repository": "quay.io/acme "}),
        ("spec.driver.version", {"version": "570"}),
        ("spec.driver.version", {"version": "570.1; rm -rf /"}),
    ],
)
def test_enable_patch_rejects_bad_values(field: str, kwargs: dict[str, str]) -> None:
    args = {"repository": REPO, "image": IMAGE, "version": DRIVER_VERSION, **kwargs}
    with pytest.raises(cp.PolicyError, match=field.replace(".", r"\.")):
        cp.enable_patch(SAMPLE_DRIVER, **args)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(enabled=False),  # someone disabled the driver
        lambda d: d["upgradePolicy"]["drain"].update(enable=True),  # nested edit
        lambda d: d.update(usePrecompiled=True, version="550.90.07"),  # a competing rollout
        lambda d: d.pop("kernelModuleType"),
    ],
)
def test_guard_fails_on_concurrently_modified_policy(change: Any) -> None:
    ops = enable(SAMPLE_DRIVER)
    current = make_policy(SAMPLE_DRIVER)
    change(current["spec"]["driver"])
    before = copy.deepcopy(current)
    with pytest.raises(cp.PolicyError, match="changed since it was read"):
        cp.apply_patch(current, ops)
    assert current == before  # nothing applied, input untouched


def test_apply_patch_reports_bad_path() -> None:
    with pytest.raises(cp.PolicyError, match="does not apply"):
        cp.apply_patch(make_policy(None), [{"op": "remove", "path": "/spec/driver/image"}])


# --- rollback_patch ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "previous",
    [
        SAMPLE_DRIVER,
        {},
        {
            "version": "550.90.07",
            "enabled": True,
            "usePrecompiled": False,
            "image": "driver",
            "repository": "nvcr.io/nvidia",
        },
    ],
)
def test_rollback_restores_previous_exactly(previous: dict[str, Any]) -> None:
    original = make_policy(previous)
    patched = cp.apply_patch(original, enable(cp.driver_spec(original)))
    ops = cp.rollback_patch(cp.driver_spec(original), cp.driver_spec(patched))
    assert ops[0] == {"op": "test", "path": "/spec/driver", "value": patched["spec"]["driver"]}
    restored = cp.apply_patch(patched, ops)
    assert restored == original
    # Same keys in the same order, not merely equal.
    assert json.dumps(restored["spec"]["driver"], sort_keys=False) == json.dumps(previous, sort_keys=False)
    assert json.dumps(restored, sort_keys=False) == json.dumps(original, sort_keys=False)


def test_rollback_refuses_when_policy_changed_after_our_patch() -> None:
    original = make_policy(SAMPLE_DRIVER)
    patched = cp.apply_patch(original, enable(SAMPLE_DRIVER))
    ops = cp.rollback_patch(SAMPLE_DRIVER, cp.driver_spec(patched))
    patched["spec"]["driver"]["version"] = "580.65.06"  # someone rolled a newer driver meanwhile
    with pytest.raises(cp.PolicyError, match="changed since it was read"):
        cp.apply_patch(patched, ops)


def test_rollback_with_unknown_previous_disables() -> None:
    patched = cp.apply_patch(make_policy(SAMPLE_DRIVER), enable(SAMPLE_DRIVER))
    applied = cp.driver_spec(patched)
    ops = cp.rollback_patch(None, applied)
    assert ops == cp.disable_patch(applied)
    driver = cp.apply_patch(patched, ops)["spec"]["driver"]
    assert driver == {**SAMPLE_DRIVER, "usePrecompiled": False}


# --- disable_patch -------------------------------------------------------------------------------------


def test_disable_patch_removes_only_present_fields() -> None:
    current = {"enabled": True, "usePrecompiled": True, "repository": REPO, "version": DRIVER_VERSION}
    ops = cp.disable_patch(current)
    assert ops == [
        {"op": "test", "path": "/spec/driver", "value": current},
        {"op": "replace", "path": "/spec/driver/usePrecompiled", "value": False},
        {"op": "remove", "path": "/spec/driver/version"},
        {"op": "remove", "path": "/spec/driver/repository"},
    ]
    assert cp.apply_patch(make_policy(current), ops)["spec"]["driver"] == {
        "enabled": True,
        "usePrecompiled": False,
    }


def test_disable_patch_when_use_precompiled_absent() -> None:
    ops = cp.disable_patch({"enabled": True})
    assert ops[1] == {"op": "add", "path": "/spec/driver/usePrecompiled", "value": False}
    assert cp.apply_patch(make_policy({"enabled": True}), ops)["spec"]["driver"] == {
        "enabled": True,
        "usePrecompiled": False,
    }


# --- describe_patch ------------------------------------------------------------------------------------


def test_describe_enable_patch() -> None:
    previous = {"enabled": True, "usePrecompiled": False, "image": "driver"}
    text = cp.describe_patch(enable(previous))
    assert text.splitlines() == [
        "spec.driver.usePrecompiled: false -> true",
        'spec.driver.image: "driver" -> "nvidia-gpu-driver"',
        'spec.driver.repository: <unset> -> "quay.io/acme/nvidia"',
        'spec.driver.version: <unset> -> "570.158.01"',
        "guard: spec.driver must still equal the value read before",
    ]


def test_describe_disable_and_unguarded_patches() -> None:
    disable = cp.describe_patch(cp.disable_patch({"usePrecompiled": True, "image": IMAGE}))
    assert disable.splitlines()[:2] == [
        "spec.driver.usePrecompiled: true -> false",
        'spec.driver.image: "nvidia-gpu-driver" -> <removed>',
    ]
    unguarded = cp.describe_patch(enable(None))
    assert "spec.driver.usePrecompiled: <unset> -> true" in unguarded
    assert "guard: none" in unguarded


def test_describe_rollback_to_identical_value() -> None:
    assert cp.describe_patch(cp.rollback_patch({"a": 1}, {"a": 1})).startswith("no change to spec.driver")


# --- validate_policy against the real CRD --------------------------------------------------------------


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    path = REFERENCE / "nvidia.com_clusterpolicies.yaml"
    if not path.is_file():
        pytest.skip(f"reference CRD not found at {path}")
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def sample_policy() -> dict[str, Any]:
    path = REFERENCE / "clusterpolicy-sample.json"
    if not path.is_file():
        pytest.skip(f"reference sample policy not found at {path}")
    return json.loads(path.read_text())


def test_transcribed_driver_matches_reference_sample(sample_policy: dict[str, Any]) -> None:
    assert cp.driver_spec(sample_policy) == SAMPLE_DRIVER


def test_sample_policy_is_valid_before_and_after_enable(
    crd: dict[str, Any], sample_policy: dict[str, Any]
) -> None:
    validate_policy(sample_policy, crd)
    ops = cp.plan_enable(sample_policy, repository=REPO, image=IMAGE, version=DRIVER_VERSION)
    patched = cp.apply_patch(sample_policy, ops)
    validate_policy(patched, crd)
    disabled = cp.apply_patch(patched, cp.disable_patch(cp.driver_spec(patched)))
    validate_policy(disabled, crd)


def test_invalid_policy_is_rejected_with_paths(crd: dict[str, Any], sample_policy: dict[str, Any]) -> None:
    bad = copy.deepcopy(sample_policy)
    bad["spec"]["driver"].update(usePrecompiled="yes", image="bad/name")
    with pytest.raises(cp.PolicyError) as err:
        validate_policy(bad, crd)
    message = str(err.value)
    assert "spec.driver.usePrecompiled: 'yes' is not of type 'boolean'" in message
    assert "spec.driver.image: 'bad/name' must fully match" in message


def test_crd_schema_requires_driver_and_checks_enums(
    crd: dict[str, Any], sample_policy: dict[str, Any]
) -> None:
    bad = copy.deepcopy(sample_policy)
    del bad["spec"]["driver"]
    bad["spec"]["driver_"] = {}
    bad["status"] = {"state": "done"}
    with pytest.raises(cp.PolicyError) as err:
        validate_policy(bad, crd)
    assert "spec: 'driver' is a required property" in str(err.value)
    assert "status.state: 'done' is not one of" in str(err.value)


def test_crd_schema_drops_kubernetes_extensions(crd: dict[str, Any]) -> None:
    text = json.dumps(crd_schema(crd))
    assert "x-kubernetes-" not in text
    assert '"x-kubernetes-' in json.dumps(crd)  # the raw CRD has them, so the stripping is exercised
    with pytest.raises(cp.PolicyError, match="no version 'v2'"):
        crd_schema(crd, "v2")


def test_upgrade_policy_note_says_how_fast_nodes_switch() -> None:
    from precompiled_drivers.cluster_policy import upgrade_policy_note

    def with_upgrade(upgrade: dict | None) -> dict:
        driver = {"enabled": True} if upgrade is None else {"enabled": True, "upgradePolicy": upgrade}
        return {"spec": {"driver": driver}}

    assert "autoUpgrade is off" in upgrade_policy_note(with_upgrade(None))  # CRD default: false
    assert "deleted by hand or its node reboots" in upgrade_policy_note(with_upgrade({"autoUpgrade": False}))
    # NVIDIA's precompiled sample (gpu-driver-container clusterpolicy.json): autoUpgrade, drain enabled.
    note = upgrade_policy_note(
        with_upgrade(
            {
                "autoUpgrade": True,
                "maxParallelUpgrades": 1,
                "maxUnavailable": "25%",
                "drain": {"enable": True, "force": True, "timeoutSeconds": 300},
            }
        )
    )
    assert note == (
        "spec.driver.upgradePolicy: autoUpgrade on, 1 node(s) at a time, at most 25% unavailable; "
        "nodes are drained first (timeout 300 s, force)"
    )
    note = upgrade_policy_note(with_upgrade({"autoUpgrade": True, "maxParallelUpgrades": 0}))
    assert "every node at once (maxParallelUpgrades 0)" in note
    assert "not drained (GPU pods are deleted, timeout 300 s)" in note
