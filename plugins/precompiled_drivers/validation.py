"""Every user-facing input checked once, before any pod starts; errors name the field (pure).

Each validator is ``(value, field) -> normalized value`` and raises ValidationError. Values later
reach pods only as environment variables, but they still go through here first: whitespace,
control characters, non-ASCII look-alikes, shell metacharacters, ``..``, a leading ``-`` and
over-long values are refused before any pattern is tried, and the message says which.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any

from precompiled_drivers import grammar as g
from precompiled_drivers import ocp_version as ocp_version_grammar

__all__ = [
    "ValidationError",
    "arch",
    "boolean",
    "channel",
    "cuda_version",
    "digest",
    "dns_label",
    "driver_version",
    "file_path",
    "git_ref",
    "https_url",
    "image_name",
    "image_ref",
    "k8s_name",
    "kernel",
    "ocp_sort_key",
    "ocp_version",
    "operator_version",
    "positive_int",
    "repository",
    "string_list",
]

SHOWN_CHARS = 60
# The patterns and lengths live in ``grammar``, shared with the trigger form's schema.
NAME_MAX = g.NAME_MAX
REF_MAX = g.REF_MAX
SHORT_MAX = g.SHORT_MAX
SHELL_METACHARACTERS = frozenset(";|&$`'\"\\<>(){}[]*?!#~^")


class ValidationError(ValueError):
    """A rejected input: ``field``, the bad ``value`` and the ``expected`` form.

    str(): ``driver_versions[1]: got '570.1;rm -rf /' (contains shell metacharacter ';') —
    expected a driver version like 570.158.01 (NNN.NN.NN)``.
    """

    def __init__(self, field: str, value: object, expected: str, reason: str = "") -> None:
        self.field = field
        self.value = value
        self.expected = expected
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return f"{self.field}: got {show(self.value)}{why} — expected {self.expected}"


def show(value: object) -> str:
    """A bad value as shown in messages: ascii-escaped (newlines, look-alikes visible), cut to 60.

    The length of an over-long value is stated by the rejection reason, not here.
    """
    text = ascii(value[:SHOWN_CHARS]) if isinstance(value, str) else ascii(value)[:SHOWN_CHARS]
    too_long = len(value) > SHOWN_CHARS if isinstance(value, str) else len(ascii(value)) > SHOWN_CHARS
    return f"{text}..." if too_long else text


def _text(value: object, field: str, expected: str, max_len: int = SHORT_MAX) -> str:
    """Checks every string field shares, before its own pattern: the message says why."""

    def fail(reason: str) -> ValidationError:
        return ValidationError(field, value, expected, reason)

    if not isinstance(value, str):
        raise fail(f"not a string but {type(value).__name__}")
    if not value:
        raise fail("empty")
    if len(value) > max_len:
        raise fail(f"{len(value)} chars, longer than {max_len}")
    for char in value:
        if unicodedata.category(char) == "Cc":
            raise fail(f"contains control character {char!a}")
        if char.isspace():
            raise fail(f"contains whitespace {char!a}")
        if not char.isascii():
            raise fail(f"contains non-ASCII character {char!a}")
        if char in SHELL_METACHARACTERS:
            raise fail(f"contains shell metacharacter {char!r}")
    if ".." in value:
        raise fail("contains '..' (path traversal)")
    if value.startswith("-"):
        raise fail("starts with '-' (would be read as an option)")
    return value


def _matching(value: object, field: str, pattern: re.Pattern[str], expected: str, max_len: int) -> str:
    text = _text(value, field, expected, max_len)
    if not pattern.fullmatch(text):
        raise ValidationError(field, value, expected)
    return text


# ----------------------------------------------------------------------------- versions

_OCP_RE = re.compile(ocp_version_grammar.PATTERN, re.ASCII)


def ocp_version(value: object, field: str) -> str:
    """An OpenShift release version: ``4.y.z`` optionally ``-ec.N``/``-fc.N``/``-rc.N`` (ocp_version.py)."""
    return _matching(value, field, _OCP_RE, ocp_version_grammar.EXPECTED, SHORT_MAX)


def ocp_sort_key(version: str) -> tuple[Any, ...]:
    """Sort key for OpenShift versions (semver): ``4.19.0-ec.2`` < ``-fc.1`` < ``-rc.1`` < ``4.19.0``."""
    try:
        return ocp_version_grammar.sort_key(version)
    except ValueError:
        raise ValidationError("version", version, ocp_version_grammar.EXPECTED) from None


def arch(value: object, field: str) -> str:
    """A release architecture: ``x86_64``/``aarch64``; ``amd64``/``arm64`` are mapped to them."""
    expected = "x86_64 or aarch64 (amd64/arm64 accepted)"
    text = _text(value, field, expected)
    mapped = {"amd64": "x86_64", "arm64": "aarch64"}.get(text, text)
    if mapped not in ("x86_64", "aarch64"):
        raise ValidationError(field, value, expected)
    return mapped


def driver_version(value: object, field: str) -> str:
    """An NVIDIA datacenter driver version ``NNN.NN.NN`` (middle part 2-3 digits): 570.158.01."""
    return _matching(
        value,
        field,
        re.compile(g.DRIVER_VERSION),
        "a driver version like 570.158.01 (NNN.NN.NN)",
        SHORT_MAX,
    )


def cuda_version(value: object, field: str) -> str:
    """A CUDA version ``x.y.z`` (it names the nvcr.io/nvidia/cuda base image tag): 12.8.1."""
    return _matching(value, field, re.compile(g.CUDA_VERSION), "a CUDA version like 12.8.1", SHORT_MAX)


def operator_version(value: object, field: str) -> str:
    """A GPU Operator version (``v26.7.0``, ``26.7.0``) normalized to ``v26.7.0``; ``""`` = detect."""
    if value == "":
        return ""
    text = _matching(
        value,
        field,
        re.compile(g.OPERATOR_VERSION),
        "a GPU Operator version like v26.7.0, or empty to detect it",
        SHORT_MAX,
    )
    return text if text.startswith("v") else f"v{text}"


# ----------------------------------------------------------------------------- names

_DNS_LABEL = g.DNS_LABEL
_HOST = g.HOST
_PATH_COMPONENT = g.PATH_COMPONENT
_REPOSITORY_RE = re.compile(g.REPOSITORY)
_REPOSITORY_EXPECTED = (
    "a registry host[:port]/path like quay.io/acme or 127.0.0.1:5000/nvidia (lowercase path)"
)


def repository(value: object, field: str) -> str:
    """Registry ``host[:port]/path`` images are pushed to, e.g. ``quay.io/acme``."""
    return _matching(value, field, _REPOSITORY_RE, _REPOSITORY_EXPECTED, REF_MAX).rstrip("/")


def image_name(value: object, field: str) -> str:
    """The driver image name: the CRD's ``[a-zA-Z0-9-]+``, lowercase since it is a reference path."""
    return _matching(
        value,
        field,
        re.compile(g.IMAGE_NAME),
        "an image name of lowercase letters, digits and '-' like nvidia-gpu-driver "
        "(CRD pattern [a-zA-Z0-9-]+; image references must be lowercase)",
        g.IMAGE_NAME_MAX,
    )


