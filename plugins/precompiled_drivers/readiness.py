"""Upgrade readiness: for each release this run planned, can the cluster move to it with precompiled drivers?

Pure. A release is *ready* when every image the GPU Operator may pull once the GPU nodes run it is in the
registry: for each of the release's kernels (one per architecture, the 64k variant when planned), the image
of the rollout driver version under its own OS tag and under every other tag the operator may take during
and after the upgrade (``plan.BuildSpec.aliases``, see ``os_tag``). The report shows one line per release
("4.18.14 (upgrade target): ready"); ``record_readiness`` writes the same as a ConfigMap in the pipeline
namespace for other tools (an upgrade gate, a dashboard) to read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from precompiled_drivers import naming, ocp_version
from precompiled_drivers.plan import BuildSpec

CONFIGMAP_NAME = "precompiled-drivers-readiness"
SHOWN_MISSING = 3  # a line names this many missing images, then counts the rest


@dataclass(frozen=True)
class ReleaseReadiness:
    """One planned release on one architecture."""

    version: str
    arch: str
    role: str  # "current release" | "upgrade target" | "requested"
    ready: bool
    images: tuple[str, ...]  # every reference the operator may pull for it
    missing: tuple[str, ...]  # those not in the registry
    reason: str = ""  # why no image was planned at all

    def line(self) -> str:
        """``4.18.14-x86_64 (upgrade target): ready`` or what is missing."""
        head = f"{self.version}-{self.arch} ({self.role})"
        if self.ready:
            return f"{head}: ready ({len(self.images)} image(s) in the registry)"
        if self.reason:
            return f"{head}: NOT ready: {self.reason}"
        more = len(self.missing) - SHOWN_MISSING
        shown = ", ".join(self.missing[:SHOWN_MISSING]) + (f" and {more} more" if more > 0 else "")
        return f"{head}: NOT ready: missing {shown}"


def _role(version: str, cluster_version: str, requested: set[str]) -> str:
    if version == cluster_version:
        return "current release"
    return "requested" if version in requested else "upgrade target"


def release_readiness(
    candidates: Iterable[BuildSpec],
    rejected: Iterable[Mapping[str, Any]],
    available: Mapping[str, str],
    *,
    driver_version: str,
    cluster_version: str,
    requested: Iterable[str] = (),
) -> list[ReleaseReadiness]:
    """Readiness of every release the builds were planned for, and of each release left out.

    ``available`` maps image references to digests (published before, pushed or copied in this run);
    ``rejected`` are ``plan.RejectedToolkit`` dicts (their release got no image); ``requested`` the
    versions the form or a release event asked for.
    """
    builds = [b for b in candidates if b.driver_version == driver_version]
    wanted = set(requested)
    per_release: dict[tuple[str, str], list[str]] = {}
    for build in builds:
        arch = naming.machine_arch(build.build_arch)
        for release in build.releases:
            per_release.setdefault((release, arch), []).extend((build.image, *build.aliases))
    out = []
    for (version, arch), images in per_release.items():
        refs = tuple(sorted(set(images)))
        missing = tuple(ref for ref in refs if not available.get(ref))
        role = _role(version, cluster_version, wanted)
        out.append(ReleaseReadiness(version, arch, role, not missing, refs, missing))
    for bad in rejected:
        version, arch = str(bad.get("version")), str(bad.get("arch"))
        if (version, arch) not in per_release:
            role = _role(version, cluster_version, wanted)
            reason = f"its driver toolkit is unusable ({bad.get('error')})"
            out.append(ReleaseReadiness(version, arch, role, False, (), (), reason))
    return sorted(out, key=lambda r: (ocp_version.sort_key(r.version), r.arch))


def summary(releases: Sequence[ReleaseReadiness], driver_version: str) -> dict[str, Any]:
    """The JSON document for XCom, the report and the ConfigMap."""
    return {"driver_version": driver_version, "releases": [asdict(r) for r in releases]}


def lines(document: Mapping[str, Any]) -> list[str]:
    """The report's lines for a ``summary`` document."""
    return [
        ReleaseReadiness(**{**r, "images": tuple(r["images"]), "missing": tuple(r["missing"])}).line()
        for r in document.get("releases") or []
    ]


def configmap(document: Mapping[str, Any], *, namespace: str, run_id: str) -> dict[str, Any]:
    """The ConfigMap ``record_readiness`` writes: one key per release (``4.18.14-x86_64: ready``) and
    the whole document as ``readiness.json``; the run that wrote it as an annotation."""
    data = {"readiness.json": json.dumps(document, indent=1, sort_keys=True)}
    for release, text in zip(document.get("releases") or [], lines(document), strict=True):
        data[f"{release['version']}-{release['arch']}"] = text.split(": ", 1)[1]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": CONFIGMAP_NAME,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "nvidia-precompiled-drivers"},
            "annotations": {
                "precompiled-drivers.github.io/run-id": run_id,
                "precompiled-drivers.github.io/driver-version": str(document.get("driver_version") or ""),
            },
        },
        "data": data,
    }
