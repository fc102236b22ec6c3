"""The run report: every step with its state, releases, images and their outcome, the kernel table."""

from __future__ import annotations

from typing import Any

import pytest

from precompiled_drivers.report import (
    STEPS,
    build_lines,
    kernel_rows,
    render_report,
    rollback_outcome,
    step_state,
)

K418 = "5.14.0-427.50.1.el9_4.x86_64"
K419 = "5.14.0-570.12.1.el9_6.x86_64"
REPO = "quay.io/acme/nvidia"
IMG418 = f"{REPO}/driver:570.158.01-{K418}-rhcos4.18"
IMG419 = f"{REPO}/driver:570.158.01-{K419}-rhel9"
IMG_OLD = f"{REPO}/driver:550.163.01-{K418}-rhcos4.18"
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
RULE = "ID+major VERSION_ID for rhel/rocky/ol (operator >= v26.7)"


def kernel(k: str, image: str, digest: str, daemonset: str) -> dict[str, Any]:
    """A kernel of the rollout plan whose cluster reports two OS tags (one image each, same digest)."""
    other = (
        image.replace("-rhcos4.18", "-rhel9")
        if image.endswith("rhcos4.18")
        else image.replace("-rhel9", "-rhcos4.18")
    )
    images = {image.rsplit("-", 1)[1]: image, other.rsplit("-", 1)[1]: other}
    return {
        "kernel": k,
        "images": images,
        "digests": {ref: digest for ref in images.values()},
        "daemonset": daemonset,
        "nodes": ["n"],
    }


def results() -> dict[str, Any]:
    return {
        "resolve_driver_toolkit": [
            {"version": "4.18.12", "arch": "x86_64", "dtk_image": "quay.io/dtk@sha256:" + "a" * 64},
            {"version": "4.19.3", "arch": "x86_64", "dtk_image": "quay.io/dtk@sha256:" + "b" * 64},
        ],
        "plan_builds": {
            "candidates": [
                {"image": IMG418, "os_tag_rule": RULE, "kernel_module_type": "open"},
                {"image": IMG419, "os_tag_rule": RULE, "kernel_module_type": "open"},
                {"image": IMG_OLD, "os_tag_rule": RULE, "kernel_module_type": "proprietary"},
            ]
        },
        "check_published_images": {IMG418: D1, IMG419: "", IMG_OLD: ""},
        # One mapped push comes back as a single dict from xcom_pull.
        "push_driver_image": {"image": IMG419, "digest": D2, "staging_image": "staging/x"},
        "plan_rollout": {
            "plan": {
                "kernels": [
                    kernel(K418, IMG418, D1, "nvidia-driver-daemonset-5.14.0-427.50.1.el9.4-rhcos4.18"),
                    kernel(K419, IMG419, D2, "nvidia-driver-daemonset-5.14.0-570.12.1.el9.6-rhel9.6"),
                ],
                "summary": "spec.driver.usePrecompiled: <unset> -> true",
                "upgrade_note": "spec.driver.upgradePolicy: autoUpgrade on, 1 node(s) at a time",
            }
        },
        "patch_cluster_policy": {"patched": True, "patched_at": "2025-01-31T12:00:00Z"},
        "verify_rollout": {
            "verified": False,
            "kernels": {
                K418: {"status": "ok", "image": IMG418},
                K419: {"status": "waiting"},
            },
        },
    }


def test_every_step_is_listed_with_its_state() -> None:
    text = render_report({}, {"inspect_cluster": "success", "build_driver_image": "failed"})
    lines = text.splitlines()
    for step in STEPS:
        [line] = [x for x in lines if x.split() and x.split()[0] == step]
        expected = {"inspect_cluster": "success", "build_driver_image": "failed"}.get(step, "-")
        assert line.split()[1] == expected


def test_empty_results_render_only_the_step_table() -> None:
    text = render_report({}, {})
    assert "Releases:" not in text
    assert "ClusterPolicy patch" not in text
    assert "kernel" not in text


def test_releases_and_images_with_outcomes() -> None:
    text = render_report(results(), {step: "success" for step in STEPS})
    assert "  4.18.12-x86_64: driver toolkit quay.io/dtk@sha256:" + "a" * 64 in text
    assert "  4.19.3-x86_64: driver toolkit" in text
    [row418] = [line for line in text.splitlines() if line.startswith(IMG418)]
    assert "exists, skipped" in row418
    assert D1[:19] in row418
    [row419] = [line for line in text.splitlines() if line.startswith(IMG419)]
    assert "built+pushed" in row419
    assert D2[:19] in row419
    [row_old] = [line for line in text.splitlines() if line.startswith(IMG_OLD)]
    assert "not built" in row_old
    assert "open" in row419
    assert "proprietary" in row_old


