"""Signing keys and provenance of the driver images (pure: no Airflow, no network).

Secure Boot: NVIDIA/gpu-driver-container ``rhel{9,10}/precompiled/Dockerfile`` (builder stage) copies
``private_key.priv`` and ``public_key.der`` from the build folder and signs the kernel modules with them;
without them it signs with a throw-away self-signed key that no Secure Boot node trusts
(gpu-driver-container#344). The organisation's key pair comes from a Secret (``module_signing_secret``)
whose two keys carry exactly those file names; the build step copies them into the build folder.

Image signatures: the push step signs each image with skopeo's sigstore signing
(``--sign-by-sigstore-private-key``), the signature stored in the registry next to the image (sigstore
attachments, tag ``sha256-<digest>.sig``). The key comes from a Secret shaped like the one
``cosign generate-key-pair k8s://<ns>/<name>`` creates: ``cosign.key`` (encrypted private key),
``cosign.password`` (its passphrase) and ``cosign.pub`` (the public key).

Fingerprints are lowercase hex SHA-256 of the public key file as stored in the Secret:
``sha256sum public_key.der`` (for the DER certificate this equals
``openssl x509 -inform DER -in public_key.der -noout -fingerprint -sha256`` without the colons) and
``sha256sum cosign.pub``. Only public keys are ever hashed or read outside the build and push pods.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

# File names inside the Secrets (NVIDIA's Dockerfile and cosign decide them).
MODULE_PRIVATE_KEY = "private_key.priv"
MODULE_PUBLIC_KEY = "public_key.der"
IMAGE_PRIVATE_KEY = "cosign.key"
IMAGE_PASSPHRASE = "cosign.password"  # noqa: S105 - a file name, not a password
IMAGE_PUBLIC_KEY = "cosign.pub"

_SHA256 = re.compile(r"[0-9a-f]{64}")

# Provenance labels on every image (OCI image config labels, what `skopeo inspect` shows as Labels).
LABEL_PREFIX = "io.github.precompiled-drivers."
LABEL_RELEASES = LABEL_PREFIX + "openshift-releases"
LABEL_DTK = LABEL_PREFIX + "driver-toolkit-image"
LABEL_KERNEL = LABEL_PREFIX + "kernel-version"
LABEL_DRIVER = LABEL_PREFIX + "driver-version"
LABEL_CUDA = LABEL_PREFIX + "cuda-version"
LABEL_RECIPE = LABEL_PREFIX + "nvidia-recipe"
# Set by the build itself (it alone reads the key): sha256 of public_key.der, or THROWAWAY_KEY.
LABEL_MODULE_KEY = LABEL_PREFIX + "module-signing-key-sha256"
THROWAWAY_KEY = "none (NVIDIA throw-away key: Secure Boot nodes refuse these modules)"  # as the script says


class SigningKeyMissing(ValueError):
    """A signing key the installation requires is not in place; the message names the Secret to create."""


def fingerprint(value: Any) -> str:
    """A fingerprint a pod reported, checked (``""`` = no key); anything else is refused."""
    text = str(value or "")
    if text and not _SHA256.fullmatch(text):
        raise ValueError(f"a signing key fingerprint must be 64 lowercase hex digits (sha256), got {text!r}")
    return text


def check_keys(
    keys: Mapping[str, Any] | None,
    *,
    namespace: str,
    module_secret: str,
    require_module_signing: bool,
    image_secret: str,
    sign_images: bool,
) -> dict[str, str]:
    """The public-key fingerprints inspect_cluster found, refused when a required key is missing.

    ``keys`` is inspect_cluster's ``signing_keys`` (``module``/``image``: sha256 or ``""``). Called before
    any build pod starts, so a run that must sign never builds with NVIDIA's throw-away key.
    """
    found = {name: fingerprint((keys or {}).get(name)) for name in ("module", "image")}
    missing = []
    if require_module_signing and not found["module"]:
        missing.append(
            f"Secure Boot module signing is required (PRECOMPILED_DRIVERS_REQUIRE_MODULE_SIGNING=true) but "
            f"Secret {module_secret} in namespace {namespace} has no {MODULE_PUBLIC_KEY}: create it with "
            f"`oc create secret generic {module_secret} -n {namespace} "
            f"--from-file={MODULE_PRIVATE_KEY} --from-file={MODULE_PUBLIC_KEY}` (the key pair your Secure "
            f"Boot nodes trust), or set PRECOMPILED_DRIVERS_REQUIRE_MODULE_SIGNING=false"
        )
    if sign_images and not found["image"]:
        missing.append(
            f"image signing is on (PRECOMPILED_DRIVERS_SIGN_IMAGES=true) but Secret {image_secret} in "
            f"namespace {namespace} has no {IMAGE_PUBLIC_KEY}: create it with `cosign generate-key-pair "
            f"k8s://{namespace}/{image_secret}` (or `oc create secret generic {image_secret} -n "
            f"{namespace} --from-file={IMAGE_PRIVATE_KEY} --from-file={IMAGE_PASSPHRASE} "
            f"--from-file={IMAGE_PUBLIC_KEY}`), or set PRECOMPILED_DRIVERS_SIGN_IMAGES=false"
        )
    if missing:
        raise SigningKeyMissing("no build was started: " + "; ".join(missing))
    return found


def provenance_labels(
    *,
    releases: Sequence[str],
    dtk_image: str,
    kernel: str,
    driver_version: str,
    cuda_version: str,
    recipe_url: str,
    recipe_ref: str,
) -> dict[str, str]:
    """The labels the build puts on an image, from its plan (every value already validated).

    The module type (``kernel_module.LABEL``) and the signing key's fingerprint (``LABEL_MODULE_KEY``)
    are added by the build script, which alone knows what it built with.
    """
    return {
        LABEL_RELEASES: ",".join(releases),
        LABEL_DTK: dtk_image,
        LABEL_KERNEL: kernel,
        LABEL_DRIVER: driver_version,
        LABEL_CUDA: cuda_version,
        LABEL_RECIPE: f"{recipe_url}@{recipe_ref}",
    }


def labels_env(labels: Mapping[str, str]) -> str:
    """``KEY=VALUE`` lines for the build script's ``PROVENANCE_LABELS`` (values hold no newline)."""
    for key, value in labels.items():
        if "\n" in key or "\n" in value or "=" in key:
            raise ValueError(f"label {key!r}={value!r} cannot be passed as one KEY=VALUE line")
    return "\n".join(f"{key}={value}" for key, value in labels.items())


