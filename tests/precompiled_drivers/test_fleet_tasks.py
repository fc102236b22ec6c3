"""A fleet run's Python steps with a stand-in task instance: what they read from which group, and decide."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_fleet_plan import FLEET, K417, K418, PROD_REPO, REPO, XCOMS, config

from precompiled_drivers import fleet_tasks
from precompiled_drivers.fleet_plan import ROLLOUT_STEPS


class FakeTI:
    """The slice of the task SDK's RuntimeTaskInstance these steps use: xcom_pull/push, get_task_states."""

    def __init__(self, task_id: str, xcoms: dict[tuple[str, str], Any], states: dict[str, str] | None = None):
        self.task_id, self.xcoms, self.states, self.pushed = task_id, xcoms, states or {}, {}

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return self.xcoms.get((task_ids, key))

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = json.loads(json.dumps(value))

    def get_task_states(self, dag_id: str, run_ids: list[str], task_ids: list[str] | None = None) -> Any:
        wanted = set(task_ids) if task_ids is not None else None
        return {run_ids[0]: {t: s for t, s in self.states.items() if wanted is None or t in wanted}}


class FakeRun:
    dag_id, run_id = "nvidia_precompiled_driver", "manual__1"


@pytest.fixture(autouse=True)
def fleet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRECOMPILED_DRIVERS_CLUSTERS", json.dumps(FLEET))


def planned_releases(**overrides: Any) -> FakeTI:
    ti = FakeTI(
        "plan_releases", {(f"{name}.inspect_cluster", "return_value"): x for name, x in XCOMS.items()}
    )
    items = fleet_tasks.plan_releases(config(**overrides).to_dict(), ti)
    ti.items = items  # type: ignore[attr-defined]
    return ti


def test_plan_releases_reads_each_clusters_group_and_leaves_out_the_unreachable_one() -> None:
    ti = planned_releases()
    releases = {(v, a): clusters for v, a, _sources, clusters in ti.pushed[fleet_tasks.RELEASES_KEY]}
    assert releases == {
        ("4.17.20", "x86_64"): ["prod-b"],
        ("4.18.12", "x86_64"): ["dev"],
        ("4.18.13", "x86_64"): ["prod-a"],
    }
    assert [env["env_vars"]["RELEASE_VERSION"] for env in ti.items] == ["4.17.20", "4.18.12", "4.18.13"]
    skipped = [c for c in ti.pushed[fleet_tasks.FLEET_KEY] if c["state"] is None]
    assert [(c["cluster"]["name"], c["error"]) for c in skipped] == [
        ("lab", "cluster lab (k8s_lab) was not inspected")
    ]


def test_an_events_release_is_planned_for_the_clusters_it_names_only() -> None:
    events = [{"version": "4.18.14", "arch": "x86_64", "clusters": ["prod-a"]}]
    ti = planned_releases(include_cluster_release=False, events=events)
    assert ti.pushed[fleet_tasks.RELEASES_KEY] == [["4.18.14", "x86_64", ["event"], ["prod-a"]]]


def test_plan_builds_builds_the_shared_kernel_once_for_every_cluster_and_repository() -> None:
    planned = planned_releases()
    cfg = config().to_dict()
    toolkits = [
        {"version": v, "arch": "x86_64", "dtk_image": "quay.io/x/dtk@sha256:" + "a" * 64,
         "toolkit": {"KERNEL_VERSION": k, "RT_KERNEL_VERSION": "", "RHEL_VERSION": "9.4"}}
        for v, k in (("4.17.20", K417), ("4.18.12", K418), ("4.18.13", K418))
    ]  # fmt: skip
    ti = FakeTI("plan_builds", {("plan_releases", k): v for k, v in planned.pushed.items()})
    builds = fleet_tasks.plan_builds(cfg, toolkits, ti)
    assert sorted((c["kernel"], tuple(builds["clusters"][c["image"]])) for c in builds["candidates"]) == [
        (K417, ("prod-b",)),
        (K418, ("dev", "prod-a")),
    ]
    copies = builds["alias_env"]["ALIASES"].splitlines()
    assert any(line.split()[1].startswith(f"{PROD_REPO}/driver:") for line in copies), copies
    assert all(line.split()[0].startswith(f"{REPO}/driver:") for line in copies)


def group_states(name: str, state: str, **overrides: str) -> dict[str, str]:
    return {f"{name}.{step}": overrides.get(step, state) for step in ROLLOUT_STEPS}


def test_a_later_wave_skips_when_the_wave_before_verified_no_cluster() -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    planned = planned_releases()
    xcoms = {("plan_releases", k): v for k, v in planned.pushed.items()}
    states = group_states("dev", "skipped", plan_rollout="success", approve_rollout="success")  # rejected
    ti = FakeTI("prod-a.plan_rollout", xcoms, states)
    with pytest.raises(AirflowSkipException, match=r"wave 1 failed \(no cluster of the wave verified"):
        fleet_tasks.plan_rollout(config().to_dict(), {}, {}, [], {}, ti, FakeRun())
    unreachable = FakeTI("lab.plan_rollout", xcoms, states)
    with pytest.raises(
        AirflowSkipException, match=r"cluster lab \(k8s_lab\) was not inspected: not rolled out"
    ):
        fleet_tasks.plan_rollout(config().to_dict(), {}, {}, [], {}, unreachable, FakeRun())


def test_cluster_outcomes_read_each_group() -> None:
    states = group_states("dev", "success", roll_out_nvidia_drivers="skipped") | group_states(
        "prod-a", "success", verify_rollout="failed", check_gpu_workload="upstream_failed"
    )
    ti = FakeTI("report", {}, states | {"prod-b.plan_rollout": "running"})
    assert fleet_tasks.cluster_outcomes(ti, FakeRun(), ["dev", "prod-a", "prod-b"]) == {
        "dev": "verified",
        "prod-a": "failed",
    }
