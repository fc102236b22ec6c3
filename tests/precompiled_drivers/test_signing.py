"""Signing keys and provenance (pure): the pre-build refusal, fingerprints, labels, the report section."""

from __future__ import annotations

from typing import Any

import pytest

from precompiled_drivers import signing
from precompiled_drivers.settings import Settings

FP = "ab" * 32
FP2 = "cd" * 32
DTK = "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:" + "a" * 64


def check(keys: Any, *, required: bool = False, sign: bool = False) -> dict[str, str]:
    return signing.check_keys(
        keys,
        namespace="nvidia-precompiled-drivers",
        module_secret="precompiled-drivers-module-signing",
        require_module_signing=required,
        image_secret="precompiled-drivers-image-signing",
        sign_images=sign,
    )


def test_keys_found_are_returned() -> None:
    assert check({"module": FP, "image": FP2}, required=True, sign=True) == {"module": FP, "image": FP2}
    # Nothing required: no key is fine (NVIDIA's throw-away key, unsigned images).
    assert check({"module": "", "image": ""}) == {"module": "", "image": ""}
    assert check(None) == {"module": "", "image": ""}  # an inspect result from before this field


def test_required_module_key_missing_names_the_secret_and_the_command() -> None:
    with pytest.raises(signing.SigningKeyMissing) as err:
        check({"module": "", "image": FP2}, required=True, sign=True)
    text = str(err.value)
    assert text.startswith("no build was started: Secure Boot module signing is required")
    assert "Secret precompiled-drivers-module-signing in namespace nvidia-precompiled-drivers" in text
    assert (
        "oc create secret generic precompiled-drivers-module-signing -n nvidia-precompiled-drivers "
        "--from-file=private_key.priv --from-file=public_key.der" in text
    )
    assert "image signing" not in text


def test_image_signing_without_key_names_the_secret() -> None:
    with pytest.raises(signing.SigningKeyMissing) as err:
        check({"module": FP, "image": ""}, sign=True)
    text = str(err.value)
    assert (
        "Secret precompiled-drivers-image-signing in namespace nvidia-precompiled-drivers has no cosign.pub"
        in text
    )
    assert (
        "cosign generate-key-pair k8s://nvidia-precompiled-drivers/precompiled-drivers-image-signing" in text
    )


@pytest.mark.parametrize("bad", ["abc", "AB" * 32, "sha256:" + "a" * 64, "a" * 64 + "\n"])
def test_a_malformed_fingerprint_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="64 lowercase hex digits"):
        check({"module": bad})


def test_provenance_labels_and_their_env_form() -> None:
    labels = signing.provenance_labels(
        releases=("4.19.3", "4.19.5"),
        dtk_image=DTK,
        kernel="5.14.0-570.12.1.el9_6.x86_64",
        driver_version="570.158.01",
        cuda_version="12.8.1",
        recipe_url="https://github.com/NVIDIA/gpu-driver-container.git",
        recipe_ref="06a208ca",
    )
    assert labels == {
        "io.github.precompiled-drivers.openshift-releases": "4.19.3,4.19.5",
        "io.github.precompiled-drivers.driver-toolkit-image": DTK,
        "io.github.precompiled-drivers.kernel-version": "5.14.0-570.12.1.el9_6.x86_64",
        "io.github.precompiled-drivers.driver-version": "570.158.01",
        "io.github.precompiled-drivers.cuda-version": "12.8.1",
        "io.github.precompiled-drivers.nvidia-recipe": "https://github.com/NVIDIA/gpu-driver-container.git@06a208ca",
    }
    assert signing.parse_labels(signing.labels_env(labels)) == labels
    with pytest.raises(ValueError, match="one KEY=VALUE line"):
        signing.labels_env({"a": "x\ny"})


def selected(image: str) -> dict[str, Any]:
    labels = {signing.LABEL_KERNEL: "5.14.0-570.12.1.el9_6.x86_64", signing.LABEL_RELEASES: "4.19.3"}
    return {
        "env_vars": {
            "IMAGE": image,
            "KERNEL_MODULE_TYPE": "open",
            "MODULE_TYPE_LABEL": "io.github.precompiled-drivers.kernel-module-type",
            "PROVENANCE_LABELS": signing.labels_env(labels),
        }
    }


def test_report_lines_per_image() -> None:
    results = {
        "select_builds": [selected("r/d:1"), selected("r/d:2"), selected("r/d:3")],
        "build_driver_image": [
            {"image": "r/d:1", "module_key_sha256": FP},
            {"image": "r/d:2", "module_key_sha256": ""},
        ],
        "push_driver_image": [
            {"image": "r/d:1", "signed": True, "signing_key_sha256": FP2},
            {"image": "r/d:2", "signed": False, "signing_key_sha256": ""},
        ],
    }
    lines = signing.report_lines(results)
    text = "\n".join(lines)
    assert lines[1] == "Signing and provenance (fingerprints: sha256 of public_key.der / cosign.pub):"
    block_1 = text.split("  r/d:1\n")[1].split("  r/d:2\n")[0]
    assert f"    image signature: signed (sigstore), key sha256 {FP2}" in block_1
    assert f"      io.github.precompiled-drivers.module-signing-key-sha256={FP}" in block_1
    assert "      io.github.precompiled-drivers.kernel-module-type=open" in block_1
    assert "      io.github.precompiled-drivers.openshift-releases=4.19.3" in block_1
    block_2 = text.split("  r/d:2\n")[1].split("  r/d:3\n")[0]
    assert "not signed (PRECOMPILED_DRIVERS_SIGN_IMAGES is off)" in block_2
    assert f"module-signing-key-sha256={signing.THROWAWAY_KEY}" in block_2
    block_3 = text.split("  r/d:3\n")[1]
    assert (
        "image signature: - (not pushed)" in block_3 and "module-signing-key-sha256=- (not built)" in block_3
    )
    assert signing.report_lines({"select_builds": []}) == []


def test_settings_name_bad_signing_values() -> None:
    from precompiled_drivers.validation import ValidationError

    with pytest.raises(ValidationError) as err:
        Settings.from_env({"PRECOMPILED_DRIVERS_REQUIRE_MODULE_SIGNING": "yes please"}).validate()
    assert err.value.field == "PRECOMPILED_DRIVERS_REQUIRE_MODULE_SIGNING"
    with pytest.raises(ValidationError) as err:
        Settings.from_env({"PRECOMPILED_DRIVERS_IMAGE_SIGNING_SECRET": "Bad_Name"}).validate()
    assert err.value.field == "PRECOMPILED_DRIVERS_IMAGE_SIGNING_SECRET"
    settings = Settings.from_env(
        {"PRECOMPILED_DRIVERS_SIGN_IMAGES": "true", "PRECOMPILED_DRIVERS_REQUIRE_MODULE_SIGNING": "1"}
    ).validate()
    assert (settings.sign_images, settings.require_module_signing) == (True, True)