def image_ref(value: object, field: str) -> str:
    """A full image reference with ``:tag`` and/or ``@sha256:<64 hex>``, registry host included."""
    pattern = re.compile(
        rf"{_HOST}(?:/{_PATH_COMPONENT})+(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?(?:@sha256:[a-f0-9]{{64}})?"
    )
    expected = "an image reference with a tag or digest like quay.io/openshift/origin-cli:4.18"
    text = _matching(value, field, pattern, expected, REF_MAX)
    last = text.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        raise ValidationError(field, value, expected, "no tag or digest")
    return text


def digest(value: object, field: str) -> str:
    """An image manifest digest ``sha256:<64 lowercase hex>`` (what skopeo/podman report)."""
    return _matching(
        value,
        field,
        re.compile(r"sha256:[a-f0-9]{64}"),
        "an image digest like sha256:<64 lowercase hex digits>",
        SHORT_MAX + 8,
    )


def k8s_name(value: object, field: str) -> str:
    """A DNS-1123 subdomain (Secret, ServiceAccount, ClusterPolicy names), at most 253 chars."""
    return _matching(
        value,
        field,
        re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*"),
        "a DNS-1123 name like gpu-cluster-policy (lowercase a-z, 0-9, '-', '.')",
        NAME_MAX,
    )


def dns_label(value: object, field: str) -> str:
    """A DNS-1123 label (namespace names), at most 63 chars."""
    return _matching(
        value,
        field,
        re.compile(_DNS_LABEL),
        "a DNS-1123 label like nvidia-gpu-operator (lowercase a-z, 0-9, '-', <= 63 chars)",
        63,
    )


def channel(value: object, field: str) -> str:
    """An update channel: ``stable``/``fast``/``candidate`` or ``<that|eus>-4.y``."""
    return _matching(
        value,
        field,
        re.compile(r"(?:stable|fast|candidate)(?:-\d{1,2}\.\d{1,3})?|eus-\d{1,2}\.\d{1,3}"),
        "a channel: stable, fast, candidate, or stable|fast|candidate|eus-4.y",
        SHORT_MAX,
    )


