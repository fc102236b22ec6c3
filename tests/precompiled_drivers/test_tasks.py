"""The Python steps' pure helpers: state collapsing, the failing report, and XCom-to-XCom planning."""

from __future__ import annotations

import json
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from precompiled_drivers import readiness, tasks
from precompiled_drivers.cluster import (
    KERNEL_LABEL,
    OS_ID_LABEL,
    OS_VERSION_LABEL,
    ClusterState,
    parse_cluster,
)
from precompiled_drivers.config import run_config
from precompiled_drivers.report import STEPS
from precompiled_drivers.rollout import RolloutBlocked
from precompiled_drivers.settings import Settings

K418 = "5.14.0-427.50.1.el9_4.x86_64"
REPO = "quay.io/acme/nvidia"
DTK = "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:" + "a" * 64
IMAGE = f"{REPO}/driver:570.158.01-{K418}-rhcos4.18"
DIGEST = "sha256:" + "d" * 64


# ----------------------------------------------------------------------------- step_states


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"inspect_cluster": "success"}, {"inspect_cluster": "success"}),
        (
            {
                "build_driver_image_0": "success",
                "build_driver_image_1": "failed",
                "build_driver_image_2": "success",
            },
            {"build_driver_image": "failed"},
        ),
        (
            {"push_driver_image_0": "skipped", "push_driver_image_1": "success"},
            {"push_driver_image": "skipped"},
        ),
        (
            {"resolve_driver_toolkit_0": "up_for_retry", "resolve_driver_toolkit_1": "upstream_failed"},
            {"resolve_driver_toolkit": "upstream_failed"},
        ),
        ({"verify_rollout": None}, {"verify_rollout": "none"}),
        # A mapped instance that never finished must not hide behind its siblings' success.
        (
            {"build_driver_image_0": "success", "build_driver_image_1": "removed"},
            {"build_driver_image": "removed"},
        ),
        (
            {"build_driver_image_0": "queued", "build_driver_image_1": "success"},
            {"build_driver_image": "queued"},
        ),
        (
            {"build_driver_image_0": "deferred", "build_driver_image_1": "running"},
            {"build_driver_image": "running"},
        ),
        ({"build_driver_image_0": "success", "build_driver_image_1": None}, {"build_driver_image": "none"}),
        # Not a mapped suffix: stays its own key.
        (
            {"report": "running", "plan_builds_extra": "success"},
            {"report": "running", "plan_builds_extra": "success"},
        ),
        ({}, {}),
    ],
)
def test_step_states(raw: dict[str, Any], expected: dict[str, str]) -> None:
    assert tasks.step_states(raw) == expected


def test_step_states_keeps_every_step_apart() -> None:
    raw = {f"{step}_0": "success" for step in STEPS} | {"build_driver_image_1": "failed"}
    collapsed = tasks.step_states(raw)
    assert set(collapsed) == set(STEPS)
    assert collapsed["build_driver_image"] == "failed"
    assert collapsed["push_driver_image"] == "success"


# ----------------------------------------------------------------------------- report


def test_report_fails_the_run_when_a_step_failed() -> None:
    failures = {"verify_rollout": {"reason": "ERROR: rollout not verified within 60s", "map_index": -1}}
    states = {"verify_rollout": "failed", "rollback_cluster_policy": "upstream_failed", "x": "success"}
    with pytest.raises(
        tasks.RunFailed, match="Run FAILED at verify_rollout: ERROR: rollout not verified"
    ) as exc:
        tasks.report({}, states, failures)
    assert exc.value.report.splitlines()[0].startswith("Run FAILED at verify_rollout")


def test_a_step_that_could_not_run_fails_the_run_too() -> None:
    # upstream_failed alone (the failed task is not a reported step) still fails the run.
    with pytest.raises(tasks.RunFailed, match="plan_rollout could not run"):
        tasks.report({}, {"plan_rollout": "upstream_failed", "inspect_cluster": "success"})


def test_report_returns_the_text_when_all_went_well() -> None:
    text = tasks.report({}, {step: "success" for step in STEPS})
    assert text.startswith("NVIDIA precompiled driver pipeline: report")


def test_failed_steps_in_procedure_order() -> None:
    states = {
        "report": "failed",
        "verify_rollout": "failed",
        "plan_builds": "upstream_failed",
        "x": "success",
    }
    assert tasks.failed_steps(states) == ["plan_builds", "verify_rollout", "report"]


# ----------------------------------------------------------------------------- needs_rollback

