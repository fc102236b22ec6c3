"""The one OpenShift version grammar and its semver order, as every consumer uses it.

The candidate-channel graph below has the shape of Cincinnati's recorded ``candidate-4.12`` multi
response (openshift/cincinnati e2e/tests/testdata/..._candidate-4.12_multi_v1.json: ``version``,
``nodes`` with ``payload`` and ``metadata`` channels/manifestref/architecture, index-pair ``edges``,
empty ``conditionalEdges``); the versions are those a candidate channel carries before a GA
(engineering, feature and release candidates), which that old recording predates.
"""

from __future__ import annotations

import hashlib
import re

import jsonschema
import pytest

from precompiled_drivers import grammar, ocp_version, plan
from precompiled_drivers import validation as v
from precompiled_drivers.config import Target
from precompiled_drivers.form import form_params
from precompiled_drivers.releases import graph as releases
from precompiled_drivers.releases import schedule
from precompiled_drivers.settings import Settings

OCP_VERSION_PATTERN = grammar.OCP_VERSION.schema_pattern()

IN_ORDER = [
    "4.19.9",
    "4.19.10",
    "4.20.0-ec.0",
    "4.20.0-ec.2",
    "4.20.0-ec.10",
    "4.20.0-fc.0",
    "4.20.0-fc.3",
    "4.20.0-rc.0",
    "4.20.0-rc.1",
    "4.20.0",
    "4.20.1",
    "4.21.0-ec.1",
]


def candidate_graph(versions: list[str], edges: list[tuple[str, str]], channel: str) -> dict:
    """A Cincinnati v1 document in the recorded candidate-channel format (nodes unsorted, as served)."""
    order = list(reversed(versions))
    idx = {ver: i for i, ver in enumerate(order)}

    def digest(ver: str) -> str:
        return hashlib.sha256(ver.encode()).hexdigest()

    return {
        "version": 1,
        "nodes": [
            {
                "version": ver,
                "payload": f"quay.io/openshift-release-dev/ocp-release@sha256:{digest(ver)}",
                "metadata": {
                    "io.openshift.upgrades.graph.release.channels": channel,
                    "io.openshift.upgrades.graph.release.manifestref": f"sha256:{digest(ver)}",
                    "release.openshift.io/architecture": "multi",
                },
            }
            for ver in order
        ],
        "edges": [[idx[a], idx[b]] for a, b in edges],
        "conditionalEdges": [],
    }


def test_semver_order_ec_fc_rc_ga() -> None:
    shuffled = IN_ORDER[5:] + IN_ORDER[:5][::-1]
    assert sorted(shuffled, key=ocp_version.sort_key) == IN_ORDER
    # Numbers compare as numbers inside a pre-release (ec.10 after ec.2), not as text.
    assert ocp_version.sort_key("4.20.0-ec.10") > ocp_version.sort_key("4.20.0-ec.2")
    assert ocp_version.parse("4.20.0-fc.3") == ocp_version.OcpVersion(4, 20, 0, "fc", 3)
    assert ocp_version.parse("4.20.0").kind == ""
    assert str(ocp_version.parse("4.20.0-rc.1")) == "4.20.0-rc.1"


def test_every_sorter_uses_the_same_order() -> None:
    shuffled = list(reversed(IN_ORDER))
    assert sorted(shuffled, key=ocp_version.sort_key) == IN_ORDER
    from precompiled_drivers.config import RunConfig

    config = RunConfig(
        targets=tuple(Target(ver, "x86_64") for ver in shuffled),
        arches=("x86_64",),
        driver_versions=("570.158.01",),
        rollout_driver_version="570.158.01",
        cuda_version="12.8.1",
        repository="quay.io/acme",
        image_name="driver",
        driver_repo_ref="main",
        operator_version="",
        include_cluster_release=False,
        force_rebuild=False,
        dry_run=False,
        verify_timeout_seconds=60,
    )
    assert [t.version for t in plan.release_targets(config, "")] == IN_ORDER


@pytest.mark.parametrize(
    "bad",
    [
        "4.19",
        "4.19.0-beta.1",  # not a kind OpenShift publishes
        "4.19.0-rc",
        "4.19.0-rc.01",  # semver: no leading zeros
        "4.019.0",
        "v4.19.0",
        "4.19.0+build.1",
        "4.19.\u0661\u0660",  # Arabic-Indic digits are digits to \d, not to OpenShift
        "4.19.0-ec.1\n",
        "",
        None,
    ],
)
def test_outside_the_grammar(bad: object) -> None:
    assert not ocp_version.is_valid(bad)
    with pytest.raises(ValueError, match="OpenShift version like"):
        ocp_version.parse(bad)
    with pytest.raises(v.ValidationError):
        v.ocp_version(bad, "ocp_versions[0]")


