"""The approval request (gate, ClusterPolicy diff, kernel -> image table); the report on the answer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from precompiled_drivers import approval
from precompiled_drivers.report import render_report

K418 = "5.14.0-427.50.1.el9_4.x86_64"
K419 = "5.14.0-570.12.1.el9_6.x86_64"
REPO = "quay.io/acme/nvidia"
IMG418 = f"{REPO}/driver:570.158.01-{K418}-rhcos4.18"
IMG419 = f"{REPO}/driver:570.158.01-{K419}-rhcos4.18"
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
PREVIOUS = {"enabled": True, "version": "550.163.01"}
PATCH = [
    {"op": "test", "path": "/spec/driver", "value": PREVIOUS},
    {"op": "add", "path": "/spec/driver/usePrecompiled", "value": True},
    {"op": "replace", "path": "/spec/driver/version", "value": "570.158.01"},
]
SUMMARY = (
    "spec.driver.version: '550.163.01' -> '570.158.01'\n"
    "spec.driver.usePrecompiled: <unset> -> true\n"
    "guard: spec.driver must still equal the value read before"
)


def plan() -> dict[str, Any]:
    """plan_rollout's ``plan`` XCom (RolloutPlan.to_dict()) for two kernels on three nodes."""
    return {
        "kernels": [
            {
                "kernel": K418,
                "daemonset": "nvidia-driver-daemonset-5.14.0-427.50.1.el9.4-rhcos4.18",
                "images": {"rhcos4.18": IMG418},
                "digests": {IMG418: D1},
                "nodes": ["gpu-1", "gpu-2"],
            },
            {
                "kernel": K419,
                "daemonset": "nvidia-driver-daemonset-5.14.0-570.12.1.el9.6-rhcos4.18",
                "images": {"rhcos4.18": IMG419},
                "digests": {IMG419: D2},
                "nodes": ["gpu-3"],
            },
        ],
        "os_tags": {"rhcos4.18": ["gpu-1", "gpu-2", "gpu-3"]},
        "os_tag_note": "the cluster reports ONE OS tag, rhcos4.18",
        "previous_driver": PREVIOUS,
        "patch": PATCH,
        "rollback": [],
        "summary": SUMMARY,
    }


CONFIG = {"rollout_driver_version": "570.158.01", "settings": {"policy_name": "gpu-cluster-policy"}}


@pytest.mark.parametrize(
    ("seconds", "text"), [(10, "10s"), (90, "1m 30s"), (3600, "1h"), (86_400, "24h"), (3661, "1h 1m 1s")]
)
def test_durations_read_as_people_say_them(seconds: int, text: str) -> None:
    assert approval.duration(seconds) == text


def test_subject_names_the_driver_the_kernels_and_the_policy() -> None:
    assert approval.request_subject(CONFIG, plan()) == (
        "Roll out NVIDIA driver 570.158.01 (precompiled) to 2 GPU-node kernels via gpu-cluster-policy?"
    )
    one = {**plan(), "kernels": plan()["kernels"][:1]}
    assert "to 1 GPU-node kernel via" in approval.request_subject(CONFIG, one)


def test_body_shows_the_gate_the_diff_the_json_patch_and_the_kernel_image_table() -> None:
    body = approval.request_body(CONFIG, plan(), 3600)
    assert (
        "**Coverage gate**: passed: every GPU-node kernel (2, on 3 nodes) has a published image under "
        "every OS tag the operator may use (2 images)." in body
    )
    assert "the cluster reports ONE OS tag, rhcos4.18." in body
    assert "#### ClusterPolicy `gpu-cluster-policy`: spec.driver before -> after" in body
    assert f"```\n{SUMMARY}\n```" in body
    # The JSON patch, as sent, guard included.
    patch_block = body.split("```json\n", 1)[1].split("\n```", 1)[0]
    assert json.loads(patch_block) == PATCH
    assert "| kernel | GPU nodes | OS tag | image | digest |" in body
    assert f"| {K418} | gpu-1, gpu-2 | rhcos4.18 | {IMG418} | {D1} |" in body
    assert f"| {K419} | gpu-3 | rhcos4.18 | {IMG419} | {D2} |" in body
    assert "no answer within 1h: the ClusterPolicy was not patched; the images stay published." in body
    assert "Dry run" not in body


def test_a_dry_run_request_says_the_patch_is_only_printed() -> None:
    body = approval.request_body({**CONFIG, "dry_run": True}, plan(), 60)
    assert "*Dry run*: on approval the patch is printed, not applied." in body


def test_a_pipe_in_a_value_does_not_break_the_table() -> None:
    odd = plan()
    odd["kernels"][0]["nodes"] = ["a|b"]
    assert "| a\\|b |" in approval.request_body(CONFIG, odd, 60)


