"""Every user-facing input checked once, before any pod starts; errors name the field (pure).

Each validator is ``(value, field) -> normalized value`` and raises ValidationError. Values later
reach pods only as environment variables, but they still go through here first: whitespace,
control characters, non-ASCII look-alikes, shell metacharacters, ``..``, a leading ``-`` and
over-long values are refused before any pattern is tried, and the message says which.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

from precompiled_drivers import grammar as g

__all__ = [
    "ValidationError",
    "arch",
    "boolean",
    "conn_id",
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
    "ocp_version",
    "operator_version",
    "positive_int",
    "repository",
    "string_list",
]

SHOWN_CHARS = 60
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


def _text(value: object, field: str, expected: str, max_len: int = g.SHORT_MAX) -> str:
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


def _matching(value: object, field: str, grammar: g.Grammar) -> str:
    """``value`` when it has ``grammar``'s shape, after the shared checks; the refusal says which."""
    text = _text(value, field, grammar.expected, grammar.max_len)
    if not grammar.regex.fullmatch(text):
        raise ValidationError(field, value, grammar.expected)
    return text


# ----------------------------------------------------------------------------- versions


def ocp_version(value: object, field: str) -> str:
    """An OpenShift release version: ``4.y.z`` optionally ``-ec.N``/``-fc.N``/``-rc.N`` (ocp_version.py)."""
    return _matching(value, field, g.OCP_VERSION)


def arch(value: object, field: str) -> str:
    """A release architecture: ``x86_64``/``aarch64``; ``amd64``/``arm64`` are mapped to them."""
    mapped = g.canonical_arch(_text(value, field, g.ARCH_EXPECTED))
    if mapped is None:
        raise ValidationError(field, value, g.ARCH_EXPECTED)
    return mapped


def driver_version(value: object, field: str) -> str:
    """An NVIDIA datacenter driver version ``NNN.NN.NN`` (middle part 2-3 digits): 570.158.01."""
    return _matching(value, field, g.DRIVER_VERSION)


def cuda_version(value: object, field: str) -> str:
    """A CUDA version ``x.y.z`` (it names the nvcr.io/nvidia/cuda base image tag): 12.8.1."""
    return _matching(value, field, g.CUDA_VERSION)


def operator_version(value: object, field: str) -> str:
    """A GPU Operator version (``v26.7.0``, ``26.7.0``) normalized to ``v26.7.0``; ``""`` = detect."""
    if value == "":
        return ""
    text = _matching(value, field, g.OPERATOR_VERSION)
    return text if text.startswith("v") else f"v{text}"


# ----------------------------------------------------------------------------- names


def repository(value: object, field: str) -> str:
    """Registry ``host[:port]/path`` images are pushed to, e.g. ``quay.io/acme``."""
    return _matching(value, field, g.REPOSITORY)


def image_name(value: object, field: str) -> str:
    """The driver image name: the CRD's ``[a-zA-Z0-9-]+``, lowercase since it is a reference path."""
    return _matching(value, field, g.IMAGE_NAME)


def image_ref(value: object, field: str) -> str:
    """A full image reference with ``:tag`` and/or ``@sha256:<64 hex>``, registry host included."""
    text = _matching(value, field, g.IMAGE_REF)
    last = text.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        raise ValidationError(field, value, g.IMAGE_REF.expected, "no tag or digest")
    return text


def digest(value: object, field: str) -> str:
    """An image manifest digest ``sha256:<64 lowercase hex>`` (what skopeo/podman report)."""
    return _matching(value, field, g.DIGEST)


def k8s_name(value: object, field: str) -> str:
    """A DNS-1123 subdomain (Secret, ServiceAccount, ClusterPolicy names), at most 253 chars."""
    return _matching(value, field, g.DNS_SUBDOMAIN)


def nvidia_driver_name(value: object, field: str) -> str:
    """The name of an NVIDIADriver resource (a DNS-1123 subdomain), at most 253 chars."""
    return _matching(value, field, g.NVIDIA_DRIVER_NAME)


def dns_label(value: object, field: str) -> str:
    """A DNS-1123 label (namespace names), at most 63 chars."""
    return _matching(value, field, g.DNS_LABEL)


