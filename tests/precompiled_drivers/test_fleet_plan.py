"""Fleet planning: inspections -> the union of releases -> each image built once -> waves in order."""

from __future__ import annotations

import json
from typing import Any

import pytest

from precompiled_drivers import fleet, fleet_plan, procedure
from precompiled_drivers.cluster import KERNEL_LABEL, OS_ID_LABEL, OS_VERSION_LABEL
from precompiled_drivers.config import run_config
from precompiled_drivers.fleet_plan import FAILED, SKIPPED, VERIFIED, FleetConflict, FleetRelease
from precompiled_drivers.plan import Toolkit
from precompiled_drivers.settings import Settings

K417 = "5.14.0-427.40.1.el9_4.x86_64"
K418 = "5.14.0-427.50.1.el9_4.x86_64"  # 4.18.12 and 4.18.13 ship the same kernel: the shared one
DTK = "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:" + "a" * 64
REPO = "quay.io/acme/nvidia"
PROD_REPO = "quay.io/acme/prod"
DRIVER = "570.158.01"

FLEET = [
    {"name": "dev", "conn_id": "k8s_dev", "channel": "fast-4.18", "wave": 1},
    {
        "name": "prod-a",
        "conn_id": "k8s_prod_a",
        "channel": "stable-4.18",
        "wave": 2,
        "target_repository": PROD_REPO,
    },
    {"name": "prod-b", "conn_id": "k8s_prod_b", "channel": "stable-4.17", "wave": 2},
    {"name": "lab", "conn_id": "k8s_lab", "channel": "stable-4.18", "wave": 3},
]
SETTINGS = Settings.from_env({"PRECOMPILED_DRIVERS_CLUSTERS": json.dumps(FLEET)}).validate()
CLUSTERS = SETTINGS.fleet()


def inspection(version: str, kernel: str, os_version: str, module_type: str = "") -> dict[str, Any]:
    """An inspect_cluster result (scripts/inspect_cluster.sh's XCom) for one GPU node."""
    driver: dict[str, Any] = {"enabled": True}
    if module_type:
        driver["kernelModuleType"] = module_type
    return {
        "nodes": [
            {
                "name": "gpu-0",
                "labels": {KERNEL_LABEL: kernel, OS_ID_LABEL: "rhcos", OS_VERSION_LABEL: os_version},
            },
            None,
        ],
        "operator": {
            "spec": {"template": {"spec": {"containers": [{"image": "nvcr.io/nvidia/gpu-operator:v26.7.0"}]}}}
        },
        "policy": {"spec": {"driver": driver}},
        "cluster_version": version,
    }


XCOMS = {
    "dev": inspection("4.18.12", K418, "4.18"),
    "prod-a": inspection("4.18.13", K418, "4.18"),
    "prod-b": inspection("4.17.20", K417, "4.17"),
    "lab": None,  # its API server did not answer
}
TOOLKITS = [
    Toolkit("4.17.20", "x86_64", DTK, K417, "", "9.4"),
    Toolkit("4.18.12", "x86_64", DTK, K418, "", "9.4"),
    Toolkit("4.18.13", "x86_64", DTK, K418, "", "9.4"),
    Toolkit("4.18.14", "x86_64", DTK, K418, "", "9.4"),
]


def config(**overrides: Any) -> Any:
    params: dict[str, Any] = {
        "driver_versions": [DRIVER],
        "cuda_version": "12.8.1",
        "repository": REPO,
        "driver_repo_ref": "main",
    }
    params.update(overrides)
    events = params.pop("events", ())
    return run_config(params, SETTINGS, events)


def test_unreachable_and_unusable_clusters_are_skipped_with_the_reason() -> None:
    bad_policy = inspection("4.18.12", K418, "4.18", module_type="closed")
    inspected = fleet_plan.inspect_results(CLUSTERS, {**XCOMS, "prod-b": bad_policy})
    by_name = {i.cluster.name: i for i in inspected}
    assert [n for n, i in by_name.items() if i.reachable] == ["dev", "prod-a"]
    assert by_name["lab"].error == "cluster lab (k8s_lab) was not inspected"
    assert "kernelModuleType is 'closed'" in by_name["prod-b"].error


def test_union_of_releases_each_once_with_the_clusters_that_need_it() -> None:
    inspected = fleet_plan.inspect_results(CLUSTERS, XCOMS)
    releases = fleet_plan.fleet_releases(
        config(ocp_versions=["4.18.12"]), inspected, upgrades={"dev": ["4.18.13"], "lab": ["4.18.14"]}
    )
    assert releases == [
        FleetRelease("4.17.20", "x86_64", ("cluster",), ("prod-b",)),
        # The form's release goes to every reachable cluster (never to the unreachable lab).
        FleetRelease("4.18.12", "x86_64", ("cluster", "form"), ("dev", "prod-a", "prod-b")),
        FleetRelease("4.18.13", "x86_64", ("cluster", "upgrade"), ("dev", "prod-a")),
        # 4.18.14 was lab's upgrade target only: lab is unreachable, nobody needs it now.
    ]