def test_a_fleet_clusters_report_leaves_the_shared_builds_to_the_fleets_report() -> None:
    states = {step: "success" for step in STEPS}
    whole = render_report(results(), states)
    own = render_report(results(), states, builds=False)
    shared = "\n".join(build_lines(results()))
    assert "Releases:" not in own and IMG419 not in own.split("ClusterPolicy patch")[0]
    assert shared.strip() and shared.strip() in whole
    assert own.splitlines()[:5] == whole.splitlines()[:5]  # headline and step table unchanged


def test_patch_section() -> None:
    text = render_report(results(), {})
    assert "ClusterPolicy patch (applied):" in text
    assert "spec.driver.usePrecompiled: <unset> -> true" in text
    dry = results() | {"patch_cluster_policy": {"patched": False}}
    assert "ClusterPolicy patch (NOT applied: dry run):" in render_report(
        dry, {"patch_cluster_policy": "success"}
    )
    refused = render_report(dry, {"patch_cluster_policy": "failed"})
    assert "ClusterPolicy patch (NOT applied: refused, nothing changed):" in refused
    assert "ClusterPolicy patch (NOT applied: the step did not run):" in render_report(
        results() | {"patch_cluster_policy": None}, {"patch_cluster_policy": "upstream_failed"}
    )


def test_upgrade_policy_in_effect_is_reported() -> None:
    assert "\nspec.driver.upgradePolicy: autoUpgrade on, 1 node(s) at a time.\n" in render_report(
        results(), {}
    )


def test_a_no_op_patch_says_so() -> None:
    same = results() | {"patch_cluster_policy": {"patched": True, "patched_at": "1970-01-01T00:00:00Z"}}
    text = render_report(same, {"patch_cluster_policy": "success"})
    assert "ClusterPolicy patch (already in place, nothing changed):" in text
    assert "(applied)" not in text


def test_rollback_is_announced_only_when_it_ran() -> None:
    rolled = results() | {"rollback_cluster_policy": {"rolled_back": True}}
    assert "ROLLED BACK" in render_report(rolled, {"rollback_cluster_policy": "success"})
    assert "ROLLED BACK" not in render_report(results(), {"rollback_cluster_policy": "skipped"})
    noop = results() | {"rollback_cluster_policy": {"rolled_back": False}}
    assert "nothing to restore" in render_report(noop, {"rollback_cluster_policy": "success"})


def test_a_refused_patch_has_nothing_to_restore() -> None:
    refused = results() | {"patch_cluster_policy": {"patched": False, "patched_at": None}}
    states = {"patch_cluster_policy": "failed", "rollback_cluster_policy": "skipped"}
    text = render_report(refused, states)
    assert "Rollback: nothing to restore (the patch changed nothing)." in text
    assert "ROLLED BACK" not in text and "ROLLBACK FAILED" not in text


# ----------------------------------------------------------------------------- failed runs

FAILURES = {
    "build_driver_image": [
        {"reason": "make: *** [Makefile:80: image] Error 1", "item": IMG419, "map_index": 1},
    ],
    "plan_rollout": {"reason": "no image for kernel 5.14.0-570\nsecond line", "item": None, "map_index": -1},
}
FAILED_STATES = {
    "validate_inputs": "success",
    "build_driver_image": "failed",
    "push_driver_image": "success",
    "plan_rollout": "failed",
    "patch_cluster_policy": "upstream_failed",
    "verify_rollout": "upstream_failed",
    "needs_rollback": "success",
    "rollback_cluster_policy": "skipped",
}


def test_a_failed_run_starts_with_the_first_failure_and_its_reason() -> None:
    data = results() | {"push_driver_image": None}
    text = render_report(data, FAILED_STATES, FAILURES)
    first = text.splitlines()[0]
    assert first == f"Run FAILED at build_driver_image ({IMG419}): make: *** [Makefile:80: image] Error 1"
    assert "Failures (first one first):" in text
    failures = text.split("Failures (first one first):\n", 1)[1].splitlines()
    assert failures[0] == f"  build_driver_image [{IMG419}]: make: *** [Makefile:80: image] Error 1"
    assert failures[1] == "  plan_rollout: no image for kernel 5.14.0-570"
    [row419] = [line for line in text.splitlines() if line.startswith(IMG419)]
    assert "build FAILED" in row419


def test_steps_read_failed_not_run_because_of_or_skipped() -> None:
    upstream = {
        "patch_cluster_policy": ["build_driver_image", "plan_rollout"],
        "verify_rollout": ["plan_rollout"],
    }
    text = render_report({}, FAILED_STATES, FAILURES, upstream)
    table = text.split("-----\n", 1)[1].split("\n\n", 1)[0].splitlines()
    rows = dict(line.split(None, 1) for line in table)
    assert rows["build_driver_image"].strip() == "failed"
    # The first failure among its own ancestors, in procedure order.
    assert rows["patch_cluster_policy"].strip() == "not run because of build_driver_image"
    assert rows["verify_rollout"].strip() == "not run because of plan_rollout"
    assert rows["rollback_cluster_policy"].strip() == "skipped"
    assert rows["inspect_cluster"].strip() == "-"
    # Procedure order, not alphabetical.
    assert list(rows) == list(STEPS)