def conn_id(value: object, field: str) -> str:
    """An Airflow connection id (letters, digits, ``_``, ``-``, ``.``), at most 250 chars."""
    return _matching(value, field, g.CONN_ID)


def kernel(value: object, field: str) -> str:
    """A full kernel with arch: ``5.14.0-427.37.1.el9_4.x86_64``, also ``+64k``/``_64k``/``+rt``."""
    return _matching(value, field, g.KERNEL)


def rhel_version(value: object, field: str) -> str:
    """A RHEL ``x.y`` (the Driver Toolkit's RHEL_VERSION): 9.4."""
    return _matching(value, field, g.RHEL_VERSION)


def git_ref(value: object, field: str) -> str:
    """A git branch, tag or sha: no ``..``, no leading ``-``, no ``//``, no trailing ``/``/``.lock``."""
    return _matching(value, field, g.GIT_REF)


def file_path(value: object, field: str) -> str:
    """An absolute file path of plain characters (a CA bundle...), no traversal, at most 1024 chars."""
    return _matching(value, field, g.FILE_PATH)


def https_url(value: object, field: str) -> str:
    """An ``https://`` URL without credentials or query; ``http://`` only to 127.0.0.1/localhost."""
    text = _matching(value, field, g.HTTPS_URL)
    if text.startswith("http://"):
        host = text.removeprefix("http://").split("/", 1)[0].split(":", 1)[0]
        if host not in ("127.0.0.1", "localhost"):
            raise ValidationError(field, value, g.HTTPS_URL.expected, "plain http to a remote host")
    return text


# ----------------------------------------------------------------------------- scalars, lists


def email_address(value: object, field: str) -> str:
    """An e-mail address like gpu-team@example.com (no display name, no spaces)."""
    return _matching(value, field, g.EMAIL)


def command_words(value: object, field: str) -> list[str]:
    """A command run without a shell, split on single spaces ("" = none: the image's own entrypoint).

    Each word must be a plain ``COMMAND_WORD``; options (``-L``) are what a command takes, so unlike a
    name a word may start with '-'.
    """
    expected = g.COMMAND_WORD.expected
    if not isinstance(value, str):
        raise ValidationError(field, value, expected, f"not a string but {type(value).__name__}")
    if not value:
        return []
    if len(value) > g.COMMAND_WORD.max_len:
        raise ValidationError(field, value, expected, f"longer than {g.COMMAND_WORD.max_len} chars")
    words = value.split(" ")
    if len(words) > g.COMMAND_MAX_WORDS:
        raise ValidationError(field, value, expected, f"more than {g.COMMAND_MAX_WORDS} words")
    for word in words:
        if not word:
            raise ValidationError(field, value, expected, "words must be separated by exactly one space")
        if not g.COMMAND_WORD.regex.fullmatch(word):
            raise ValidationError(field, value, expected, f"the word {word!r} holds another character")
    if words[0].startswith("-"):
        raise ValidationError(field, value, expected, "starts with an option, not a command")
    return words


def positive_int(value: object, field: str, maximum: int) -> int:
    """An integer 1..maximum (an int, or a string of digits from a form)."""
    expected = f"a whole number from 1 to {maximum}"
    if isinstance(value, bool):
        raise ValidationError(field, value, expected, "a boolean, not a number")
    if isinstance(value, str):
        number = int(_matching(value, field, g.Grammar(r"[0-9]{1,9}", expected, "30", 9)))
    elif isinstance(value, int):
        number = value
    else:
        raise ValidationError(field, value, expected, f"not a number but {type(value).__name__}")
    if not 1 <= number <= maximum:
        raise ValidationError(field, value, expected, "out of range")
    return number


def boolean(value: object, field: str) -> bool:
    """True/False; the strings ``true``/``false`` (any case) from API callers are accepted too.

    Installation settings and Variables take more words (``grammar.boolean_word``), already read.
    """
    if isinstance(value, bool):
        return value
    expected = "true or false"
    word = g.JSON_BOOLEAN_WORDS.get(_text(value, field, expected).lower())
    if word is None:
        raise ValidationError(field, value, expected)
    return word


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
