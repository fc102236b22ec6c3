"""What the trigger has already reported (the seen-store's content), and one poll of the followed channels.

Pure but for the client it is given: the state is plain JSON, kept by the caller (the asset state store).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from precompiled_drivers import ocp_version
from precompiled_drivers.releases.graph import EXCERPT_CHARS, GraphError, Release, channel_releases

if TYPE_CHECKING:
    from precompiled_drivers.releases.client import GraphClient

FIRST_SIGHT_MODES = ("baseline", "latest")


@dataclass
class SeenReleases:
    """What the trigger has already reported, kept in durable state between polls and restarts.

    ``seen`` maps a pipeline arch to versions already known (reported or baselined); ``baselined`` holds
    the ``channel/arch`` pairs polled at least once. A version is reported once per arch, whichever
    followed channel lists it first, because the images depend on version and arch only.
    """

    seen: dict[str, set[str]]
    baselined: set[str]

    @classmethod
    def empty(cls) -> SeenReleases:
        """No history: every channel/arch is at first sight."""
        return cls(seen={}, baselined=set())

    @classmethod
    def from_json(cls, data: object) -> SeenReleases:
        """Read :meth:`to_json` output; raises ``ValueError`` on anything else."""
        if data is None:
            return cls.empty()
        ok = (
            isinstance(data, dict)
            and data.get("schema") == 1
            and isinstance(data.get("seen"), dict)
            and all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in data["seen"].values())
            and isinstance(data.get("baselined"), list)
            and all(isinstance(x, str) for x in data["baselined"])
        )
        if not ok:
            raise ValueError(f"unrecognised release state: {str(data)[:EXCERPT_CHARS]}")
        return cls(seen={k: set(v) for k, v in data["seen"].items()}, baselined=set(data["baselined"]))

    def to_json(self) -> dict[str, Any]:
        """JSON-ready, sorted (stable diffs in the state store)."""
        return {
            "schema": 1,
            "seen": {arch: sorted(v, key=ocp_version.sort_key) for arch, v in sorted(self.seen.items())},
            "baselined": sorted(self.baselined),
        }

    def observe(self, channel: str, arch: str, releases: list[Release], *, first_sight: str) -> list[Release]:
        """Record ``releases`` (a channel's, ascending) and return those to report, ascending.

        At the first sight of a channel/arch, ``baseline`` reports nothing (what exists already is not news)
        and ``latest`` reports only the newest release not yet known.
        """
        if first_sight not in FIRST_SIGHT_MODES:
            raise ValueError(f"first_sight must be one of {FIRST_SIGHT_MODES}, got {first_sight!r}")
        seen = self.seen.setdefault(arch, set())
        fresh = [r for r in releases if r.version not in seen]
        seen.update(r.version for r in releases)
        key = f"{channel}/{arch}"
        if key in self.baselined:
            return fresh
        self.baselined.add(key)
        if first_sight == "latest" and releases and fresh and fresh[-1] == releases[-1]:
            return [releases[-1]]
        return []


def poll_new_releases(
    client: GraphClient,
    channels: Sequence[str],
    arches: Sequence[str],
    state: SeenReleases,
    *,
    first_sight: str,
    followers: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[Release], list[GraphError]]:
    """One poll of every channel/arch: the releases to report (``state`` is updated) and the graph errors.

    Each channel's graph is fetched once per arch. A channel/arch whose graph fails is skipped and its
    state left alone, so it is simply retried by the next poll; the others still count. With
    ``followers`` (channel -> the fleet's clusters following it), each new release names the clusters of
    every channel that lists it in this poll: one event per release, for all of them.
    """
    new: list[Release] = []
    errors: list[GraphError] = []
    listed_in: dict[tuple[str, str], set[str]] = {}
    for channel in channels:
        for arch in arches:
            try:
                graph = client.fetch(channel, arch)
            except GraphError as exc:
                errors.append(exc)
                continue
            found = channel_releases(graph, channel)
            for release in found:
                listed_in.setdefault((release.version, arch), set()).add(channel)
            new.extend(state.observe(channel, arch, found, first_sight=first_sight))
    if followers is None:
        return new, errors
    named = []
    for release in new:
        clusters = {c for ch in listed_in[(release.version, release.arch)] for c in followers.get(ch, ())}
        named.append(dataclasses.replace(release, clusters=tuple(sorted(clusters))))
    return named, errors
