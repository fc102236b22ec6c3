"""The one grammar of OpenShift release versions, and their order (pure).

OpenShift versions are semver (openshift/cincinnati graph nodes, ``oc adm release info``): ``4.y.z`` for
general availability and, in the candidate channels, ``4.y.z-ec.N`` (engineering candidate),
``4.y.z-fc.N`` (feature candidate) and ``4.y.z-rc.N`` (release candidate). ``packaging.version`` cannot
read ``-ec.N``/``-fc.N`` (PEP 440 knows only a/b/rc), so the order is written here on the semver rule
(semver.org section 11): compare major, minor, patch numerically; a pre-release sorts before its
release; pre-release identifiers compare one by one, numbers numerically, words in ASCII order, numbers
before words, and a shorter list first. Hence ``4.19.0-ec.2 < 4.19.0-fc.1 < 4.19.0-rc.0 < 4.19.0``.

Every place that reads or orders an OpenShift version (form, validation, release events, the update
graph, look-ahead, plan sorting, OS labels) uses this module.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = [
    "EXPECTED",
    "PATTERN",
    "PRERELEASE_KINDS",
    "SCHEMA_CORE",
    "OcpVersion",
    "is_valid",
    "parse",
    "sort_key",
]

# Numbers without leading zeros (semver 2): "4.019.0" is not a version.
_NUM = r"(?:0|[1-9][0-9]{0,%d})"
_MAJOR, _MINOR, _PATCH, _PRE_NUM = _NUM % 1, _NUM % 2, _NUM % 3, _NUM % 2
# The candidate kinds OpenShift publishes, in their semver (ASCII) order.
PRERELEASE_KINDS = ("ec", "fc", "rc")
PATTERN = (
    rf"(?P<major>{_MAJOR})\.(?P<minor>{_MINOR})\.(?P<patch>{_PATCH})"
    rf"(?:-(?P<kind>{'|'.join(PRERELEASE_KINDS)})\.(?P<number>{_PRE_NUM}))?"
)
# The same grammar without group names, for a JSON Schema ``pattern`` (ECMA-262): grammar.OCP_VERSION.
SCHEMA_CORE = re.sub(r"\?P<[a-z]+>", "?:", PATTERN)
EXPECTED = "an OpenShift version like 4.18.3 or 4.20.0-ec.1 (x.y.z, optionally -ec.N, -fc.N or -rc.N)"

_RE = re.compile(PATTERN, re.ASCII)


class OcpVersion(NamedTuple):
    """A parsed OpenShift version; ``kind`` is ``""`` for a GA release."""

    major: int
    minor: int
    patch: int
    kind: str = ""
    number: int = 0

    def key(self) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
        """The semver precedence key: a GA release sorts after all its pre-releases."""
        if not self.kind:
            return (self.major, self.minor, self.patch, 1, ())
        # Identifiers "ec" and N: a word ranks after any number (semver 11.4.3), so tag words with 1.
        return (self.major, self.minor, self.patch, 0, ((1, self.kind), (0, self.number)))

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        return f"{text}-{self.kind}.{self.number}" if self.kind else text


def parse(text: object) -> OcpVersion:
    """Parse ``4.y.z`` / ``4.y.z-ec|fc|rc.N``; raises ValueError saying what was expected."""
    match = _RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not {EXPECTED}")
    return OcpVersion(
        int(match["major"]),
        int(match["minor"]),
        int(match["patch"]),
        match["kind"] or "",
        int(match["number"]) if match["number"] else 0,
    )


def is_valid(text: object) -> bool:
    """True when ``text`` is an OpenShift version of this grammar."""
    return isinstance(text, str) and _RE.fullmatch(text) is not None


def sort_key(text: str) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
    """Sort key for version strings (semver precedence); raises ValueError for other strings."""
    return parse(text).key()