PATCHED = {"previous_driver": {}, "patched": True, "patched_at": "2025-01-31T12:00:00Z"}
UNCHANGED = {"previous_driver": {}, "patched": False, "patched_at": None}


@pytest.mark.parametrize(
    ("patch_state", "verify_state", "patch", "needed"),
    [
        ("success", "success", PATCHED, False),  # all went well
        ("success", "failed", PATCHED, True),  # patched, not verified: restore
        ("failed", "upstream_failed", UNCHANGED, False),  # refused by its guard: nothing changed
        ("failed", "upstream_failed", None, True),  # failed without saying: it may have landed
        ("success", "failed", UNCHANGED, False),  # dry run: nothing was applied
        ("upstream_failed", "upstream_failed", None, False),  # never ran (plan or gate failed)
        ("skipped", "skipped", None, False),  # nothing to do
    ],
)
def test_rollback_decision(
    patch_state: str, verify_state: str, patch: dict[str, Any] | None, needed: bool
) -> None:
    decided, why = tasks.rollback_decision(
        {"patch_cluster_policy": patch_state, "verify_rollout": verify_state}, patch
    )
    assert decided is needed, why
    assert why


@pytest.mark.parametrize(
    ("check_state", "patch", "needed", "why"),
    [
        ("success", PATCHED, False, "the rollout verified"),
        ("skipped", PATCHED, False, "the rollout verified"),  # switched off, or a dry run
        ("failed", PATCHED, True, "the GPU workload check failed on the patched policy"),
        ("failed", UNCHANGED, False, "the patch was not applied (dry run)"),
    ],
)
def test_a_failed_gpu_check_rolls_back_like_a_failed_verification(
    check_state: str, patch: dict[str, Any], needed: bool, why: str
) -> None:
    states = {
        "patch_cluster_policy": "success",
        "verify_rollout": "success",
        "check_gpu_workload": check_state,
    }
    assert tasks.rollback_decision(states, patch) == (needed, why)
    # A failed verification leaves the check upstream_failed: the verification is the reason.
    states = {
        "patch_cluster_policy": "success",
        "verify_rollout": "failed",
        "check_gpu_workload": "upstream_failed",
    }
    assert tasks.rollback_decision(states, PATCHED) == (True, "the patched policy did not verify")


# ----------------------------------------------------------------------------- planning from XComs


def config(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "ocp_versions": ["4.18.12"],
        "driver_versions": ["570.158.01"],
        "cuda_version": "12.8.1",
        "repository": REPO,
        "driver_repo_ref": "main",
        "operator_version": "v26.7.0",
    }
    params.update(overrides)
    return run_config(params, Settings()).to_dict()


POLICY = {"spec": {"driver": {"enabled": True}}}
CLUSTER = {
    "nodes": [
        {
            "name": "gpu-1",
            "labels": {KERNEL_LABEL: K418, OS_ID_LABEL: "rhcos", OS_VERSION_LABEL: "4.18"},
        },
        None,
    ],
    "operator": None,
    "policy": POLICY,
    "cluster_version": "4.18.12",
}
TOOLKIT = {
    "version": "4.18.12",
    "arch": "x86_64",
    "dtk_image": DTK,
    "toolkit": {"KERNEL_VERSION": K418, "RT_KERNEL_VERSION": K418 + "+rt", "RHEL_VERSION": "9.4"},
}


def seen(raw: dict[str, Any]) -> dict[str, Any]:
    """What plan_releases hands the later planning steps for inspect_cluster's XCom ``raw``."""
    return parse_cluster(raw, "v26.7.0").to_dict()


def test_plan_releases_reads_the_cluster_once_for_the_later_planning_steps() -> None:
    ti = XComRecorder()
    tasks.plan_releases(config(), CLUSTER, ti=ti)
    pushed = json.loads(json.dumps(ti.pushed[tasks.CLUSTER_KEY]))  # as XCom stores it
    state = ClusterState.from_dict(pushed)
    assert state == parse_cluster(CLUSTER, "v26.7.0")
    assert state.nodes[0].kernel == K418 and state.operator_version == "v26.7.0"