def test_step_state_without_ancestry_takes_an_earlier_failure() -> None:
    assert step_state("verify_rollout", FAILED_STATES, None) == "not run because of build_driver_image"


def test_a_failed_step_without_a_record_says_where_to_look() -> None:
    text = render_report({}, {"inspect_cluster": "failed"})
    assert text.splitlines()[0] == (
        "Run FAILED at inspect_cluster: no reason recorded (see the step's task log)"
    )


def test_a_run_with_no_new_release_says_nothing_to_do() -> None:
    states = {"validate_inputs": "success"} | {s: "skipped" for s in STEPS[1:]}
    text = render_report({"validate_inputs": None}, states)
    assert text.splitlines()[0].startswith("Nothing to do: no new release")


def test_kernel_table() -> None:
    # The OS tag in use is the one of the image the new pods run (the operator picks one per cluster).
    assert kernel_rows(results()) == [
        (K418, "rhcos4.18", "rhcos4.18,rhel9", D1, "yes"),
        (K419, "-", "rhcos4.18,rhel9", D2, "NO"),
    ]
    text = render_report(results(), {})
    header = [line for line in text.splitlines() if line.startswith("kernel ")]
    assert header and "driver pods Ready" in header[0]
    assert any(line.startswith(K419) and line.rstrip().endswith("NO") for line in text.splitlines())


def test_kernel_table_before_verification() -> None:
    data = results()
    del data["verify_rollout"]
    assert [row[4] for row in kernel_rows(data)] == ["-", "-"]


def test_kernel_rows_do_not_confuse_similar_kernels() -> None:
    data = results()
    data["verify_rollout"]["kernels"] = {"5.14.0-427.50.1.el9": {"status": "ok"}}
    # A kernel whose name is a prefix of another's as text is another kernel.
    assert kernel_rows(data)[0][4] == "-"


def test_mapped_results_as_lists_and_empty_items() -> None:
    data = results()
    data["push_driver_image"] = [None, {"image": IMG419, "digest": D2}]
    text = render_report(data, {})
    [row419] = [line for line in text.splitlines() if line.startswith(IMG419)]
    assert "built+pushed" in row419


def test_a_multi_line_reason_is_shown_whole_under_failures() -> None:
    reason = "not patching the ClusterPolicy: precompiled drivers cannot serve this cluster as it is\n  - RT"
    failures = {"plan_rollout": [{"reason": reason, "item": None, "map_index": -1}]}
    text = render_report({}, {"plan_rollout": "failed"}, failures)
    lines = text.splitlines()
    assert lines[0] == f"Run FAILED at plan_rollout: {reason.splitlines()[0]}"
    assert "      - RT" in lines


def test_upgrade_readiness_is_listed_with_where_it_is_recorded() -> None:
    from precompiled_drivers import readiness

    doc = readiness.summary(
        [
            readiness.ReleaseReadiness("4.18.14", "x86_64", "upgrade target", True, ("a", "b"), ()),
            readiness.ReleaseReadiness("4.19.3", "x86_64", "upgrade target", False, ("c",), ("c",)),
        ],
        "570.158.01",
    )
    results = {"readiness": doc, "record_readiness": {"configmap": "ns/precompiled-drivers-readiness"}}
    text = render_report(results, {"plan_rollout": "success", "record_readiness": "success"})
    assert text.split("Upgrade readiness (driver 570.158.01):\n", 1)[1].splitlines() == [
        "  4.18.14-x86_64 (upgrade target): ready (2 image(s) in the registry)",
        "  4.19.3-x86_64 (upgrade target): NOT ready: missing c",
        "  recorded in ConfigMap ns/precompiled-drivers-readiness",
    ]
    assert "not recorded (see record_readiness)" in render_report({"readiness": doc}, {})
    assert "Upgrade readiness" not in render_report({}, {})


