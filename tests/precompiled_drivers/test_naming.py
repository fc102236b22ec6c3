"""Naming rules against vectors transcribed from DESIGN.md section 3 and NVIDIA's sources."""

from __future__ import annotations

import pytest

from precompiled_drivers import naming

K_X86 = "5.14.0-427.37.1.el9_4.x86_64"
K_ARM = "5.14.0-427.37.1.el9_4.aarch64"
K_ARM_64K = "5.14.0-427.37.1.el9_4.aarch64+64k"  # uname -r of a 64k-page kernel
K_ARM_64K_LABEL = "5.14.0-427.37.1.el9_4.aarch64_64k"  # the same kernel as NFD labels it
K_RT = "5.14.0-427.50.1.el9_4.x86_64+rt"  # DTK RT_KERNEL_VERSION form


@pytest.mark.parametrize(
    ("kernel", "expected"),
    [
        # DESIGN.md section 3 and NVIDIA/gpu-operator TestGetSanitizedKernelVersion.
        (K_X86, "5.14.0-427.37.1.el9.4"),
        (K_ARM, "5.14.0-427.37.1.el9.4"),
        (K_ARM_64K_LABEL, "5.14.0-427.37.1.el9.4"),
        ("5.14.0-427.37.1.el9_4.x86_64_64k", "5.14.0-427.37.1.el9.4"),
        (K_ARM_64K, "5.14.0-427.37.1.el9.4"),
        ("4.18.0-372.51.1.el8_6.x86_64", "4.18.0-372.51.1.el8.6"),
        ("5.14.0-570.12.1.el9_6.x86_64", "5.14.0-570.12.1.el9.6"),
        # Not an OpenShift kernel, but the operator's rule lowercases and trims the same way.
        ("5.4.0-Generic_X", "5.4.0-generic.x"),
    ],
)
def test_sanitize_kernel(kernel: str, expected: str) -> None:
    assert naming.sanitize_kernel(kernel) == expected


@pytest.mark.parametrize(
    ("kernel", "os_id", "os_version", "expected"),
    [
        (K_X86, "rhcos", "4.18", "nvidia-driver-daemonset-5.14.0-427.37.1.el9.4-rhcos4.18"),
        (K_X86, "rhcos", "4.16", "nvidia-driver-daemonset-5.14.0-427.37.1.el9.4-rhcos4.16"),
        (
            "5.14.0-570.12.1.el9_6.x86_64",
            "rhel",
            "9.6",
            "nvidia-driver-daemonset-5.14.0-570.12.1.el9.6-rhel9.6",
        ),
        (K_ARM_64K, "rhel", "9.4", "nvidia-driver-daemonset-5.14.0-427.37.1.el9.4-rhel9.4"),
    ],
)
def test_daemonset_name(kernel: str, os_id: str, os_version: str, expected: str) -> None:
    assert naming.daemonset_name(kernel, os_id, os_version) == expected


def test_daemonset_name_refuses_what_the_operator_cannot_create() -> None:
    # The operator's sanitizing turns '..._rt' into '...el9.4..rt': not an object name.
    with pytest.raises(ValueError, match="DNS-1123"):
        naming.daemonset_name(K_RT, "rhel", "9.4")


@pytest.mark.parametrize(
    ("kernel", "arch", "base", "variant", "make_kernel", "label"),
    [
        (K_X86, "x86_64", "5.14.0-427.37.1.el9_4", "", K_X86, K_X86),
        (K_ARM, "aarch64", "5.14.0-427.37.1.el9_4", "", K_ARM, K_ARM),
        (K_ARM_64K, "aarch64", "5.14.0-427.37.1.el9_4", "64k", K_ARM, K_ARM_64K_LABEL),
        (K_ARM_64K_LABEL, "aarch64", "5.14.0-427.37.1.el9_4", "64k", K_ARM, K_ARM_64K_LABEL),
        (
            K_RT,
            "x86_64",
            "5.14.0-427.50.1.el9_4",
            "rt",
            "5.14.0-427.50.1.el9_4.x86_64",
            K_RT.replace("+", "_"),
        ),
    ],
)
def test_kernel_parts(kernel: str, arch: str, base: str, variant: str, make_kernel: str, label: str) -> None:
    assert naming.kernel_arch(kernel) == arch
    assert naming.make_kernel_version(kernel).removesuffix(f".{arch}") == base
    assert naming.kernel_variant(kernel) == variant
    assert naming.make_kernel_version(kernel) == make_kernel
    assert naming.nfd_kernel_label(kernel) == label


@pytest.mark.parametrize("bad", ["5.14.0-427.37.1.el9_4", "5.14.0-427.37.1.el9_4.ppc64le", "", "x86_64"])
def test_kernel_parts_reject_kernels_without_arch(bad: str) -> None:
    with pytest.raises(ValueError, match="full kernel"):
        naming.kernel_arch(bad)


