"""The step registry: task ids of one cluster and of a fleet's cluster groups."""

from __future__ import annotations

import pytest

from precompiled_drivers import procedure


def test_a_fleets_grouped_task_ids_name_their_step_and_their_siblings() -> None:
    assert procedure.step_of("prod-a.verify_rollout") == "verify_rollout"
    assert procedure.step_of("verify_rollout") == "verify_rollout"
    assert procedure.sibling("prod-a.verify_rollout", "patch_cluster_policy") == "prod-a.patch_cluster_policy"
    assert procedure.sibling("verify_rollout", "patch_cluster_policy") == "patch_cluster_policy"


def test_check_order_accepts_one_cluster_and_a_fleet_of_groups() -> None:
    steps = procedure.TASK_IDS
    procedure.check_order(steps)
    inspect, rollout = steps.index("inspect_cluster"), steps.index("plan_rollout")
    per_cluster = steps[rollout:-1]
    fleet = [
        steps[0],
        *(f"{name}.inspect_cluster" for name in ("dev", "prod")),
        *steps[inspect + 1 : rollout],
        *(f"{name}.{step}" for name in ("dev", "prod") for step in per_cluster),
        "report",
    ]
    procedure.check_order(fleet)


def test_check_order_names_a_missing_or_unregistered_step() -> None:
    with pytest.raises(ValueError, match=r"missing \['report'\], not registered \['deploy'\]"):
        procedure.check_order([*procedure.TASK_IDS[:-1], "dev.deploy"])
    with pytest.raises(ValueError, match="in order"):
        procedure.check_order([procedure.TASK_IDS[1], procedure.TASK_IDS[0], *procedure.TASK_IDS[2:]])
