"""The run report: every step with its state, releases, images and their outcome, the kernel table."""

from __future__ import annotations

from typing import Any

from precompiled_drivers.report import STEPS, kernel_rows, render_report

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
            }
        },
        "patch_cluster_policy": {"patched": True, "patched_at": "2025-01-31T12:00:00Z"},
        "verify_rollout": {
            "verified": False,
            "kernels": {
                "5.14.0-427.50.1.el9.4": {"status": "ok", "image": IMG418},
                "5.14.0-570.12.1.el9.6": {"status": "waiting"},
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


def test_patch_section() -> None:
    text = render_report(results(), {})
    assert "ClusterPolicy patch (applied):" in text
    assert "spec.driver.usePrecompiled: <unset> -> true" in text
    dry = results() | {"patch_cluster_policy": {"patched": False}}
    assert "ClusterPolicy patch (NOT applied (dry run or failed)):" in render_report(dry, {})


def test_rollback_is_announced_only_when_it_ran() -> None:
    assert "ROLLED BACK" in render_report(results(), {"rollback_cluster_policy": "success"})
    assert "ROLLED BACK" not in render_report(results(), {"rollback_cluster_policy": "skipped"})


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
    # 'el9' is a prefix of 'el9.4' as text but names another DaemonSet.
    assert kernel_rows(data)[0][4] == "-"


def test_mapped_results_as_lists_and_empty_items() -> None:
    data = results()
    data["push_driver_image"] = [None, {"image": IMG419, "digest": D2}]
    text = render_report(data, {})
    [row419] = [line for line in text.splitlines() if line.startswith(IMG419)]
    assert "built+pushed" in row419