def test_plan_builds_and_select() -> None:
    planned = tasks.plan_builds(config(), seen(CLUSTER), [TOOLKIT])
    [candidate] = planned["candidates"]
    assert candidate["image"] == IMAGE
    # The node kernel's image is the same one; it counts only with open modules (auto, 570 branch).
    assert planned["check_env"]["IMAGES"] == f"{IMAGE} open"
    assert planned["alias_env"]["ALIASES"] == ""  # one OS tag in the cluster and the plan
    todo = tasks.select_builds(config(), planned["candidates"], {IMAGE: ""})
    assert len(todo) == 1
    assert todo[0]["env_vars"]["IMAGE"] == IMAGE
    assert tasks.select_builds(config(), planned["candidates"], {IMAGE: DIGEST}) == []
    assert len(tasks.select_builds(config(force_rebuild=True), planned["candidates"], {IMAGE: DIGEST})) == 1


def test_select_builds_refuses_before_any_build_without_a_required_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    planned = tasks.plan_builds(config(), seen(CLUSTER), [TOOLKIT])
    monkeypatch.setenv("PRECOMPILED_DRIVERS_REQUIRE_MODULE_SIGNING", "true")
    no_keys = seen({**CLUSTER, "signing_keys": {"module": "", "image": ""}})
    with pytest.raises(AirflowFailException, match="no build was started") as err:
        tasks.select_builds(config(), planned["candidates"], {IMAGE: ""}, no_keys)
    assert "precompiled-drivers-module-signing" in str(err.value)
    # Nothing to build: nothing to sign, no refusal.
    assert tasks.select_builds(config(), planned["candidates"], {IMAGE: DIGEST}, no_keys) == []
    with_key = seen({**CLUSTER, "signing_keys": {"module": "ab" * 32, "image": ""}})
    [todo] = tasks.select_builds(config(), planned["candidates"], {IMAGE: ""}, with_key)
    assert todo["env_vars"]["REQUIRE_MODULE_SIGNING"] == "true"


K419 = "5.14.0-570.12.1.el9_6.x86_64"
MIXED = {
    **CLUSTER,
    "nodes": [
        CLUSTER["nodes"][0],
        {"name": "gpu-2", "labels": {KERNEL_LABEL: K419, OS_ID_LABEL: "rhel", OS_VERSION_LABEL: "9.6"}},
        None,
    ],
}


def test_mixed_fleet_publishes_each_image_under_every_os_tag() -> None:
    toolkit_419 = {
        **TOOLKIT,
        "version": "4.19.3",
        "toolkit": {"KERNEL_VERSION": K419, "RT_KERNEL_VERSION": "", "RHEL_VERSION": "9.6"},
    }
    planned = tasks.plan_builds(config(ocp_versions=["4.19.3"]), seen(MIXED), [TOOLKIT, toolkit_419])
    aliases = planned["alias_env"]["ALIASES"].splitlines()
    assert aliases == [
        f"{IMAGE} {REPO}/driver:570.158.01-{K418}-rhel9",
        f"{REPO}/driver:570.158.01-{K419}-rhel9 {REPO}/driver:570.158.01-{K419}-rhcos4.18",
    ]
    # The registry look-up covers every image the operator may pull for the nodes now, with its type.
    looked_up = planned["check_env"]["IMAGES"].splitlines()
    assert f"{REPO}/driver:570.158.01-{K419}-rhcos4.18 open" in looked_up
    assert len(looked_up) == 4

    published = {IMAGE: DIGEST}
    pushed = [{"image": f"{REPO}/driver:570.158.01-{K419}-rhel9", "digest": "sha256:" + "e" * 64}]
    aliased = {line.split()[1]: d for line, d in zip(aliases, (DIGEST, "sha256:" + "e" * 64), strict=True)}
    out = tasks.plan_rollout(config(), seen(MIXED), planned, published, pushed, aliased, run_id="r1")
    assert len(out["verify_env"]["EXPECTED"].splitlines()) == 4
    # Every image and copy is there: the cluster can stay on 4.18 and move to 4.19.3.
    assert readiness.lines(out["readiness"]) == [
        "4.18.12-x86_64 (current release): ready (2 image(s) in the registry)",
        "4.19.3-x86_64 (upgrade target): ready (2 image(s) in the registry)",
    ]
    manifest = json.loads(out["readiness_env"]["CONFIGMAP_JSON"])
    assert manifest["data"]["4.19.3-x86_64"] == "ready (2 image(s) in the registry)"
    assert manifest["metadata"]["annotations"]["precompiled-drivers.github.io/run-id"] == "r1"
    # A refusal is final: the same inputs would be refused again, so no retry (AirflowFailException).
    ti = XComRecorder()
    with pytest.raises(AirflowFailException, match=r"under OS tag rhcos4\.18") as err:
        tasks.plan_rollout(config(), seen(MIXED), planned, published, pushed, {}, ti=ti)
    assert isinstance(err.value.__cause__, RolloutBlocked)
    # ... and the readiness is still kept for record_readiness and the report: 4.19.3 lacks its copy.
    assert set(ti.pushed) == {"readiness", "readiness_env"}
    assert readiness.lines(ti.pushed["readiness"])[1] == (
        f"4.19.3-x86_64 (upgrade target): NOT ready: missing {REPO}/driver:570.158.01-{K419}-rhcos4.18"
    )