def test_an_event_release_goes_to_the_clusters_its_payload_names() -> None:
    inspected = fleet_plan.inspect_results(CLUSTERS, XCOMS)
    events = [{"version": "4.18.14", "arch": "x86_64"}, {"version": "4.17.21", "arch": "x86_64"}]
    cfg = config(include_cluster_release=False, events=events)
    releases = fleet_plan.fleet_releases(
        cfg, inspected, event_clusters={("4.18.14", "x86_64"): ["prod-a", "lab"]}
    )
    # Named clusters (lab unreachable, so prod-a only); no names (a single-cluster event): everyone.
    assert [(r.version, r.clusters) for r in releases] == [
        ("4.17.21", ("dev", "prod-a", "prod-b")),
        ("4.18.14", ("prod-a",)),
    ]


def test_one_shared_kernel_is_built_once_and_published_for_every_cluster() -> None:
    inspected = fleet_plan.inspect_results(CLUSTERS, XCOMS)
    cfg = config()
    releases = fleet_plan.fleet_releases(cfg, inspected)
    builds = fleet_plan.plan_fleet_builds(cfg, SETTINGS, inspected, releases, TOOLKITS)

    tag417 = f"{DRIVER}-{K417}-rhcos4.17"
    tag418 = f"{DRIVER}-{K418}-rhcos4.18"
    assert [(b.spec.image, b.clusters, b.spec.releases) for b in builds] == [
        (f"{REPO}/driver:{tag417}", ("prod-b",), ("4.17.20",)),
        # dev (4.18.12) and prod-a (4.18.13) run the same kernel: one build for both releases.
        (f"{REPO}/driver:{tag418}", ("dev", "prod-a"), ("4.18.12", "4.18.13")),
    ]
    # prod-a pulls from its own repository: the same image is copied there by digest, not rebuilt.
    assert builds[1].copies == (f"{PROD_REPO}/driver:{tag418}",)
    assert builds[0].copies == ()
    assert fleet_plan.copy_lines(builds) == f"{REPO}/driver:{tag418} {PROD_REPO}/driver:{tag418}"
    # Planned cluster by cluster, the same fleet would build three images.
    per_cluster = sum(
        len(fleet_plan.plan_fleet_builds(cfg, SETTINGS, [i], releases, TOOLKITS))
        for i in inspected
        if i.reachable
    )
    assert (per_cluster, len(builds)) == (3, 2)


def test_other_os_tags_of_a_shared_kernel_are_copies_not_builds() -> None:
    # prod-a's nodes report RHEL 9.4 labels: its operator (v26.7, the major-only rule) asks for rhel9.
    xcoms = {**XCOMS, "prod-a": {**XCOMS["prod-a"]}}
    xcoms["prod-a"]["nodes"] = [
        {"name": "gpu-0", "labels": {KERNEL_LABEL: K418, OS_ID_LABEL: "rhel", OS_VERSION_LABEL: "9.4"}}
    ]
    inspected = fleet_plan.inspect_results(CLUSTERS, xcoms)
    cfg = config()
    builds = fleet_plan.plan_fleet_builds(
        cfg, SETTINGS, inspected, fleet_plan.fleet_releases(cfg, inspected), TOOLKITS
    )
    [shared] = [b for b in builds if b.spec.kernel == K418]
    assert shared.clusters == ("dev", "prod-a")
    assert shared.copies == (
        f"{PROD_REPO}/driver:{DRIVER}-{K418}-rhcos4.18",  # the release's own tag, in prod-a's repository
        f"{PROD_REPO}/driver:{DRIVER}-{K418}-rhel9",  # what prod-a's nodes report now
    )
    assert len(builds) == 2


def test_different_kernel_module_types_under_one_reference_are_refused() -> None:
    xcoms = {**XCOMS, "prod-b": None, "prod-a": inspection("4.18.13", K418, "4.18", module_type="open")}
    one_repo = [dict(c, target_repository="") for c in FLEET]
    settings = Settings.from_env({"PRECOMPILED_DRIVERS_CLUSTERS": json.dumps(one_repo)}).validate()
    inspected = fleet_plan.inspect_results(settings.fleet(), xcoms)
    cfg = config(driver_versions=["550.144.03"])  # auto = proprietary below the 560 branch
    releases = fleet_plan.fleet_releases(cfg, inspected)
    with pytest.raises(FleetConflict) as err:
        fleet_plan.plan_fleet_builds(cfg, settings, inspected, releases, TOOLKITS)
    assert "clusters dev need it with proprietary kernel modules, clusters prod-a with open" in str(err.value)
    assert "own target_repository" in str(err.value)
    # With its own repository, prod-a's open-module image is a build of its own.
    inspected = fleet_plan.inspect_results(CLUSTERS, xcoms)
    builds = fleet_plan.plan_fleet_builds(cfg, SETTINGS, inspected, releases, TOOLKITS)
    assert sorted((b.clusters, b.spec.kernel_module_type) for b in builds) == [
        (("dev",), "proprietary"),
        (("prod-a",), "open"),
    ]


