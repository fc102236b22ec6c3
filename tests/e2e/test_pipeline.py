"""The real DAG, end to end, on the local test cluster with real kubectl, skopeo and registry."""

from __future__ import annotations

import pytest

from dag_runner import task_states, xcom

pytestmark = pytest.mark.e2e


def test_happy_path_two_releases_two_drivers(world, run_dag) -> None:
    dag_run = run_dag(ocp_versions=["4.19.3"], driver_versions=["570.158.01", "580.65.06"])
    states = task_states(dag_run)
    assert dag_run.state == "success", states
    # cluster release 4.18.12 (from ClusterVersion) + 4.19.3 from the form, two drivers each
    assert len(world.builds) == 4
    driver = world.policy_driver()
    assert driver["usePrecompiled"] is True
    assert driver["repository"] == world.repository
    assert driver["image"] == "driver"
    assert driver["version"] == "570.158.01"
    verified = xcom(dag_run, "verify_rollout")
    assert verified["verified"] is True
    assert sorted(verified["kernels"]) == ["5.14.0-427.50.1.el9.4", "5.14.0-570.12.1.el9.6"]
    report = xcom(dag_run, "report")
    print(report)
    assert "built+pushed" in report