@pytest.mark.parametrize(
    ("os_id", "os_version", "operator", "expected"),
    [
        # DESIGN.md: up to v26.3 ID+VERSION_ID as is; from v26.7 major only for rhel/rocky/ol.
        ("rhcos", "4.18", "v25.10.1", "rhcos4.18"),
        ("rhcos", "4.18", "v26.7.0", "rhcos4.18"),
        ("rhel", "9.6", "v25.10.1", "rhel9.6"),
        ("rhel", "9.6", "v26.3.0", "rhel9.6"),
        ("rhel", "9.6", "26.7.0", "rhel9"),
        ("rhel", "9.6", "v26.7.0", "rhel9"),
        ("rhel", "8.10", "v26.7.1", "rhel8"),
        ("rocky", "9.5", "v26.7.0", "rocky9"),
        ("ol", "9.5", "v26.7.0", "ol9"),
        ("ubuntu", "24.04", "v26.7.0", "ubuntu24.04"),
        # NVIDIA/gpu-operator controllers/state_manager.go (v26.3 line): rocky and rhel>=10 major.
        ("rhel", "10.0", "v25.10.1", "rhel10.0"),
        ("rhel", "10.0", "v26.3.1", "rhel10"),
        ("rocky", "9.5", "v26.3.0", "rocky9"),
        ("ol", "9.5", "v26.3.0", "ol9.5"),
        # A release candidate of v26.7 already carries the v26.7 rule.
        ("rhel", "9.6", "v26.7.0-rc.1", "rhel9"),
    ],
)
def test_os_tag(os_id: str, os_version: str, operator: str, expected: str) -> None:
    assert naming.os_tag(os_id, os_version, operator) == expected


@pytest.mark.parametrize(
    ("operator", "rule"),
    [
        ("v25.10.1", naming.OsTagRule.AS_IS),
        ("25.3.0", naming.OsTagRule.AS_IS),
        ("v26.3.0", naming.OsTagRule.ROCKY_RHEL10_MAJOR),
        ("v26.7.0", naming.OsTagRule.MAJOR),
        ("26.7.0", naming.OsTagRule.MAJOR),
        ("v27.1", naming.OsTagRule.MAJOR),
    ],
)
def test_os_tag_rule(operator: str, rule: naming.OsTagRule) -> None:
    assert naming.os_tag_rule_for(operator) is rule
    assert naming.os_tag_rule(operator) == rule.label
    assert "operator" in naming.os_tag_rule(operator)


@pytest.mark.parametrize("bad", ["", "latest", "v", "vX.Y", None])
def test_os_tag_rule_needs_a_version(bad: str) -> None:
    with pytest.raises(ValueError, match="operator version"):
        naming.os_tag("rhel", "9.6", bad)


@pytest.mark.parametrize(
    ("ocp", "rhel", "expected"),
    [
        ("4.16.20", "9.4", ("rhcos", "4.16")),
        ("4.18.3", "9.4", ("rhcos", "4.18")),
        ("4.19.0", "9.6", ("rhel", "9.6")),
        ("4.19.0-rc.1", "9.6", ("rhel", "9.6")),
        ("4.20.2", "9.6", ("rhel", "9.6")),
    ],
)
def test_release_os_labels(ocp: str, rhel: str, expected: tuple[str, str]) -> None:
    assert naming.release_os_labels(ocp, rhel) == expected


def test_release_os_labels_feed_os_tag_for_an_upgrade() -> None:
    os_id, version_id = naming.release_os_labels("4.19.1", "9.6")
    assert naming.os_tag(os_id, version_id, "v26.3.2") == "rhel9.6"
    assert naming.os_tag(os_id, version_id, "v26.7.0") == "rhel9"
    os_id, version_id = naming.release_os_labels("4.18.3", "9.4")
    assert naming.os_tag(os_id, version_id, "v26.7.0") == "rhcos4.18"


