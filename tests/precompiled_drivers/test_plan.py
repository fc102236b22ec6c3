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
    params.update(overrides)
    return run_config(params, Settings())


SETTINGS = Settings()


def parse_toolkit(xcom: Any) -> Toolkit:
    """The release's first toolkit (driver-toolkit), as plan.release_toolkits reads it."""
    return plan.release_toolkits(xcom)[0]


def toolkit(version: str, kernel: str = K418, rhel: str = "9.4", arch: str = "x86_64") -> Toolkit:
    return Toolkit(version, arch, DTK, kernel, kernel + "+rt", rhel)


# ----------------------------------------------------------------------------- release targets


def test_release_targets_from_form_only() -> None:
    targets = plan.release_targets(config(include_cluster_release=False), "4.18.12")
    assert targets == [Target("4.18.12", "x86_64", "form")]


def test_release_targets_add_cluster_and_upgrades_deduped_and_sorted() -> None:
    cfg = config(ocp_versions=["4.19.3", "4.18.12"], arches=["x86_64", "aarch64"])
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


def test_cluster_release_is_form_when_already_listed() -> None:
    targets = plan.release_targets(config(), "4.18.12")
    assert targets == [Target("4.18.12", "x86_64", "form")]


def test_cluster_version_unknown_is_skipped() -> None:
    targets = plan.release_targets(config(ocp_versions=[]), "", ["4.19.3"])
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
    assert parse_toolkit(dtk_xcom()) == Toolkit(
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
    assert parse_toolkit(data).rt_kernel == ""


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
        ({**dtk_xcom(), "version": "4.18"}, "version"),
        ({**dtk_xcom(), "arch": "ppc64le"}, "arch"),
        ({**dtk_xcom(), "dtk_image": "driver-toolkit"}, "dtk_image"),
        ({**dtk_xcom(), "dtk_image": "quay.io/x/dtk:1 --privileged"}, "dtk_image"),
    ],
)
def test_parse_toolkit_hostile(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_toolkit(data)
    assert err.value.field.startswith("driver toolkit of ")
    assert err.value.field.endswith(field)


# ----------------------------------------------------------------------------- build planning


def test_one_release_one_driver() -> None:
    [build] = plan.plan_builds(config(), SETTINGS, [toolkit("4.18.12")], "v26.7.0")
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
    builds = plan.plan_builds(config(), SETTINGS, [toolkit("4.18.13"), toolkit("4.18.12")], "v26.7.0")
    assert len(builds) == 1
    assert builds[0].releases == ("4.18.12", "4.18.13")


def test_two_releases_times_two_drivers_give_four_builds() -> None:
    cfg = config(driver_versions=["580.65.06", "570.158.01"])
    builds = plan.plan_builds(cfg, SETTINGS, [toolkit("4.18.12"), toolkit("4.19.3", K419, "9.6")], "v26.7.0")
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
    [build] = plan.plan_builds(config(), SETTINGS, [toolkit(release, kernel, rhel)], operator)
    assert build.os_tag == os_tag
    assert build.tag == f"570.158.01-{kernel}-{os_tag}"
    assert build.image.endswith(f":570.158.01-{kernel}-{os_tag}")


def test_same_kernel_different_os_tag_is_one_build_published_under_both() -> None:
    # An upgrade from 4.18 to 4.19 on the same kernel changes what the nodes report (rhcos -> rhel);
    # OS_TAG changes only the tag (and a label) in NVIDIA's recipe, so the image is copied, not rebuilt.
    [build] = plan.plan_builds(
        config(), SETTINGS, [toolkit("4.18.12"), toolkit("4.19.0", K418, "9.4")], "v26.7.0"
    )
    assert build.os_tag == "rhcos4.18"
    assert build.releases == ("4.18.12", "4.19.0")
    assert build.aliases == (f"{REPO}/driver:570.158.01-{K418}-rhel9",)


def test_every_image_is_published_under_every_os_tag_of_the_cluster_and_the_plan() -> None:
    # The cluster's GPU nodes report rhcos4.18 and rhel9 now (mid-upgrade); the operator picks one of
    # them for all kernels, so 4.19's kernel needs the rhcos4.18 tag too, and 4.18's kernel the rhel9 tag.
    builds = plan.plan_builds(
        config(),
        SETTINGS,
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
    [build] = plan.plan_builds(
        config(), SETTINGS, [toolkit("4.18.12")], "v26.7.0", cluster_os_tags=["rhcos4.18"]
    )
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
        config(driver_versions=[driver]),
        SETTINGS,
        [toolkit("4.18.12")],
        "v26.7.0",
        kernel_module_type=requested,
    )
    assert build.kernel_module_type == module_type


def test_build_spec_round_trips_through_xcom() -> None:
    import json

    [build] = plan.plan_builds(
        config(), SETTINGS, [toolkit("4.18.12"), toolkit("4.19.0", K418, "9.4")], "v26.7.0"
    )
    assert plan.BuildSpec.from_dict(json.loads(json.dumps(build.to_dict()))) == build


def test_aarch64_build() -> None:
    cfg = config(arches=["aarch64"])
    [build] = plan.plan_builds(cfg, SETTINGS, [toolkit("4.19.3", KARM, "9.6", arch="aarch64")], "v26.7.0")
    assert build.build_arch == "aarch64"
    assert build.tag == f"570.158.01-{KARM}-rhel9"


def test_kernel_of_another_arch_is_refused() -> None:
    with pytest.raises(ValueError, match="aarch64"):
        plan.plan_builds(config(), SETTINGS, [toolkit("4.19.3", KARM, "9.6", arch="x86_64")], "v26.7.0")


def test_build_spec_round_trips_as_dict() -> None:
    [build] = plan.plan_builds(config(), SETTINGS, [toolkit("4.18.12")], "v26.7.0")
    data = build.to_dict()
    assert BuildSpec(**{**data, "releases": tuple(data["releases"])}) == build


# ----------------------------------------------------------------------------- what to build


def builds() -> list[BuildSpec]:
    cfg = config(driver_versions=["570.158.01", "580.65.06"])
    return plan.plan_builds(cfg, SETTINGS, [toolkit("4.18.12")], "v26.7.0")


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
    [build] = plan.plan_builds(config(), SETTINGS, [toolkit("4.18.12")], "v26.7.0")
    merged = plan._with_release(build, "4.18.3")
    assert merged.releases == ("4.18.3", "4.18.12")
    assert dataclasses.replace(merged, releases=build.releases) == build


# ----------------------------------------------------------------------------- platforms
# /etc/driver-toolkit-release.json as openshift/driver-toolkit's Dockerfile / Dockerfile.rhel10 write it
# (last layer: KERNEL_VERSION from `rpm -q --qf "%{VERSION}-%{RELEASE}.%{ARCH}" kernel-devel`,
# RT_KERNEL_VERSION from the same on kernel-rt-core plus "+rt", RHEL_VERSION from dnf's releasever).
# kernel-rt is installed on x86_64 only, so on aarch64 rpm's message lands in RT_KERNEL_VERSION.
DTK_AARCH64 = {
    "KERNEL_VERSION": KARM,
    "RT_KERNEL_VERSION": "package kernel-rt-core is not installed",
    "RHEL_VERSION": "9.6",
}
K10 = "6.12.0-55.12.1.el10_0.x86_64"
DTK_RHEL10 = {"KERNEL_VERSION": K10, "RT_KERNEL_VERSION": f"{K10}+rt", "RHEL_VERSION": "10.0"}
DTK10 = "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:" + "b" * 64


def test_aarch64_toolkit_without_rt_kernel_is_read(caplog: pytest.LogCaptureFixture) -> None:
    data = {"version": "4.19.3", "arch": "aarch64", "dtk_image": DTK, "toolkit": DTK_AARCH64}
    with caplog.at_level("INFO"):
        parsed = parse_toolkit(data)
    assert parsed.kernel == KARM
    assert parsed.rt_kernel == ""
    assert "package kernel-rt-core is not installed" in caplog.text
    assert "no RT kernel" in caplog.text


@pytest.mark.parametrize("rt", ["x\ny", "package kernel-rt-core is not installed", "$(id)"])
def test_rt_value_that_is_not_a_kernel_means_no_rt_kernel(rt: str) -> None:
    assert parse_toolkit(dtk_xcom(RT_KERNEL_VERSION=rt)).rt_kernel == ""


def test_a_toolkit_of_another_arch_than_its_release_is_refused() -> None:
    data = {"version": "4.19.3", "arch": "x86_64", "dtk_image": DTK, "toolkit": DTK_AARCH64}
    with pytest.raises(ValidationError, match=r"KERNEL_VERSION.*a x86_64 kernel"):
        parse_toolkit(data)


def test_one_malformed_toolkit_rejects_its_own_release_only() -> None:
    good_x86 = dtk_xcom()
    good_arm = {"version": "4.19.3", "arch": "aarch64", "dtk_image": DTK, "toolkit": DTK_AARCH64}
    bad = {**dtk_xcom(KERNEL_VERSION="not a kernel"), "version": "4.19.5"}
    toolkits, rejected = plan.parse_toolkits([good_x86, bad, None, good_arm])
    assert [(t.version, t.arch) for t in toolkits] == [("4.18.12", "x86_64"), ("4.19.3", "aarch64")]
    assert [(r.version, r.arch) for r in rejected] == [("4.19.5", "x86_64"), ("None", "None")]
    assert "driver toolkit of 4.19.5-x86_64: KERNEL_VERSION" in rejected[0].error
    assert "'not a kernel'" in rejected[0].error


def test_two_stream_release_yields_two_toolkits() -> None:
    data = {**dtk_xcom(), "version": "4.20.4", "dtk_image_10": DTK10, "toolkit_10": DTK_RHEL10}
    rhel9, rhel10 = plan.release_toolkits(data)
    assert (rhel9.stream, rhel9.kernel, rhel9.rhel_version, rhel9.dtk_image) == (
        "driver-toolkit",
        REAL_DTK["KERNEL_VERSION"],
        "9.4",
        DTK,
    )
    assert (rhel10.stream, rhel10.kernel, rhel10.rhel_version, rhel10.dtk_image) == (
        "driver-toolkit-10",
        K10,
        "10.0",
        DTK10,
    )
    builds = plan.plan_builds(config(), SETTINGS, [rhel9, rhel10], "v26.7.0")
    assert [(b.kernel, b.build_dir, b.os_tag, b.dtk_image) for b in builds] == [
        (REAL_DTK["KERNEL_VERSION"], "rhel9/precompiled", "rhel9", DTK),
        (K10, "rhel10/precompiled", "rhel10", DTK10),
    ]
    assert builds[1].tag == f"570.158.01-{K10}-rhel10"
    assert builds[1].warning == ""


def test_malformed_rhel10_toolkit_names_its_stream() -> None:
    data = {**dtk_xcom(), "dtk_image_10": DTK10, "toolkit_10": {**DTK_RHEL10, "RHEL_VERSION": "10"}}
    with pytest.raises(ValidationError) as err:
        plan.release_toolkits(data)
    assert err.value.field == "driver toolkit of 4.18.12-x86_64 (driver-toolkit-10): RHEL_VERSION"


def test_release_without_driver_toolkit_10_behaves_as_before() -> None:
    assert plan.release_toolkits(dtk_xcom()) == [parse_toolkit(dtk_xcom())]


def arm_toolkit(version: str = "4.19.3") -> Toolkit:
    return parse_toolkit({"version": version, "arch": "aarch64", "dtk_image": DTK, "toolkit": DTK_AARCH64})


def test_64k_builds_planned_when_a_gpu_node_runs_a_64k_kernel() -> None:
    cfg = config(arches=["aarch64"])
    node_kernels = [K419, "5.14.0-570.12.1.el9_6.aarch64_64k"]  # NFD label form, as inspect_cluster reads
    builds = plan.plan_builds(cfg, SETTINGS, [arm_toolkit()], "v26.7.0", gpu_kernels=node_kernels)
    assert [(b.build_arch, b.tag) for b in builds] == [
        ("aarch64", f"570.158.01-{KARM}-rhel9"),
        ("aarch64+64k", "570.158.01-5.14.0-570.12.1.el9_6.aarch64_64k-rhel9"),
    ]
    # Exactly the tag the operator pulls for a 64k node (and what NVIDIA's Makefile gives).
    from precompiled_drivers import naming

    assert builds[1].image.endswith(
        naming.operator_image(
            REPO, "driver", "570.158.01", "5.14.0-570.12.1.el9_6.aarch64+64k", "rhel9"
        ).rsplit(":", 1)[1]
    )
    assert builds[1].warning == ""
    assert builds[1].kernel == f"{KARM}+64k"
    assert naming.make_kernel_version(builds[1].kernel) == KARM  # the Makefile's KERNEL_VERSION


def test_no_64k_builds_without_64k_nodes_or_the_setting() -> None:
    cfg = config(arches=["aarch64"])
    builds = plan.plan_builds(cfg, SETTINGS, [arm_toolkit()], "v26.7.0", gpu_kernels=[KARM, K419])
    assert [b.build_arch for b in builds] == ["aarch64"]


def test_64k_setting_plans_them_for_look_ahead_and_never_for_x86() -> None:
    params = {"ocp_versions": ["4.19.3"], "arches": ["x86_64", "aarch64"], "driver_versions": ["570.158.01"]}
    cfg = run_config(
        {**params, "repository": REPO, "driver_repo_ref": "main", "cuda_version": "12.8.1"},
        Settings(build_64k=True),
    )
    builds = plan.plan_builds(
        cfg,
        Settings(build_64k=True),
        [toolkit("4.19.3", K419, "9.6"), arm_toolkit()],
        "v26.7.0",
        gpu_kernels=[K419],
    )
    assert sorted(b.build_arch for b in builds) == ["aarch64", "aarch64+64k", "x86_64"]


def test_64k_setting_is_validated() -> None:
    with pytest.raises(ValidationError, match="PRECOMPILED_DRIVERS_BUILD_64K"):
        Settings.from_env({"PRECOMPILED_DRIVERS_BUILD_64K": "yes please"}).validate()
    assert Settings.from_env({"PRECOMPILED_DRIVERS_BUILD_64K": "true"}).build_64k is True
