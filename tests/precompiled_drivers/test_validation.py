"""Validation: good inputs normalize, every bad one is refused naming its field and value."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from precompiled_drivers import validation as v

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"

# Values transcribed from ../shared/reference (the CRD, the NVIDIADriver sample) and DESIGN.md.
GOOD: list[tuple[Callable[[object, str], Any], object, object]] = [
    (v.ocp_version, "4.18.3", "4.18.3"),
    (v.ocp_version, "4.12.0-rc.4", "4.12.0-rc.4"),  # cincinnati candidate-4.12 fixture
    (v.ocp_version, "4.19.0-ec.2", "4.19.0-ec.2"),
    (v.arch, "x86_64", "x86_64"),
    (v.arch, "aarch64", "aarch64"),
    (v.arch, "amd64", "x86_64"),
    (v.arch, "arm64", "aarch64"),
    (v.driver_version, "570.158.01", "570.158.01"),  # rhel9/precompiled/nvidiadriver.json
    (v.driver_version, "550.54.15", "550.54.15"),
    (v.cuda_version, "12.8.1", "12.8.1"),
    (v.repository, "quay.io/fabiendupont", "quay.io/fabiendupont"),
    (v.repository, "quay.io/acme", "quay.io/acme"),
    (v.repository, "127.0.0.1:5000/nvidia", "127.0.0.1:5000/nvidia"),
    (
        v.repository,
        "image-registry.openshift-image-registry.svc:5000/gpu-drivers",
        "image-registry.openshift-image-registry.svc:5000/gpu-drivers",
    ),
    (v.repository, "nvcr.io/ea-cnt/nv_only", "nvcr.io/ea-cnt/nv_only"),  # Makefile default
    (v.image_name, "nvidia-gpu-driver", "nvidia-gpu-driver"),
    (v.image_name, "driver", "driver"),
    (v.kernel, "5.14.0-427.37.1.el9_4.x86_64", "5.14.0-427.37.1.el9_4.x86_64"),
    (v.kernel, "5.14.0-427.50.1.el9_4.x86_64+rt", "5.14.0-427.50.1.el9_4.x86_64+rt"),
    (v.kernel, "5.14.0-427.37.1.el9_4.aarch64+64k", "5.14.0-427.37.1.el9_4.aarch64+64k"),
    (v.kernel, "5.14.0-427.37.1.el9_4.aarch64_64k", "5.14.0-427.37.1.el9_4.aarch64_64k"),
    (v.k8s_name, "gpu-cluster-policy", "gpu-cluster-policy"),  # v1_clusterpolicy.sample.yaml
    (v.k8s_name, "ocp-pull-secret.v2", "ocp-pull-secret.v2"),
    (v.dns_label, "nvidia-gpu-operator", "nvidia-gpu-operator"),
    (v.image_ref, "quay.io/openshift/origin-cli:4.18", "quay.io/openshift/origin-cli:4.18"),
    (
        v.image_ref,
        "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:" + "6a" * 32,
        "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:" + "6a" * 32,
    ),
    (v.image_ref, "127.0.0.1:5000/tools/skopeo:v1.16", "127.0.0.1:5000/tools/skopeo:v1.16"),
    (v.digest, "sha256:" + "0f" * 32, "sha256:" + "0f" * 32),
    (v.git_ref, "main", "main"),
    (v.git_ref, "release/26.7", "release/26.7"),
    (v.git_ref, "06a208ca9747c82b1ba99b76ecdcf2469b0a0207", "06a208ca9747c82b1ba99b76ecdcf2469b0a0207"),
    (
        v.https_url,
        "https://github.com/NVIDIA/gpu-driver-container.git",
        "https://github.com/NVIDIA/gpu-driver-container.git",
    ),
    (
        v.https_url,
        "https://api.openshift.com/api/upgrades_info/v1/graph",
        "https://api.openshift.com/api/upgrades_info/v1/graph",
    ),
    (v.https_url, "http://127.0.0.1:8080/graph", "http://127.0.0.1:8080/graph"),
    (v.https_url, "http://localhost/repo.git", "http://localhost/repo.git"),
    (v.operator_version, "", ""),
    (v.operator_version, "v26.7.0", "v26.7.0"),
    (v.operator_version, "26.7.0", "v26.7.0"),
    (v.operator_version, "v25.10.1", "v25.10.1"),
    (partial(v.positive_int, maximum=10), 4, 4),
    (partial(v.positive_int, maximum=10), "10", 10),
    (v.boolean, True, True),
    (v.boolean, "false", False),
]


@pytest.mark.parametrize(("check", "value", "expected"), GOOD)
def test_good_inputs_are_normalized(
    check: Callable[[object, str], Any], value: object, expected: object
) -> None:
    assert check(value, "field") == expected


NUL = "570.158.01\x00"
LONG_REF = "quay.io/" + "a" * 600
# (validator, field, bad value, word the reason must contain or "" when a pattern mismatch)
BAD: list[tuple[Callable[[object, str], Any], str, object, str]] = [
    # shell metacharacters, whitespace, control chars, look-alikes
    (v.driver_version, "driver_versions[1]", "570.1;rm -rf /", "';'"),
    (v.driver_version, "driver_versions[0]", "570.158.01;id", "';'"),
    (v.driver_version, "driver_version", "570.158.01|sh", "'|'"),
    (v.driver_version, "driver_version", "$(reboot)", "'$'"),
    (v.driver_version, "driver_version", "`id`", "'`'"),
    (v.driver_version, "driver_version", NUL, "control"),
    (v.driver_version, "driver_version", "570.158.01\n", "control"),
    (v.driver_version, "driver_version", "57\u041e.158.01", "non-ASCII"),  # Cyrillic O
    (v.driver_version, "driver_version", "570.158", ""),
    (v.driver_version, "driver_version", "570.158.1", ""),
    (v.driver_version, "driver_version", 570, "not a string"),
    (v.ocp_version, "ocp_versions[0]", "4.1\u0430.0", "non-ASCII"),  # Cyrillic a
    (v.ocp_version, "ocp_version", "4.18", ""),
    (v.ocp_version, "ocp_version", "4.18.3 ", "whitespace"),
    (v.ocp_version, "ocp_version", "4.18.3-nightly", ""),
    (v.ocp_version, "ocp_version", None, "not a string"),
    (v.ocp_version, "ocp_version", "", "empty"),
    (v.arch, "arch", "ppc64le", ""),
    (v.arch, "arch", "x86-64", ""),
    (v.arch, "arch", ["x86_64"], "not a string"),
    (v.cuda_version, "cuda_version", "12.8", ""),
    (v.cuda_version, "cuda_version", "12.8.1&", "'&'"),
    (v.repository, "repository", "quay.io/Acme", ""),
    (v.repository, "repository", "acme", ""),
    (v.repository, "repository", "https://quay.io/acme", ""),
    (v.repository, "repository", "quay.io/../etc", "'..'"),
    (v.repository, "repository", LONG_REF, "longer than 512"),
    (v.image_name, "image", "nvidia_driver", ""),
    (v.image_name, "image", "Driver", ""),
    (v.image_name, "image", "-driver", "'-'"),
    (v.image_name, "image", "driver:latest", ""),
    (v.kernel, "kernels[0]", "5.14.0-427.37.1.el9_4", ""),
    (v.kernel, "kernel", "5.14.0-427.37.1.el9_4.x86_64 ", "whitespace"),
    (v.kernel, "kernel", "5.14.0-427.37.1.el9_4.s390x", ""),
    (v.kernel, "kernel", "k" * 300, "300 chars"),
    (v.k8s_name, "pull_secret", "Pull-Secret", ""),
    (v.k8s_name, "pull_secret", "pull_secret", ""),
    (v.k8s_name, "pull_secret", "a" * 254, "longer than 253"),
    (v.dns_label, "namespace", "gpu.operator", ""),
    (v.dns_label, "namespace", "n" * 64, "longer than 63"),
    (v.image_ref, "oc_image", "quay.io/openshift/origin-cli", "no tag"),
    (v.image_ref, "oc_image", "origin-cli:4.18", ""),
    (v.image_ref, "oc_image", "quay.io/openshift/origin-cli@sha256:abc", ""),
    (v.image_ref, "oc_image", "quay.io/x/y:1;curl evil", "';'"),
    (v.digest, "digest", "sha256:" + "0F" * 32, ""),
    (v.digest, "digest", "sha512:" + "0f" * 64, "longer than 72"),
    (v.git_ref, "driver_repo_ref", "main..evil", "'..'"),
    (v.git_ref, "driver_repo_ref", "-c", "'-'"),
    (v.git_ref, "driver_repo_ref", "--upload-pack=x", "'-'"),
    (v.git_ref, "driver_repo_ref", "release/", "git ref"),
    (v.git_ref, "driver_repo_ref", "refs/heads/x.lock", "git ref"),
    (v.https_url, "driver_repo_url", "http://github.com/NVIDIA/gpu-driver-container", "plain http"),
    (v.https_url, "driver_repo_url", "ftp://example.com/x", ""),
    (v.https_url, "driver_repo_url", "https://user@github.com/x", ""),
    (v.https_url, "graph_url", "https://api.openshift.com/graph?channel=x", "'?'"),
    (v.https_url, "graph_url", "file:///etc/passwd", ""),
    (v.operator_version, "operator_version", "latest", ""),
    (v.operator_version, "operator_version", "v26.7.0'", '"\'"'),
    (partial(v.positive_int, maximum=10), "parallel_builds", 0, "out of range"),
    (partial(v.positive_int, maximum=10), "parallel_builds", 11, "out of range"),
    (partial(v.positive_int, maximum=10), "parallel_builds", True, "boolean"),
    (partial(v.positive_int, maximum=10), "parallel_builds", "3.5", ""),
    (partial(v.positive_int, maximum=10), "parallel_builds", None, "not a number"),
    (v.boolean, "force_rebuild", "yes", ""),
    (v.boolean, "force_rebuild", 1, "not a string"),
]


def _shown(value: object) -> str:
    return ascii(value[:60]) if isinstance(value, str) else ascii(value)[:60]


@pytest.mark.parametrize(("check", "field", "value", "reason"), BAD)
def test_bad_inputs_name_field_and_value(
    check: Callable[[object, str], Any], field: str, value: object, reason: str
) -> None:
    with pytest.raises(v.ValidationError) as caught:
        check(value, field)
    error = caught.value
    message = str(error)
    assert error.field == field
    assert error.value == value
    assert error.expected
    assert message.startswith(f"{field}: got {_shown(value)}")
    assert f"expected {error.expected}" in message
    assert reason in message
    assert isinstance(error, ValueError)


def test_enough_bad_vectors() -> None:
    assert len(BAD) >= 40
    assert len({check.func if isinstance(check, partial) else check for check, *_ in BAD}) >= 15


def test_message_reads_like_the_brief() -> None:
    with pytest.raises(v.ValidationError) as caught:
        v.driver_version("570.1", "driver_versions[1]")
    assert str(caught.value) == (
        "driver_versions[1]: got '570.1' — expected a driver version like 570.158.01 (NNN.NN.NN)"
    )


def test_long_value_is_cut_and_its_length_said() -> None:
    with pytest.raises(v.ValidationError) as caught:
        v.repository(LONG_REF, "repository")
    message = str(caught.value)
    assert f"{LONG_REF[:60]!a}..." in message
    assert f"{len(LONG_REF)} chars" in message
    assert LONG_REF not in message


def test_newlines_and_lookalikes_are_visible() -> None:
    with pytest.raises(v.ValidationError) as caught:
        v.ocp_version("4.18.3\nrm", "ocp_version")
    assert "\\n" in str(caught.value)
    assert "\n" not in str(caught.value)
    with pytest.raises(v.ValidationError) as caught:
        v.ocp_version("4.1\u0430.0", "ocp_version")
    assert "\\u0430" in str(caught.value)


@pytest.mark.parametrize(
    ("value", "field", "reason"),
    [
        ("570.158.01", "driver_versions", "not a list"),
        ([], "driver_versions", "0 items"),
        (["570.158.01"] * 3, "driver_versions[1]", "duplicate of driver_versions[0]"),
        (["570.158.01", "550.54.15", "570.1;x"], "driver_versions[2]", "';'"),
        ([f"570.158.{i:02d}" for i in range(5)], "driver_versions", "5 items"),
    ],
)
def test_string_list_rejects(value: object, field: str, reason: str) -> None:
    with pytest.raises(v.ValidationError) as caught:
        v.string_list(value, "driver_versions", v.driver_version, max_items=4)
    assert caught.value.field == field
    assert reason in str(caught.value)


def test_string_list_normalizes_and_catches_duplicates_after_mapping() -> None:
    assert v.string_list(("amd64", "aarch64"), "arches", v.arch) == ["x86_64", "aarch64"]
    with pytest.raises(v.ValidationError, match=r"arches\[1\].*duplicate of arches\[0\]"):
        v.string_list(["amd64", "x86_64"], "arches", v.arch)


def test_image_names_follow_the_real_crd() -> None:
    crd_path = REFERENCE / "nvidia.com_clusterpolicies.yaml"
    if not crd_path.exists():
        pytest.skip("../shared/reference is not available")
    yaml = pytest.importorskip("yaml")
    crd = yaml.safe_load(crd_path.read_text())
    driver = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "driver"
    ]
    pattern = driver["properties"]["image"]["pattern"]
    assert pattern == "[a-zA-Z0-9\\-]+"  # transcribed above; fails loudly if NVIDIA changes it
    import re

    for _, value, _ in (g for g in GOOD if g[0] is v.image_name):
        assert re.fullmatch(pattern, value)