@pytest.mark.parametrize(
    ("ocp", "rhel", "says"),
    [
        ("4.19.0", "9", "RHEL version"),
        ("four", "9.6", "OpenShift version"),
        ("4.19.0", "nine", "RHEL version"),
    ],
)
def test_release_os_labels_rejects_malformed(ocp: str, rhel: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        naming.release_os_labels(ocp, rhel)


@pytest.mark.parametrize(
    ("kernel", "os_tag", "expected"),
    [
        (
            K_X86,
            "rhcos4.18",
            "quay.io/acme/nvidia-gpu-driver:570.158.01-5.14.0-427.37.1.el9_4.x86_64-rhcos4.18",
        ),
        (
            K_ARM_64K,
            "rhel9",
            "quay.io/acme/nvidia-gpu-driver:570.158.01-5.14.0-427.37.1.el9_4.aarch64_64k-rhel9",
        ),
    ],
)
def test_operator_image(kernel: str, os_tag: str, expected: str) -> None:
    assert (
        naming.operator_image("quay.io/acme", "nvidia-gpu-driver", "570.158.01", kernel, os_tag) == expected
    )


def test_operator_image_refuses_a_digest_version() -> None:
    with pytest.raises(ValueError, match="digest"):
        naming.operator_image("quay.io/acme", "driver", "sha256:" + "a" * 64, K_X86, "rhel9")


@pytest.mark.parametrize(
    ("rhel", "expected"),
    [("8.10", "rhel8/precompiled"), ("9.4", "rhel9/precompiled"), ("10.0", "rhel10/precompiled")],
)
def test_build_dir(rhel: str, expected: str) -> None:
    assert naming.build_dir(rhel) == expected


@pytest.mark.parametrize("bad", ["7.9", "11.0", "9", "nine", ""])
def test_build_dir_rejects_unknown(bad: str) -> None:
    with pytest.raises(ValueError, match="RHEL version"):
        naming.build_dir(bad)


@pytest.mark.parametrize(
    ("arch", "kernel", "expected"),
    [
        ("x86_64", K_X86, "x86_64"),
        ("amd64", K_X86, "x86_64"),
        ("aarch64", K_ARM, "aarch64"),
        ("arm64", K_ARM, "aarch64"),
        ("aarch64", K_ARM_64K, "aarch64+64k"),
        ("arm64", K_ARM_64K_LABEL, "aarch64+64k"),
    ],
)
def test_build_arch(arch: str, kernel: str, expected: str) -> None:
    assert naming.build_arch(arch, kernel) == expected


@pytest.mark.parametrize(("arch", "kernel"), [("x86_64", K_ARM), ("aarch64", K_X86), ("s390x", K_X86)])
def test_build_arch_rejects_cross_builds(arch: str, kernel: str) -> None:
    with pytest.raises(ValueError, match=r"x86_64|aarch64"):
        naming.build_arch(arch, kernel)


@pytest.mark.parametrize(
    ("kernel", "build_arch", "rhel_major", "expected"),
    [
        # NVIDIA/gpu-driver-container rhel9/precompiled/Makefile KERNEL_VERSION_TAG.
        (K_X86, "x86_64", 9, "570.158.01-5.14.0-427.37.1.el9_4.x86_64-rhel9.4"),
        (K_ARM, "aarch64", 9, "570.158.01-5.14.0-427.37.1.el9_4.aarch64-rhel9.4"),
        (K_ARM, "aarch64+64k", 9, "570.158.01-5.14.0-427.37.1.el9_4.aarch64_64k-rhel9.4"),
        (K_ARM, "aarch64+64k", 10, "570.158.01-5.14.0-427.37.1.el9_4.aarch64_64k-rhel9.4"),
        # The sed quirks, reproduced: a '+64k' KERNEL_VERSION keeps a '+' in the tag.
        (K_ARM_64K, "aarch64+64k", 9, "570.158.01-5.14.0-427.37.1.el9_4_64k.aarch64+64k-rhel9.4"),
        # rhel8 Makefile uses KERNEL_VERSION verbatim and has no BUILD_ARCH.
        ("4.18.0-372.51.1.el8_6.x86_64", "", 8, "570.158.01-4.18.0-372.51.1.el8_6.x86_64-rhel9.4"),
    ],
)
def test_build_tag(kernel: str, build_arch: str, rhel_major: int, expected: str) -> None:
    assert naming.build_tag("570.158.01", kernel, "rhel9.4", build_arch, rhel_major=rhel_major) == expected


def test_build_tag_rejects_unknown_build_arch() -> None:
    with pytest.raises(ValueError, match="BUILD_ARCH"):
        naming.build_tag("570.158.01", K_X86, "rhel9", "amd64")


@pytest.mark.parametrize(
    ("kernel", "build_arch"),
    [(K_X86, "x86_64"), (K_ARM, "aarch64"), (K_ARM_64K, "aarch64+64k"), (K_ARM_64K_LABEL, "aarch64+64k")],
)
def test_no_mismatch_when_make_gets_the_base_kernel(kernel: str, build_arch: str) -> None:
    assert naming.tag_mismatch("570.158.01", kernel, "rhel9", build_arch) is None
    # And the agreed tag is exactly what the operator pulls.
    built = naming.build_tag("570.158.01", naming.make_kernel_version(kernel), "rhel9", build_arch)
    assert naming.operator_image("r.io/a", "d", "570.158.01", kernel, "rhel9") == f"r.io/a/d:{built}"


@pytest.mark.parametrize(
    ("kernel", "build_arch", "says"),
    [
        (K_ARM, "aarch64+64k", "BUILD_ARCH=aarch64"),  # 64k build for a 4k-page node
        (K_ARM_64K, "aarch64", "BUILD_ARCH=aarch64+64k"),  # 4k build for a 64k node
        (K_RT, "x86_64", "no RT build"),
    ],
)
def test_mismatch_is_detected_and_explained(kernel: str, build_arch: str, says: str) -> None:
    message = naming.tag_mismatch("570.158.01", kernel, "rhel9", build_arch)
    assert message is not None
    assert says in message
    assert naming.nfd_kernel_label(kernel) in message


def test_machine_arch_drops_the_page_size() -> None:
    from precompiled_drivers.naming import machine_arch

    assert [machine_arch(a) for a in ("x86_64", "aarch64", "aarch64+64k")] == ["x86_64", "aarch64", "aarch64"]
