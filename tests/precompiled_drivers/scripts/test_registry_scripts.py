"""Registry scripts with the real skopeo against a real registry on 127.0.0.1: OS-tag copies, module types."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from precompiled_drivers import kernel_module
from precompiled_drivers.steps.base import script
from testcluster.registry import Registry

ROOT = Path(__file__).resolve().parents[3]
REPO = "nvidia/driver"
K418 = "5.14.0-427.50.1.el9_4.x86_64"


def run(name: str, tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    """Run a script as its pod would (env only, real skopeo); return the process and its XCom."""
    xcom = tmp_path / f"xcom-{time.monotonic_ns()}" / "return.json"
    auth = tmp_path / "auth.json"
    auth.write_text("{}")  # the test registry needs no credentials, but the script reads a file
    proc = subprocess.run(
        ["bash", "-c", script(name), name],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XCOM_RETURN": str(xcom),
             "PUSH_AUTH_FILE": str(auth), "TLS_VERIFY": "false", **env},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return proc, json.loads(xcom.read_text()) if xcom.exists() else None


def ref(registry: Registry, tag: str) -> str:
    return f"{registry.host}/{REPO}:{tag}"


def test_publish_os_tags_copies_by_digest_and_leaves_right_tags_alone(
    registry: Registry, tmp_path: Path
) -> None:
    built = registry.push_test_image(REPO, f"570.158.01-{K418}-rhcos4.18")
    # An alias left by an earlier build with other content must end up with this image's digest.
    registry.push_test_image(REPO, f"570.158.01-{K418}-rhel9.4")
    image = ref(registry, f"570.158.01-{K418}-rhcos4.18")
    aliases = [ref(registry, f"570.158.01-{K418}-rhel9"), ref(registry, f"570.158.01-{K418}-rhel9.4")]
    missing = ref(registry, "570.158.01-unbuilt-rhcos4.18")
    lines = "\n".join([*(f"{image} {a}" for a in aliases), f"{missing} {ref(registry, 'unbuilt-rhel9')}"])

    proc, result = run("publish_os_tags.sh", tmp_path, ALIASES=lines)
    assert proc.returncode == 0, proc.stderr
    assert result == {aliases[0]: built, aliases[1]: built, ref(registry, "unbuilt-rhel9"): ""}
    for alias in aliases:
        assert registry.manifest_digest(REPO, alias.rsplit(":", 1)[1]) == built
    assert "skip:" in proc.stdout and "is not published" in proc.stdout

    # Again: nothing to copy, same answer.
    proc, again = run("publish_os_tags.sh", tmp_path, ALIASES=lines)
    assert proc.returncode == 0, proc.stderr
    assert again == result
    assert "copied:" not in proc.stdout


def test_publish_os_tags_with_nothing_to_do(registry: Registry, tmp_path: Path) -> None:
    proc, result = run("publish_os_tags.sh", tmp_path, ALIASES="")
    assert proc.returncode == 0, proc.stderr
    assert result == {}


@pytest.mark.parametrize(("label", "published"), [("open", True), ("proprietary", False), (None, False)])
def test_check_reads_the_module_type_label_of_a_real_image(
    registry: Registry, tmp_path: Path, label: str | None, published: bool
) -> None:
    labels = {kernel_module.LABEL: label} if label else {}
    digest = registry.push_test_image(REPO, "570.158.01-x", labels)
    image = ref(registry, "570.158.01-x")
    proc, result = run(
        "check_published_images.sh",
        tmp_path,
        IMAGES=f"{image} open\n{ref(registry, 'absent')}",
        MODULE_TYPE_LABEL=kernel_module.LABEL,
    )
    assert proc.returncode == 0, proc.stderr
    assert result == {image: digest if published else "", ref(registry, "absent"): ""}


# ----------------------------------------------------------------------------- image signatures


def signature_policy(tmp_path: Path, registry: Registry, public_key: Path) -> list[str]:
    """skopeo options requiring a sigstore signature by ``public_key`` for the driver repository (the
    policy.json OpenShift's ClusterImagePolicy amounts to), reading signatures from sigstore attachments."""
    policy = {
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {
            "docker": {
                f"{registry.host}/nvidia": [
                    {
                        "type": "sigstoreSigned",
                        "keyPath": str(public_key),
                        "signedIdentity": {"type": "matchRepository"},
                    }
                ]
            }
        },
    }
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    registries_d = tmp_path / "registries.d"
    registries_d.mkdir(exist_ok=True)
    (registries_d / "test.yaml").write_text(
        f"docker:\n  {registry.host}:\n    use-sigstore-attachments: true\n"
    )
    return ["--policy", str(tmp_path / "policy.json"), "--registries.d", str(registries_d)]


def pull_with_policy(options: list[str], image: str, dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["skopeo", *options, "copy", "--src-tls-verify=false", f"docker://{image}", f"dir:{dest}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_generated_sigstore_key_round_trips() -> None:
    from cryptography.hazmat.primitives import serialization

    from harness.signing_keys import decrypt_sigstore_key, sigstore_keys

    keys = sigstore_keys()
    private = decrypt_sigstore_key(keys)
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert public == keys.public_key


def test_push_signs_with_the_real_skopeo_or_publishes_no_tag(registry: Registry, tmp_path: Path) -> None:
    """The push script with image signing on, the real skopeo, a real registry, a fresh key.

    A skopeo built with sigstore support (quay.io/skopeo/stable, the pods' image) signs: a policy that
    requires a sigstore signature by the public key accepts the pushed image. Debian's skopeo 1.9.3 is
    built without it ("Debian-local change: sigstore disabled"): then the push must fail and leave the tag
    unpublished, since the image is pushed by digest and signed before it is tagged. Either way the policy
    refuses an unsigned image of the same repository.
    """
    from harness.signing_keys import sigstore_keys

    keys = sigstore_keys()
    files = {}
    for name, data in keys.secret_data().items():
        (tmp_path / name).write_bytes(data)
        files[name] = str(tmp_path / name)
    tag = f"570.158.01-{K418}-rhcos4.18"
    digest = registry.push_test_image("staging/driver", tag)
    proc, result = run(
        "push_driver_image.sh",
        tmp_path,
        STAGING_IMAGE=f"{registry.host}/staging/driver:{tag}",
        IMAGE=ref(registry, tag),
        EXPECTED_DIGEST=digest,
        SIGNING_KEY_FILE=files["cosign.key"],
        SIGNING_PASSPHRASE_FILE=files["cosign.password"],
        SIGNING_PUBLIC_KEY_FILE=files["cosign.pub"],
    )
    options = signature_policy(tmp_path, registry, tmp_path / "cosign.pub")
    if proc.returncode == 0:
        assert result["signed"] is True and result["digest"] == digest, result
        assert result["signing_key_sha256"] == keys.fingerprint
        assert registry.manifest_digest(REPO, tag) == digest
        accepted = pull_with_policy(options, ref(registry, tag), tmp_path / "signed")
        assert accepted.returncode == 0, accepted.stderr
    else:
        # The only reason this skopeo may refuse, in the ERROR line the report shows.
        assert "(creating signature: Debian-local change: sigstore disabled);" in proc.stderr, proc.stderr
        assert f"{ref(registry, tag)} was not tagged" in proc.stderr
        assert result is None
        assert registry.manifest_digest(REPO, tag) is None  # nothing unsigned under the tag
    registry.push_test_image(REPO, "unsigned")
    refused = pull_with_policy(options, ref(registry, "unsigned"), tmp_path / "unsigned")
    assert refused.returncode != 0
    assert "A signature was required, but no signature exists" in refused.stderr