def kernel(value: object, field: str) -> str:
    """A full kernel with arch: ``5.14.0-427.37.1.el9_4.x86_64``, also ``+64k``/``_64k``/``+rt``."""
    return _matching(
        value,
        field,
        re.compile(r"\d{1,2}\.\d{1,3}\.\d{1,4}-[0-9A-Za-z_.]+\.(?:x86_64|aarch64)(?:[+_](?:64k|rt))?"),
        "a full kernel like 5.14.0-427.37.1.el9_4.x86_64 (arch x86_64/aarch64, optional +64k/+rt)",
        100,
    )


def git_ref(value: object, field: str) -> str:
    """A git branch, tag or sha: no ``..``, no leading ``-``, no ``//``, no trailing ``/``/``.lock``."""
    expected = "a git branch, tag or commit like main, v1.2 or a 40-hex sha"
    text = _matching(value, field, re.compile(g.GIT_REF), expected, g.GIT_REF_MAX)
    if "//" in text or text.endswith(("/", ".", ".lock")) or "/." in text:
        raise ValidationError(field, value, expected, "not a valid git ref name")
    return text


def file_path(value: object, field: str) -> str:
    """An absolute file path of plain characters (a CA bundle...), no traversal, at most 1024 chars."""
    expected = "an absolute file path like /etc/pki/tls/certs/ca-bundle.crt"
    return _matching(value, field, re.compile(r"/[A-Za-z0-9._/+-]*[A-Za-z0-9._+-]"), expected, 1024)


def https_url(value: object, field: str) -> str:
    """An ``https://`` URL without credentials or query; ``http://`` only to 127.0.0.1/localhost."""
    expected = "an https:// URL like https://api.openshift.com (http:// only for 127.0.0.1/localhost)"
    text = _matching(
        value,
        field,
        re.compile(rf"(?P<scheme>https?)://(?P<host>{_HOST})(?:/[A-Za-z0-9._%-]*)*"),
        expected,
        REF_MAX,
    )
    if text.startswith("http://"):
        host = text.removeprefix("http://").split("/", 1)[0].split(":", 1)[0]
        if host not in ("127.0.0.1", "localhost"):
            raise ValidationError(field, value, expected, "plain http to a remote host")
    return text


# ----------------------------------------------------------------------------- scalars, lists


# A domain label as DNS allows it in an address (any case; _DNS_LABEL is Kubernetes' lowercase one).
_DNS_LABEL_ANY_CASE = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL_RE = re.compile(rf"[A-Za-z0-9._%+-]{{1,64}}@{_DNS_LABEL_ANY_CASE}(?:\.{_DNS_LABEL_ANY_CASE})*")


def email_address(value: object, field: str) -> str:
    """An e-mail address like gpu-team@example.com (no display name, no spaces)."""
    return _matching(value, field, _EMAIL_RE, "an e-mail address like gpu-team@example.com", NAME_MAX)


def positive_int(value: object, field: str, maximum: int) -> int:
    """An integer 1..maximum (an int, or a string of digits from a form)."""
    expected = f"a whole number from 1 to {maximum}"
    if isinstance(value, bool):
        raise ValidationError(field, value, expected, "a boolean, not a number")
    if isinstance(value, str):
        number = int(_matching(value, field, re.compile(r"\d{1,9}"), expected, 9))
    elif isinstance(value, int):
        number = value
    else:
        raise ValidationError(field, value, expected, f"not a number but {type(value).__name__}")
    if not 1 <= number <= maximum:
        raise ValidationError(field, value, expected, "out of range")
    return number


def boolean(value: object, field: str) -> bool:
    """True/False; the strings ``true``/``false`` (any case) from forms are accepted too."""
    if isinstance(value, bool):
        return value
    expected = "true or false"
    text = _text(value, field, expected).lower()
    if text not in ("true", "false"):
        raise ValidationError(field, value, expected)
    return text == "true"


def string_list(
    value: object,
    field: str,
    item: Callable[[object, str], Any],
    *,
    min_items: int = 1,
    max_items: int = 64,
) -> list[Any]:
    """A list validated item by item (fields ``name[i]``); duplicates after normalizing are refused."""
    expected = f"a list of {min_items} to {max_items} items"
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
        raise ValidationError(field, value, expected, f"not a list but {type(value).__name__}")
    if not min_items <= len(value) <= max_items:
        raise ValidationError(field, value, expected, f"{len(value)} items")
    result: list[Any] = []
    for index, raw in enumerate(value):
        normalized = item(raw, f"{field}[{index}]")
        if normalized in result:
            first = result.index(normalized)
            raise ValidationError(
                f"{field}[{index}]", raw, "each value once", f"duplicate of {field}[{first}]"
            )
        result.append(normalized)
    return result