def parse_labels(text: str) -> dict[str, str]:
    """Inverse of ``labels_env``."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def report_lines(results: Mapping[str, Any]) -> list[str]:
    """The report's signing and provenance section, from select_builds, build and push results.

    Per built image: the labels it carries (plan + module type + the key the build used), and whether
    the push signed it; nothing when the run built nothing.
    """
    selected = [i for i in (results.get("select_builds") or []) if isinstance(i, Mapping)]
    if not selected:
        return []
    built = {b.get("image"): b for b in _items(results.get("build_driver_image"))}
    pushed = {p.get("image"): p for p in _items(results.get("push_driver_image"))}
    out = ["", "Signing and provenance (fingerprints: sha256 of public_key.der / cosign.pub):"]
    for item in selected:
        env = item.get("env_vars") or {}
        image = env.get("IMAGE", "?")
        build = built.get(image)
        push = pushed.get(image)
        if build is None:
            module_key = "- (not built)"
        else:
            module_key = fingerprint(build.get("module_key_sha256")) or THROWAWAY_KEY
        if push is None:
            signed = "- (not pushed)"
        elif push.get("signed"):
            signed = f"signed (sigstore), key sha256 {fingerprint(push.get('signing_key_sha256'))}"
        else:
            signed = "not signed (PRECOMPILED_DRIVERS_SIGN_IMAGES is off)"
        out += [f"  {image}", f"    image signature: {signed}", "    labels:"]
        labels = {
            env.get("MODULE_TYPE_LABEL", "kernel-module-type"): env.get("KERNEL_MODULE_TYPE", "?"),
            LABEL_MODULE_KEY: module_key,
            **parse_labels(env.get("PROVENANCE_LABELS", "")),
        }
        out += [f"      {key}={value}" for key, value in sorted(labels.items())]
    return out


def _items(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        return [value]
    return [v for v in (value or []) if isinstance(v, Mapping)]