WAVES = fleet.waves(CLUSTERS)  # 1: dev; 2: prod-a, prod-b; 3: lab


def wave_column(outcomes: dict[str, str]) -> list[str]:
    return [state for _number, state, _why in fleet_plan.wave_states(WAVES, outcomes)]


def test_waves_roll_out_in_order_each_after_the_previous_verified() -> None:
    assert wave_column({}) == ["running", "waiting", "waiting"]
    assert wave_column({"dev": VERIFIED}) == ["verified", "running", "waiting"]
    # Within a wave, in parallel: one done, the other still runs; the next wave waits for both.
    done = {"dev": VERIFIED, "prod-a": VERIFIED}
    assert wave_column(done) == ["verified", "running", "waiting"]
    assert wave_column({**done, "prod-b": VERIFIED}) == ["verified", "verified", "running"]
    states = fleet_plan.wave_states(WAVES, {**done, "prod-b": VERIFIED, "lab": SKIPPED})
    assert states[-1] == (3, "failed", "no cluster of the wave verified (unreachable, or not rolled out)")


def test_a_failure_in_wave_one_stops_every_later_wave() -> None:
    states = fleet_plan.wave_states(WAVES, {"dev": FAILED})
    assert states == [
        (1, "failed", "dev failed"),
        (2, "stopped", "wave 1 failed (dev)"),
        (3, "stopped", "wave 1 failed (dev)"),
    ]


def test_an_unreachable_cluster_does_not_stop_its_wave_but_an_empty_wave_does() -> None:
    outcomes = {"dev": VERIFIED, "prod-a": SKIPPED, "prod-b": VERIFIED}
    assert fleet_plan.wave_states(WAVES, outcomes)[1] == (2, "verified", "prod-b verified; prod-a skipped")
    assert wave_column(outcomes)[2] == "running"  # lab's turn
    # A wave with nothing verified never lets production go ahead unchecked.
    assert fleet_plan.wave_states(WAVES, {"dev": SKIPPED})[1] == (2, "stopped", "wave 1 verified no cluster")


def test_mapped_task_counts_cover_every_step_of_the_procedure() -> None:
    counts = fleet_plan.mapped_task_counts(clusters=4, releases=3, builds=2, copies=1)
    assert tuple(counts) == procedure.TASK_IDS
    assert counts["inspect_cluster"] == counts["plan_rollout"] == counts["verify_rollout"] == 4
    assert counts["build_driver_image"] == 2
    assert sum(counts.values()) == 1 + 4 + 1 + 3 + 3 + 1 + 1 + 1 + 2 + 2 + 1 + 9 * 4 + 1


@pytest.mark.parametrize(
    ("states", "outcome"),
    [
        # fleet_tasks.cluster_outcomes reads one cluster group's states, step -> state.
        ({s: "success" for s in fleet_plan.ROLLOUT_STEPS} | {"roll_out_nvidia_drivers": "skipped"}, VERIFIED),
        (
            {s: "skipped" for s in fleet_plan.ROLLOUT_STEPS}
            | {"plan_rollout": "success", "roll_out_nvidia_drivers": "success"},
            VERIFIED,
        ),
        (
            {"plan_rollout": "success", "verify_rollout": "failed", "check_gpu_workload": "upstream_failed"},
            FAILED,
        ),
        ({"plan_rollout": "failed"}, FAILED),  # the gate refused
        ({"plan_rollout": "upstream_failed"}, FAILED),  # an earlier wave failed
        ({s: "skipped" for s in fleet_plan.ROLLOUT_STEPS}, SKIPPED),  # not inspected
        (
            {s: "skipped" for s in fleet_plan.ROLLOUT_STEPS}
            | {"plan_rollout": "success", "approve_rollout": "success"},
            SKIPPED,
        ),
        ({"plan_rollout": "success", "patch_cluster_policy": "success", "verify_rollout": "running"}, None),
        ({}, None),
    ],
)
def test_a_clusters_outcome_for_the_wave_gate(states: dict[str, str], outcome: str | None) -> None:
    assert fleet_plan.cluster_outcome(states) == outcome