def test_gpu_check_table_names_node_and_output_per_kernel() -> None:
    data = results()
    data["check_gpu_workload"] = {
        "checked": True,
        "image": "nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-ubi8",
        "kernels": {
            "5.14.0-427.50.1.el9_4.x86_64": {
                "status": "ok",
                "node": "gpu-0",
                "pod": "gpu-check-x",
                "output": "Test PASSED",
            },
            "5.14.0-570.12.1.el9_6.x86_64": {
                "status": "ok",
                "node": "gpu-2",
                "pod": "gpu-check-y",
                "output": "Test PASSED",
            },
        },
    }
    lines = render_report(data, {"check_gpu_workload": "success"}).splitlines()
    start = lines.index("GPU workload check (nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-ubi8):")
    assert lines[start + 1].split() == ["kernel", "node", "result", "output"]
    assert lines[start + 3].split() == ["5.14.0-427.50.1.el9_4.x86_64", "gpu-0", "ok", "Test", "PASSED"]
    assert lines[start + 4].split() == ["5.14.0-570.12.1.el9_6.x86_64", "gpu-2", "ok", "Test", "PASSED"]


def test_a_failed_gpu_check_says_why_and_a_skipped_one_says_so() -> None:
    reason = "ERROR: GPU workload check failed on kernel k (node gpu-2, pod p): failed: Failed to allocate"
    failures = {"check_gpu_workload": {"reason": reason, "map_index": -1}}
    text = render_report({}, {"check_gpu_workload": "failed"}, failures)
    assert f"GPU workload check FAILED: {reason}" in text.splitlines()
    text = render_report({}, {"verify_rollout": "success", "check_gpu_workload": "skipped"})
    assert "GPU workload check: not run (turned off by PRECOMPILED_DRIVERS_GPU_CHECK, or a dry run)." in text
    # Nothing to say when the rollout never got that far.
    text = render_report({}, {"verify_rollout": "upstream_failed", "check_gpu_workload": "upstream_failed"})
    assert "GPU workload check" not in text


@pytest.mark.parametrize(
    ("patch_state", "line"),
    [
        ("upstream_failed", "Rollback: not needed, the ClusterPolicy was not patched."),
        (None, "Rollback: not needed, the ClusterPolicy was not patched."),
        ("success", "Rollback: NOT run; check the ClusterPolicy by hand."),
        ("failed", "Rollback: NOT run; check the ClusterPolicy by hand."),
    ],
)
def test_a_rollback_that_could_not_run_alarms_only_when_the_patch_ran(
    patch_state: str | None, line: str
) -> None:
    states = {"rollback_cluster_policy": "upstream_failed"}
    if patch_state:
        states["patch_cluster_policy"] = patch_state
    assert rollback_outcome({}, states) == line


def nvd_plan() -> dict[str, Any]:
    return {
        "mode": "NVIDIADriver",
        "kernels": [],
        "mode_note": "NVIDIADriver mode (GPUCluster g): drivers come from NVIDIADriver resources (a, b)",
        "pools": ["NVIDIADriver a (precompiled), pool rhel9 (nodes n1): DaemonSet d pulls x"],
        "stages": [{"driver": "a", "action": "patch"}, {"driver": "b", "action": "replace"}],
        "stage_lines": ["canary: patch NVIDIADriver a", "stage 2: replace NVIDIADriver b"],
        "commands": [],
    }


def test_nvidiadriver_stages_say_which_stayed_and_which_was_restored() -> None:
    result = {
        "verified": False,
        "dry_run": False,
        "stages": [
            {"driver": "a", "action": "patch", "outcome": "verified", "reason": "ok"},
            {"driver": "b", "action": "replace", "outcome": "restored", "reason": "not verified within 15s"},
        ],
    }
    states = dict.fromkeys(STEPS, "success") | {"roll_out_nvidia_drivers": "failed"}
    text = render_report({"plan_rollout": {"plan": nvd_plan()}, "roll_out_nvidia_drivers": result}, states)
    assert "NVIDIADriver rollout (FAILED: see the stages): NVIDIADriver mode (GPUCluster g)" in text
    assert "ClusterPolicy patch" not in text
    rows = [line.split() for line in text.splitlines() if line.startswith("  1 ") or line.startswith("  2 ")]
    assert rows[0][:4] == ["1", "a", "patch", "verified"]
    assert rows[1][:4] == ["2", "b", "replace", "FAILED,"]
    assert "not verified within 15s" in text
    assert (
        "The rollout stopped at NVIDIADriver b; later stages were not started. "
        "Stages already verified stay on the new driver: a." in text
    )


def test_nvidiadriver_rollout_verified_or_not_run() -> None:
    done = {
        "verified": True,
        "dry_run": False,
        "stages": [{"driver": "a", "outcome": "verified"}, {"driver": "b", "outcome": "verified"}],
    }
    states = dict.fromkeys(STEPS, "success")
    text = render_report({"plan_rollout": {"plan": nvd_plan()}, "roll_out_nvidia_drivers": done}, states)
    assert "NVIDIADriver rollout (every stage verified)" in text and "stopped" not in text
    text = render_report(
        {"plan_rollout": {"plan": nvd_plan()}}, states | {"roll_out_nvidia_drivers": "skipped"}
    )
    assert "NVIDIADriver rollout (NOT applied: the step did not run)" in text
