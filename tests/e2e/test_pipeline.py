"""The real DAG, end to end, on the local test cluster with real kubectl, skopeo and registry."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import yaml

from harness.crd_schema import validate_policy
from harness.dag_runner import task_states, xcom

pytestmark = pytest.mark.e2e
# NVIDIA's ClusterPolicy CRD, beside the repository (never copied into it).
CRD = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "nvidia.com_clusterpolicies.yaml"


def assert_valid_against_crd(policy: dict) -> None:
    """The patched policy must satisfy NVIDIA's real CRD schema (checked when the reference is present)."""
    if not CRD.exists():
        warnings.warn(f"{CRD} not found: CRD validation not run", stacklevel=2)
        return
    validate_policy(policy, yaml.safe_load(CRD.read_text()))


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
    assert_valid_against_crd(world.cluster.store.get_object("ClusterPolicy", "gpu-cluster-policy"))
    verified = xcom(dag_run, "verify_rollout")
    assert verified["verified"] is True
    assert sorted(verified["kernels"]) == ["5.14.0-427.50.1.el9_4.x86_64", "5.14.0-570.12.1.el9_6.x86_64"]
    assert verified["kernels"]["5.14.0-427.50.1.el9_4.x86_64"]["daemonset"].startswith(
        "nvidia-driver-daemonset-5.14.0-427.50.1.el9.4-"
    )
    report = xcom(dag_run, "report")
    print(report)
    assert "built+pushed" in report
    # Upgrade readiness, in the report and as a ConfigMap in the pipeline namespace (#17.6).
    assert "  4.19.3-x86_64 (requested): ready (2 image(s) in the registry)" in report
    assert "recorded in ConfigMap nvidia-precompiled-drivers/precompiled-drivers-readiness" in report
    cm = world.cluster.store.get_object(
        "ConfigMap", "precompiled-drivers-readiness", "nvidia-precompiled-drivers"
    )
    assert cm["data"]["4.18.12-x86_64"] == "ready (2 image(s) in the registry)"
    assert cm["data"]["4.19.3-x86_64"] == "ready (2 image(s) in the registry)"
    assert json.loads(cm["data"]["readiness.json"])["driver_version"] == "570.158.01"
    assert cm["metadata"]["annotations"]["precompiled-drivers.github.io/run-id"] == dag_run.run_id


def test_second_run_rebuilds_nothing(world, run_dag) -> None:
    first = run_dag()
    assert first.state == "success", task_states(first)
    built = list(world.builds)
    driver = world.policy_driver()

    second = run_dag()
    states = task_states(second)
    assert second.state == "success", states
    assert world.builds == built, "a second run must not rebuild published tags"
    assert states["build_driver_image"] == "skipped"
    assert world.policy_driver() == driver
    assert "exists, skipped" in xcom(second, "report")


def test_coverage_gate_blocks_patch_when_a_node_kernel_has_no_image(world, run_dag) -> None:
    # A node already runs 4.19.5's kernel, but the run builds only for 4.18.12 and 4.19.3.
    world.cluster.store.add_node("gpu-worker-3", "5.14.0-570.19.1.el9_6.x86_64", "rhel", "9.6", gpu=True)
    before = world.policy_driver()

    dag_run = run_dag(ocp_versions=["4.19.3"])
    states = task_states(dag_run)
    assert dag_run.state == "failed"
    assert states["plan_rollout"] == "failed"
    assert states["patch_cluster_policy"] == "upstream_failed"
    assert states["rollback_cluster_policy"] == "skipped"
    assert world.policy_driver() == before
    # The gate refused, yet readiness is recorded: the releases built for are ready, and the upgrade
    # is the rollout the gate stopped.
    assert states["record_readiness"] == "success"
    cm = world.cluster.store.get_object(
        "ConfigMap", "precompiled-drivers-readiness", "nvidia-precompiled-drivers"
    )
    assert cm["data"]["4.19.3-x86_64"] == "ready (2 image(s) in the registry)"
    assert "4.19.3-x86_64 (requested): ready" in xcom(dag_run, "report")


def test_verify_failure_rolls_back_the_exact_previous_spec(world, run_dag) -> None:
    # The form claims operator v26.7 (OS tags rhcos4.18 and rhel9) while the cluster runs v25.10, which
    # lists the rhel 9.6 node first and so looks for '-rhel9.6' on every kernel: a tag nobody pushed.
    world.cluster.operator.version = "v25.10.0"
    world.cluster.operator.list_order = "reverse"
    policy = world.cluster.store.get_object("ClusterPolicy", "gpu-cluster-policy")
    # The API server serialises objects with sorted keys (kubectl re-encodes patches the same way), so
    # "byte for byte" is the canonical form a client reads back.
    before = json.dumps(policy["spec"]["driver"], sort_keys=True)

    dag_run = run_dag(operator_version="v26.7.0", verify_timeout_minutes=0.25)
    states = task_states(dag_run)
    assert dag_run.state == "failed"
    assert states["patch_cluster_policy"] == "success"
    assert states["verify_rollout"] == "failed"
    assert states["rollback_cluster_policy"] == "success"
    policy = world.cluster.store.get_object("ClusterPolicy", "gpu-cluster-policy")
    assert json.dumps(policy["spec"]["driver"], sort_keys=True) == before
    assert xcom(dag_run, "rollback_cluster_policy")["rolled_back"] is True


def test_dry_run_prints_the_patch_and_touches_nothing(world, run_dag) -> None:
    before = world.policy_driver()
    dag_run = run_dag(dry_run=True)
    assert dag_run.state == "success", task_states(dag_run)
    assert world.policy_driver() == before
    assert xcom(dag_run, "patch_cluster_policy")["patched"] is False
