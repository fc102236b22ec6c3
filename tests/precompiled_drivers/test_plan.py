"""Planning: release targets, release images, DTK parsing, build planning and dedup by tag."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from precompiled_drivers import plan
from precompiled_drivers.config import RunConfig, Target, run_config
from precompiled_drivers.plan import BuildSpec, Toolkit
from precompiled_drivers.settings import Settings
from precompiled_drivers.validation import ValidationError

K418 = "5.14.0-427.50.1.el9_4.x86_64"
K419 = "5.14.0-570.12.1.el9_6.x86_64"
KARM = "5.14.0-570.12.1.el9_6.aarch64"
DTK = "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:" + "a" * 64
REPO = "quay.io/acme/nvidia"
STAGING = Settings().staging_repository


def config(**overrides: Any) -> RunConfig:
    params: dict[str, Any] = {
        "ocp_versions": ["4.18.12"],
        "arches": ["x86_64"],
        "driver_versions": ["570.158.01"],
        "cuda_version": "12.8.1",
        "repository": REPO,
        "driver_repo_ref": "main",
    }
    lookahead = overrides.pop("upgrade_lookahead", False)
    params.update(overrides)
    return run_config(params, Settings(), upgrade_lookahead=lookahead)


def toolkit(version: str, kernel: str = K418, rhel: str = "9.4", arch: str = "x86_64") -> Toolkit:
    return Toolkit(version, arch, DTK, kernel, kernel + "+rt", rhel)


# ----------------------------------------------------------------------------- release targets


def test_release_targets_from_form_only() -> None:
    targets = plan.release_targets(config(include_cluster_release=False), "4.18.12")
    assert targets == [Target("4.18.12", "x86_64", "form")]


def test_release_targets_add_cluster_and_upgrades_deduped_and_sorted() -> None:
    cfg = config(ocp_versions=["4.19.3", "4.18.12"], arches=["x86_64", "aarch64"], upgrade_lookahead=True)
    targets = plan.release_targets(cfg, "4.18.9", ["4.19.3", "4.19.0-rc.1", "4.18.12"])
    assert [(t.version, t.arch, t.source) for t in targets] == [
        ("4.18.9", "aarch64", "cluster"),
        ("4.18.9", "x86_64", "cluster"),
        ("4.18.12", "aarch64", "form"),  # the form wins over the same upgrade target
        ("4.18.12", "x86_64", "form"),
        ("4.19.0-rc.1", "aarch64", "upgrade"),
        ("4.19.0-rc.1", "x86_64", "upgrade"),
        ("4.19.3", "aarch64", "form"),
        ("4.19.3", "x86_64", "form"),
    ]


def test_release_targets_sort_numerically() -> None:
    cfg = config(ocp_versions=["4.18.10", "4.18.9", "4.9.1"], include_cluster_release=False)
    assert [t.version for t in plan.release_targets(cfg, "")] == ["4.9.1", "4.18.9", "4.18.10"]


def test_upgrades_ignored_without_lookahead() -> None:
    targets = plan.release_targets(config(), "4.18.12", ["4.19.3"])
    assert [t.key for t in targets] == [("4.18.12", "x86_64")]


def test_cluster_release_is_form_when_already_listed() -> None:
    targets = plan.release_targets(config(), "4.18.12")
    assert targets == [Target("4.18.12", "x86_64", "form")]


def test_cluster_version_unknown_is_skipped() -> None:
    targets = plan.release_targets(config(ocp_versions=[], upgrade_lookahead=True), "", ["4.19.3"])
    assert targets == [Target("4.19.3", "x86_64", "upgrade")]


def test_no_release_at_all_names_the_form_field() -> None:
    with pytest.raises(ValidationError) as err:
        plan.release_targets(config(ocp_versions=[], include_cluster_release=False), "4.18.12")
    assert err.value.field == "ocp_versions"


def test_release_image() -> None:
    assert (
        plan.release_image("quay.io/openshift-release-dev/ocp-release", Target("4.18.12", "aarch64"))
        == "quay.io/openshift-release-dev/ocp-release:4.18.12-aarch64"
    )


# ----------------------------------------------------------------------------- DTK parsing

REAL_DTK = {
    "KERNEL_VERSION": "5.14.0-427.50.1.el9_4.x86_64",
    "RT_KERNEL_VERSION": "5.14.0-427.50.1.el9_4.x86_64+rt",
    "RHEL_VERSION": "9.4",
}


def dtk_xcom(**toolkit_overrides: Any) -> dict[str, Any]:
    return {
        "version": "4.18.12",
        "arch": "x86_64",
        "dtk_image": DTK,
        "toolkit": {**REAL_DTK, **toolkit_overrides},
    }


def test_parse_toolkit_real_shape() -> None:
    assert plan.parse_toolkit(dtk_xcom()) == Toolkit(
        version="4.18.12",
        arch="x86_64",
        dtk_image=DTK,
        kernel="5.14.0-427.50.1.el9_4.x86_64",
        rt_kernel="5.14.0-427.50.1.el9_4.x86_64+rt",
        rhel_version="9.4",
    )


def test_parse_toolkit_without_rt_kernel() -> None:
    data = dtk_xcom()
    del data["toolkit"]["RT_KERNEL_VERSION"]
    assert plan.parse_toolkit(data).rt_kernel == ""


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({**dtk_xcom(), "toolkit": None}, "/etc/driver-toolkit-release.json"),
        ({**dtk_xcom(), "toolkit": "KERNEL_VERSION=5.14"}, "/etc/driver-toolkit-release.json"),
        ({**dtk_xcom(), "toolkit": [REAL_DTK]}, "/etc/driver-toolkit-release.json"),
        (dtk_xcom(KERNEL_VERSION="5.14.0-427.50.1.el9_4.x86_64; reboot"), "KERNEL_VERSION"),
        (dtk_xcom(KERNEL_VERSION="$(curl evil)"), "KERNEL_VERSION"),
        (dtk_xcom(KERNEL_VERSION="5.14.0-427.50.1.el9_4"), "KERNEL_VERSION"),  # no arch
        (dtk_xcom(KERNEL_VERSION=None), "KERNEL_VERSION"),
        (dtk_xcom(RHEL_VERSION=""), "RHEL_VERSION"),
        (dtk_xcom(RHEL_VERSION="9.4`id`"), "RHEL_VERSION"),
        (dtk_xcom(RHEL_VERSION="9..4"), "RHEL_VERSION"),
        (dtk_xcom(RHEL_VERSION="9"), "RHEL_VERSION"),
        (dtk_xcom(RHEL_VERSION="9.4.1"), "RHEL_VERSION"),
        (dtk_xcom(RHEL_VERSION="\u0669.4"), "RHEL_VERSION"),  # an Arabic-Indic digit
        (dtk_xcom(RT_KERNEL_VERSION="x\ny"), "RT_KERNEL_VERSION"),
        ({**dtk_xcom(), "version": "4.18"}, "version"),
        ({**dtk_xcom(), "arch": "ppc64le"}, "arch"),
        ({**dtk_xcom(), "dtk_image": "driver-toolkit"}, "dtk_image"),
        ({**dtk_xcom(), "dtk_image": "quay.io/x/dtk:1 --privileged"}, "dtk_image"),
    ],
)
def test_parse_toolkit_hostile(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        plan.parse_toolkit(data)
    assert err.value.field.startswith("driver toolkit of ")
    assert err.value.field.endswith(field)


# ----------------------------------------------------------------------------- build planning


def test_one_release_one_driver() -> None:
    [build] = plan.plan_builds(config(), [toolkit("4.18.12")], "v26.7.0")
    tag = f"570.158.01-{K418}-rhcos4.18"
    assert build == BuildSpec(
        driver_version="570.158.01",
        kernel=K418,
        rhel_version="9.4",
        os_tag="rhcos4.18",
        os_tag_rule="ID+major VERSION_ID for rhel/rocky/ol (operator >= v26.7)",
        build_arch="x86_64",
        build_dir="rhel9/precompiled",
        tag=tag,
        image=f"{REPO}/driver:{tag}",
        staging_image=f"{STAGING}/driver:{tag}",
        dtk_image=DTK,
        releases=("4.18.12",),
        warning="",
        kernel_module_type="open",  # kernelModuleType auto (CRD default) on the 570 branch
        aliases=(),
    )


def test_releases_sharing_a_kernel_share_one_image() -> None:
    builds = plan.plan_builds(config(), [toolkit("4.18.13"), toolkit("4.18.12")], "v26.7.0")
    assert len(builds) == 1
    assert builds[0].releases == ("4.18.12", "4.18.13")


def test_two_releases_times_two_drivers_give_four_builds() -> None:
    cfg = config(driver_versions=["580.65.06", "570.158.01"])
    builds = plan.plan_builds(cfg, [toolkit("4.18.12"), toolkit("4.19.3", K419, "9.6")], "v26.7.0")
    assert [b.tag for b in builds] == [
        f"570.158.01-{K418}-rhcos4.18",
        f"580.65.06-{K418}-rhcos4.18",
        f"570.158.01-{K419}-rhel9",
        f"580.65.06-{K419}-rhel9",
    ]
    assert len({b.image for b in builds}) == 4


@pytest.mark.parametrize(
    ("release", "kernel", "rhel", "operator", "os_tag"),
    [
        ("4.18.12", K418, "9.4", "v26.7.0", "rhcos4.18"),
        ("4.18.12", K418, "9.4", "v25.10.1", "rhcos4.18"),
        ("4.19.3", K419, "9.6", "v25.10.1", "rhel9.6"),
        ("4.19.3", K419, "9.6", "v26.3.0", "rhel9.6"),
        ("4.19.3", K419, "9.6", "v26.7.0", "rhel9"),
        ("4.19.3", K419, "9.6", "26.7.1", "rhel9"),
    ],
)
def test_os_tag_by_release_and_operator(
    release: str, kernel: str, rhel: str, operator: str, os_tag: str
) -> None:
    [build] = plan.plan_builds(config(), [toolkit(release, kernel, rhel)], operator)
    assert build.os_tag == os_tag
    assert build.tag == f"570.158.01-{kernel}-{os_tag}"
    assert build.image.endswith(f":570.158.01-{kernel}-{os_tag}")


def test_same_kernel_different_os_tag_is_one_build_published_under_both() -> None:
    # An upgrade from 4.18 to 4.19 on the same kernel changes what the nodes report (rhcos -> rhel);
    # OS_TAG changes only the tag (and a label) in NVIDIA's recipe, so the image is copied, not rebuilt.
    [build] = plan.plan_builds(config(), [toolkit("4.18.12"), toolkit("4.19.0", K418, "9.4")], "v26.7.0")
    assert build.os_tag == "rhcos4.18"
    assert build.releases == ("4.18.12", "4.19.0")
    assert build.aliases == (f"{REPO}/driver:570.158.01-{K418}-rhel9",)


def test_every_image_is_published_under_every_os_tag_of_the_cluster_and_the_plan() -> None:
    # The cluster's GPU nodes report rhcos4.18 and rhel9 now (mid-upgrade); the operator picks one of
    # them for all kernels, so 4.19's kernel needs the rhcos4.18 tag too, and 4.18's kernel the rhel9 tag.
    builds = plan.plan_builds(
        config(),
        [toolkit("4.18.12"), toolkit("4.19.3", K419, "9.6")],
        "v26.7.0",
        cluster_os_tags=["rhcos4.18", "rhel9"],
    )
    assert {b.image: b.aliases for b in builds} == {
        f"{REPO}/driver:570.158.01-{K418}-rhcos4.18": (f"{REPO}/driver:570.158.01-{K418}-rhel9",),
        f"{REPO}/driver:570.158.01-{K419}-rhel9": (f"{REPO}/driver:570.158.01-{K419}-rhcos4.18",),
    }
    assert plan.alias_lines(builds).splitlines() == [
        f"{b.image} {alias}" for b in builds for alias in b.aliases
    ]


def test_single_os_tag_cluster_needs_no_alias() -> None:
    [build] = plan.plan_builds(config(), [toolkit("4.18.12")], "v26.7.0", cluster_os_tags=["rhcos4.18"])
    assert build.aliases == ()
    assert plan.alias_lines([build]) == ""


@pytest.mark.parametrize(
    ("requested", "driver", "module_type"),
    [
        ("auto", "550.163.01", "proprietary"),
        ("auto", "560.35.03", "open"),
        ("auto", "570.158.01", "open"),
        ("open", "535.247.01", "open"),
        ("proprietary", "580.65.06", "proprietary"),
    ],
)
def test_kernel_module_type_per_driver(requested: str, driver: str, module_type: str) -> None:
    [build] = plan.plan_builds(
        config(driver_versions=[driver]), [toolkit("4.18.12")], "v26.7.0", kernel_module_type=requested
    )
    assert build.kernel_module_type == module_type


def test_build_spec_round_trips_through_xcom() -> None:
    import json

    [build] = plan.plan_builds(config(), [toolkit("4.18.12"), toolkit("4.19.0", K418, "9.4")], "v26.7.0")
    assert plan.BuildSpec.from_dict(json.loads(json.dumps(build.to_dict()))) == build


def test_aarch64_build() -> None:
    cfg = config(arches=["aarch64"])
    [build] = plan.plan_builds(cfg, [toolkit("4.19.3", KARM, "9.6", arch="aarch64")], "v26.7.0")
    assert build.build_arch == "aarch64"
    assert build.tag == f"570.158.01-{KARM}-rhel9"


def test_kernel_of_another_arch_is_refused() -> None:
    with pytest.raises(ValueError, match="aarch64"):
        plan.plan_builds(config(), [toolkit("4.19.3", KARM, "9.6", arch="x86_64")], "v26.7.0")


def test_build_spec_round_trips_as_dict() -> None:
    [build] = plan.plan_builds(config(), [toolkit("4.18.12")], "v26.7.0")
    data = build.to_dict()
    assert BuildSpec(**{**data, "releases": tuple(data["releases"])}) == build


# ----------------------------------------------------------------------------- what to build


def builds() -> list[BuildSpec]:
    cfg = config(driver_versions=["570.158.01", "580.65.06"])
    return plan.plan_builds(cfg, [toolkit("4.18.12")], "v26.7.0")


def test_builds_to_run_skips_published() -> None:
    first, second = builds()
    published = {first.image: "sha256:" + "e" * 64, second.image: ""}
    assert plan.builds_to_run([first, second], published, force=False) == [second]


def test_builds_to_run_forced_rebuilds_all() -> None:
    all_builds = builds()
    published = {b.image: "sha256:" + "e" * 64 for b in all_builds}
    assert plan.builds_to_run(all_builds, published, force=True) == all_builds
    assert plan.builds_to_run(all_builds, published, force=False) == []


def test_builds_to_run_unknown_image_is_built() -> None:
    assert plan.builds_to_run(builds(), {}, force=False) == builds()


def test_with_release_keeps_everything_else() -> None:
    [build] = plan.plan_builds(config(), [toolkit("4.18.12")], "v26.7.0")
    merged = plan._with_release(build, "4.18.3")
    assert merged.releases == ("4.18.3", "4.18.12")
    assert dataclasses.replace(merged, releases=build.releases) == build