def test_form_accepts_prereleases_and_refuses_other_suffixes() -> None:
    item_schema = form_params(Settings())["ocp_versions"].schema
    jsonschema.validate(["4.20.0-ec.1", "4.20.0-fc.0", "4.20.0-rc.2", "4.19.3"], item_schema)
    for bad in ("4.20.0-beta.1", "4.20.0-ec", "4.20", "4.20.0-rc.1; rm -rf /"):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate([bad], item_schema)
    # The JSON Schema pattern and the Python grammar are one rule.
    for ver in [*IN_ORDER, "4.20.0-beta.1", "4.019.0"]:
        assert bool(re.search(OCP_VERSION_PATTERN, ver)) == ocp_version.is_valid(ver), ver
    assert not re.search(OCP_VERSION_PATTERN, "4.19.3\n")  # Python's '$' alone would let this through


def test_naming_reads_prereleases_for_os_labels() -> None:
    from precompiled_drivers import naming

    assert naming.release_os_labels("4.18.0-ec.3", "9.4") == ("rhcos", "4.18")
    assert naming.release_os_labels("4.20.0-fc.1", "9.6") == ("rhel", "9.6")


def test_candidate_graph_with_ec_fc_rc_is_read_in_order() -> None:
    versions = ["4.20.0-ec.2", "4.20.0-fc.0", "4.20.0-rc.0", "4.20.0-rc.1", "4.20.0"]
    doc = candidate_graph(
        versions,
        [
            ("4.20.0-ec.2", "4.20.0-fc.0"),
            ("4.20.0-fc.0", "4.20.0-rc.0"),
            ("4.20.0-rc.0", "4.20.0-rc.1"),
            ("4.20.0-rc.0", "4.20.0"),
            ("4.20.0-rc.1", "4.20.0"),
        ],
        "candidate-4.20",
    )
    graph = releases.parse_graph(doc, channel="candidate-4.20", arch="x86_64")
    assert graph.skipped == ()
    assert [r.version for r in releases.channel_releases(graph, "candidate-4.20")] == versions
    # Look-ahead from a release candidate: newest first, the GA before the other candidate.
    found = releases.upgrade_targets(graph, "4.20.0-rc.0", limit=3)
    assert [(r.version, cond) for r, cond in found] == [("4.20.0", False), ("4.20.0-rc.1", False)]


def test_one_unreadable_node_leaves_the_rest_of_the_graph_readable(caplog: pytest.LogCaptureFixture) -> None:
    versions = ["4.20.0-ec.1", "4.20.0-rc.0", "4.20.0"]
    edges = [("4.20.0-ec.1", "4.20.0-rc.0"), ("4.20.0-rc.0", "4.20.0")]
    doc = candidate_graph(versions, edges, "candidate-4.20")
    # A node OpenShift's grammar does not know, with an edge to and from it.
    doc["nodes"].append({"version": "4.20.0-0.nightly-2026-01-01", "payload": "x", "metadata": {}})
    odd = len(doc["nodes"]) - 1
    doc["edges"] += [[odd, 0], [2, odd]]
    doc["conditionalEdges"] = [
        {"edges": [{"from": "4.20.0-0.nightly-2026-01-01", "to": "4.20.0"}], "risks": [{"name": "R"}]}
    ]
    graph = releases.parse_graph(doc, channel="candidate-4.20", arch="x86_64")
    assert graph.skipped == ("4.20.0-0.nightly-2026-01-01",)
    assert [r.version for r in releases.channel_releases(graph, "candidate-4.20")] == versions
    assert len(graph.edges) == 2 and graph.conditional_edges == ()
    assert "4.20.0-0.nightly-2026-01-01" in caplog.text


def test_events_with_prereleases_become_targets_in_order() -> None:
    events = {
        "openshift-releases": [
            {"extra": {"payload": {"version": ver, "arch": "x86_64"}}}
            for ver in ["4.20.0", "4.20.0-rc.1", "4.20.0-ec.2", "4.20.0-fc.0"]
        ]
    }
    found = schedule.targets_from_events(events)
    assert [r.version for r in found] == ["4.20.0-ec.2", "4.20.0-fc.0", "4.20.0-rc.1", "4.20.0"]