def test_the_answer_becomes_the_steps_result() -> None:
    user = {"id": "admin", "name": "admin"}
    assert approval.result(["Approve"], user, "2026-01-01T10:00:00+00:00") == {
        "decision": "approved",
        "by": "admin",
        "at": "2026-01-01T10:00:00+00:00",
    }
    assert approval.result(["Reject"], {"id": "7"}, None)["by"] == "7"
    assert approval.result(["Reject"], None, None)["by"] == "unknown user"


def test_outcome_lines() -> None:
    approved = {"decision": "approved", "by": "alice", "at": "2026-01-01T10:00:00+00:00"}
    rejected = {"decision": "rejected", "by": "bob", "at": "2026-01-01T10:00:00+00:00"}
    assert approval.outcome(approved, "success") == "Rollout approved by alice at 2026-01-01T10:00:00+00:00."
    assert approval.outcome(rejected, "success") == (
        "Rollout not approved: rejected by bob; the ClusterPolicy was not patched; the images stay published."
    )
    assert approval.outcome({"decision": "not required"}, "success") is None
    assert approval.outcome(None, "skipped") is None
    timed_out = approval.timed_out(600)
    assert timed_out == (
        "approval timed out after 10m: nobody approved or rejected the rollout; "
        "the ClusterPolicy was not patched; the images stay published"
    )
    assert approval.outcome(None, "failed", timed_out) == f"Rollout not approved: {timed_out}."
    assert approval.outcome(None, "failed") == (
        "Rollout not approved: approve_rollout failed; the ClusterPolicy was not patched; "
        "the images stay published."
    )


def _states(**overrides: str) -> dict[str, str]:
    states = dict.fromkeys(
        ["validate_inputs", "inspect_cluster", "plan_rollout", "approve_rollout", "report"], "success"
    )
    states.update(overrides)
    return states


def test_report_of_a_rejected_rollout_starts_with_who_rejected_it() -> None:
    results = {
        "plan_rollout": {"plan": plan()},
        "approve_rollout": {"decision": "rejected", "by": "bob", "at": "2026-01-01T10:00:00+00:00"},
    }
    states = _states(
        patch_cluster_policy="skipped", verify_rollout="skipped", rollback_cluster_policy="skipped"
    )
    text = render_report(results, states)
    lines = text.splitlines()
    assert lines[0] == (
        "Rollout not approved: rejected by bob; the ClusterPolicy was not patched; the images stay published."
    )
    assert "ClusterPolicy patch (NOT applied: the rollout was not approved):" in text


def test_report_of_a_timed_out_approval_fails_at_the_approval() -> None:
    reason = approval.timed_out(30)
    results = {"plan_rollout": {"plan": plan()}}
    states = _states(approve_rollout="failed", patch_cluster_policy="upstream_failed")
    failures = {"approve_rollout": {"reason": reason, "item": None, "map_index": -1}}
    text = render_report(results, states, failures)
    assert text.splitlines()[0] == f"Run FAILED at approve_rollout: {reason}"
    assert f"Rollout not approved: {reason}." in text
    assert "patch_cluster_policy" in text and "not run because of approve_rollout" in text


def test_report_of_an_approved_rollout_says_who_approved() -> None:
    results = {
        "plan_rollout": {"plan": plan()},
        "approve_rollout": {"decision": "approved", "by": "alice", "at": "2026-01-01T10:00:00+00:00"},
        "patch_cluster_policy": {"patched": True, "patched_at": "2026-01-01T10:00:05Z"},
    }
    text = render_report(results, _states(patch_cluster_policy="success"))
    assert text.splitlines()[0] == "NVIDIA precompiled driver pipeline: report"
    assert "Rollout approved by alice at 2026-01-01T10:00:00+00:00." in text
    assert "ClusterPolicy patch (applied):" in text


def test_an_nvidiadriver_mode_request_shows_the_stages_not_a_clusterpolicy_patch() -> None:
    plan = {
        "mode": "NVIDIADriver",
        "kernels": [],
        "mode_note": "NVIDIADriver mode (GPUCluster g)",
        "pools": ["NVIDIADriver a (precompiled), pool rhel9 (nodes n1)"],
        "stages": [{"driver": "a"}, {"driver": "b"}],
        "stage_lines": ["canary: patch NVIDIADriver a", "stage 2: replace NVIDIADriver b"],
        "commands": ["kubectl patch nvidiadriver a --type=json -p '[]'"],
    }
    config = {"rollout_driver_version": "570.158.01"}
    assert approval.request_subject(config, plan) == (
        "Roll out NVIDIA driver 570.158.01 (precompiled) to NVIDIADriver a, b, one at a time?"
    )
    body = approval.request_body(config, plan, 3600)
    assert "1. canary: patch NVIDIADriver a" in body and "1. stage 2: replace NVIDIADriver b" in body
    assert "ClusterPolicy" not in body