class XComRecorder:
    """What a task instance is handed by ``xcom_push``."""

    def __init__(self) -> None:
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value


NO_BUILDS = {"candidates": [], "rejected": []}


def test_plan_rollout_envs() -> None:
    out = tasks.plan_rollout(config(), seen(CLUSTER), NO_BUILDS, {IMAGE: DIGEST}, None, None)
    assert out["verify_env"]["EXPECTED"] == (
        "5.14.0-427.50.1.el9_4.x86_64 nvidia-driver-daemonset-5.14.0-427.50.1.el9.4-rhcos4.18 "
        f"{IMAGE} {DIGEST}"
    )
    assert out["patch_env"]["DRY_RUN"] == "false"
    assert '"op":"test"' in out["patch_env"]["PATCH_JSON"]
    assert out["rollback_env"]["PREVIOUS_DRIVER_JSON"] == '{"enabled":true}'


def test_plan_rollout_uses_pushed_digests() -> None:
    pushed = [{"image": IMAGE, "digest": DIGEST, "staging_image": "x"}, None]
    out = tasks.plan_rollout(config(), seen(CLUSTER), NO_BUILDS, {IMAGE: ""}, pushed, {})
    assert out["plan"]["kernels"][0]["digests"] == {IMAGE: DIGEST}


def test_a_malformed_toolkit_fails_its_release_not_the_others_builds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 4.19.5's toolkit file is unusable; 4.18.12's builds are still planned and checked.
    bad = {**TOOLKIT, "version": "4.19.5", "toolkit": {**TOOLKIT["toolkit"], "RHEL_VERSION": "nine"}}
    planned = tasks.plan_builds(config(), seen(CLUSTER), [bad, TOOLKIT])
    assert [c["image"] for c in planned["candidates"]] == [IMAGE]
    assert planned["check_env"]["IMAGES"] == f"{IMAGE} open"
    [rejected] = planned["rejected"]
    assert (rejected["version"], rejected["arch"]) == ("4.19.5", "x86_64")
    assert "RHEL_VERSION: got 'nine'" in rejected["error"]
    assert "release 4.19.5-x86_64 left out" in caplog.text
    # Visible: the report names it and fails the run, even though every task succeeded.
    states = dict.fromkeys(STEPS, "success")
    with pytest.raises(RuntimeError, match=r"Run FAILED: release 4\.19\.5-x86_64 left out"):
        tasks.report({"plan_builds": planned}, states)
    from precompiled_drivers.report import render_report

    assert "4.19.5-x86_64: driver toolkit of 4.19.5-x86_64: RHEL_VERSION" in render_report(
        {"plan_builds": planned}, states
    )


def test_plan_builds_adds_64k_images_for_a_64k_gpu_node() -> None:
    karm = "5.14.0-570.12.1.el9_6.aarch64"
    node = {
        "name": "gpu-arm-64k",
        "labels": {KERNEL_LABEL: f"{karm}_64k", OS_ID_LABEL: "rhel", OS_VERSION_LABEL: "9.6"},
    }
    arm = {
        "version": "4.19.3",
        "arch": "aarch64",
        "dtk_image": DTK,
        # openshift/driver-toolkit Dockerfile on aarch64: kernel-rt-core is not installed.
        "toolkit": {
            "KERNEL_VERSION": karm,
            "RT_KERNEL_VERSION": "package kernel-rt-core is not installed",
            "RHEL_VERSION": "9.6",
        },
    }
    planned = tasks.plan_builds(config(arches=["aarch64"]), seen({**CLUSTER, "nodes": [node]}), [arm])
    tags = [c["tag"] for c in planned["candidates"]]
    assert tags == [f"570.158.01-{karm}-rhel9", f"570.158.01-{karm}_64k-rhel9"]
    assert planned["rejected"] == []
    # The node's image is among those looked up, and it is the 64k build's.
    looked_up = [line.split()[0] for line in planned["check_env"]["IMAGES"].splitlines()]
    assert looked_up == sorted(c["image"] for c in planned["candidates"])


