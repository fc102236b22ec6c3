"""Label and field selectors, parsed and matched the way the API server documents them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Matcher = Callable[[dict[str, Any]], bool]

# One requirement of a label selector: `k`, `!k`, `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`.
_SET_RE = re.compile(r"^\s*(?P<key>[^\s!=(),]+)\s+(?P<op>in|notin)\s*\((?P<vals>[^)]*)\)\s*$")
_CMP_RE = re.compile(r"^\s*(?P<key>[^\s!=(),]+)\s*(?P<op>==|!=|=)\s*(?P<val>[^\s,()]*)\s*$")
_EXISTS_RE = re.compile(r"^\s*(?P<neg>!?)\s*(?P<key>[^\s!=(),]+)\s*$")


class SelectorError(ValueError):
    """A selector the server cannot parse (answered with 400 like the real server)."""


def _split_requirements(selector: str) -> list[str]:
    """Split on commas that are not inside a ``(...)`` value set."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p.strip()]


def _label_requirement(text: str) -> Callable[[dict[str, str]], bool]:
    if m := _SET_RE.match(text):
        key, op = m["key"], m["op"]
        values = {v.strip() for v in m["vals"].split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if m := _CMP_RE.match(text):
        key, op, val = m["key"], m["op"], m["val"]
        if op == "!=":
            # Matches objects without the key too, as Kubernetes does.
            return lambda labels: labels.get(key) != val
        return lambda labels: labels.get(key) == val
    if m := _EXISTS_RE.match(text):
        key, negated = m["key"], bool(m["neg"])
        if negated:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise SelectorError(f"unable to parse requirement: {text!r}")


def label_matcher(selector: str | None) -> Matcher:
    """Return a predicate over whole objects for a ``labelSelector`` query value."""
    if not selector:
        return lambda obj: True
    reqs = [_label_requirement(part) for part in _split_requirements(selector)]

    def match(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(req(labels) for req in reqs)

    return match


def _field_value(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return str(cur).lower()
    return str(cur)


def field_matcher(selector: str | None) -> Matcher:
    """Return a predicate for a ``fieldSelector`` (``a.b=v``, ``a.b==v``, ``a.b!=v``, comma = AND).

    Any dotted path is accepted (the real server allows only a few per kind; being lenient here
    never makes a client call fail that would pass on a real cluster for the fields clients use).
    """
    if not selector:
        return lambda obj: True
    reqs: list[tuple[str, bool, str]] = []
    for part in _split_requirements(selector):
        m = _CMP_RE.match(part)
        if not m:
            raise SelectorError(f"invalid field selector: {part!r}")
        reqs.append((m["key"], m["op"] == "!=", m["val"]))

    def match(obj: dict[str, Any]) -> bool:
        return all((_field_value(obj, key) == val) != negated for key, negated, val in reqs)

    return match