# An RT GPU node as NFD labels it: uname -r `5.14.0-427.50.1.el9_4.x86_64+rt` (RHEL 9 kernel-rt), '+' -> '_'
# (node-feature-discovery source/kernel/kernel.go). NVIDIA's precompiled recipe has no RT build and the
# operator cannot name its DaemonSet (gpu-operator getSanitizedKernelVersion gives '..rt').
RT_NODE = {
    "name": "gpu-rt",
    "labels": {
        KERNEL_LABEL: K418.replace(".x86_64", ".x86_64_rt"),
        OS_ID_LABEL: "rhcos",
        OS_VERSION_LABEL: "4.18",
    },
}


def test_an_rt_gpu_node_does_not_stop_the_other_builds_and_the_gate_names_it() -> None:
    cluster = {**CLUSTER, "nodes": [CLUSTER["nodes"][0], RT_NODE]}
    planned = tasks.plan_builds(config(), seen(cluster), [TOOLKIT])
    assert [c["image"] for c in planned["candidates"]] == [IMAGE]
    assert planned["check_env"]["IMAGES"] == f"{IMAGE} open"
    with pytest.raises(
        AirflowFailException, match=r"gpu-rt run the real-time kernel 5\.14\.0-427\.50\.1\.el9_4\.x86_64_rt"
    ):
        tasks.plan_rollout(config(), seen(cluster), NO_BUILDS, {IMAGE: DIGEST}, None, None)


# NVIDIADriver mode: a GPUCluster and one precompiled NVIDIADriver (NVIDIA's sample shape) on gpu-1.
NVD_CLUSTER = {
    **CLUSTER,
    "policy": None,
    "gpu_clusters": {"items": [{"metadata": {"name": "gpu-cluster"}}]},
    "nvidia_drivers": {
        "items": [
            {
                "metadata": {"name": "pool-a", "uid": "uid-a"},
                "spec": {
                    "driverType": "gpu",
                    "usePrecompiled": True,
                    "repository": REPO,
                    "image": "driver",
                    "version": "550.90.07",
                    "nodeSelector": {},
                },
            },
        ]
    },
}


def test_plan_rollout_in_nvidiadriver_mode_hands_the_stages_to_their_step_only() -> None:
    out = tasks.plan_rollout(config(), seen(NVD_CLUSTER), NO_BUILDS, {IMAGE: DIGEST}, None, None)
    # The ClusterPolicy steps get no input (they skip); the staged rollout gets every stage.
    assert [out[k] for k in ("patch_env", "verify_env", "gpu_check_env", "rollback_env")] == [None] * 4
    assert out["nvd_env"]["STAGES"] == "pool-a patch"
    assert f"{IMAGE} {DIGEST} nvidia-gpu-driver-rhcos4.18-" in out["nvd_env"]["STAGE_1_EXPECTED"]
    assert out["plan"]["mode"] == "NVIDIADriver" and out["plan"]["stages"][0]["driver"] == "pool-a"
    # ClusterPolicy mode: the staged rollout skips.
    assert (
        tasks.plan_rollout(config(), seen(CLUSTER), NO_BUILDS, {IMAGE: DIGEST}, None, None)["nvd_env"] is None
    )


def test_a_compiled_nvidiadriver_without_permission_is_refused_before_any_change() -> None:
    compiled = json.loads(json.dumps(NVD_CLUSTER))
    compiled["nvidia_drivers"]["items"][0]["spec"] = {
        "driverType": "gpu",
        "usePrecompiled": False,
        "nodeSelector": {},
    }
    ti = XComRecorder()
    with pytest.raises(AirflowFailException) as err:
        tasks.plan_rollout(config(), seen(compiled), NO_BUILDS, {IMAGE: DIGEST}, None, None, ti=ti)
    assert "NVIDIADriver pool-a has usePrecompiled: false" in str(err.value)
    assert "allow_driver_restart" in str(err.value) and "nothing on the cluster was changed" in str(err.value)
    assert set(ti.pushed) == {"readiness", "readiness_env"}  # no stage handed on
    out = tasks.plan_rollout(
        config(allow_driver_restart=True), seen(compiled), NO_BUILDS, {IMAGE: DIGEST}, None, None
    )
    assert out["nvd_env"]["STAGES"] == "pool-a replace"
    with pytest.raises(AirflowFailException, match="canary_pool 'pool-z' is not an NVIDIADriver"):
        tasks.plan_rollout(
            config(canary_pool="pool-z"), seen(NVD_CLUSTER), NO_BUILDS, {IMAGE: DIGEST}, None, None
        )
