"""Pod contract of verify_rollout: what to expect per kernel, and PATCHED_AT from the patch's result."""

from __future__ import annotations

from typing import Any

from step_pods import assert_common, assert_restricted, env_of, pod_of, secret_mounts

from precompiled_drivers.settings import Settings
from precompiled_drivers.steps import verify_rollout as step
from precompiled_drivers.steps.base import StepPodOperator

EXPECTED = (
    "5.14.0-427.50.1.el9_4.x86_64 nvidia-driver-daemonset-5.14.0-427.50.1.el9.4-rhcos4.18 "
    "quay.io/acme/nvidia/driver:570.158.01-5.14.0-427.50.1.el9_4.x86_64-rhcos4.18 "
    "sha256:" + "1" * 64
)


class FakeTI:
    """Just enough of a TaskInstance for Jinja's ``ti.xcom_pull``."""

    def __init__(self, value: dict[str, Any], task_id: str = "verify_rollout") -> None:
        self.value = value
        self.task_id = task_id
        self.asked: list[str] = []

    def xcom_pull(self, task_ids: str | None = None, **_: Any) -> dict[str, Any]:
        self.asked.append(str(task_ids))
        return self.value


def rendered(op: StepPodOperator, patched_at: str, task_id: str = "verify_rollout") -> FakeTI:
    ti = FakeTI({"patched": True, "patched_at": patched_at, "previous_driver": {}}, task_id)
    op.render_template_fields({"ti": ti})
    return ti


def test_pod_contract_with_patched_at_from_the_patch_step() -> None:
    settings = Settings()
    op = step.task(settings, step.env(settings, EXPECTED, 1800, dry_run=False))
    ti = rendered(op, "2025-01-31T12:00:00Z")
    assert ti.asked == ["patch_cluster_policy"]
    pod = pod_of(op)
    assert_common(
        pod,
        task_id="verify_rollout",
        service_account="verify",
        api_access=True,
        image=Settings().cli_image,
        script_name="verify_rollout.sh",
    )
    assert_restricted(pod)
    assert env_of(pod) == {
        "HOME": "/tmp",
        "STEP": "verify_rollout",
        "POLICY_NAME": "gpu-cluster-policy",
        "OPERATOR_NAMESPACE": "nvidia-gpu-operator",
        "EXPECTED": EXPECTED,
        "TIMEOUT_SECONDS": "1800",
        "POLL_SECONDS": "2",
        "DRY_RUN": "false",
        "PATCHED_AT": "2025-01-31T12:00:00Z",
    }
    assert secret_mounts(pod) == {}
    assert op.retries == 0  # the script already waits; a retry would double the timeout


def test_a_fleet_clusters_verify_reads_the_patch_of_its_own_cluster() -> None:
    settings = Settings()
    op = step.task(settings, step.env(settings, EXPECTED, 60, dry_run=False))
    ti = rendered(op, "2025-01-31T12:00:00Z", task_id="prod-a.verify_rollout")
    assert ti.asked == ["prod-a.patch_cluster_policy"]


def test_extra_env_overrides_a_variable_of_the_same_name() -> None:
    settings = Settings()
    env = step.env(settings, EXPECTED, 60, dry_run=False) | {"PATCHED_AT": "1999-01-01T00:00:00Z"}
    op = step.task(settings, env)
    rendered(op, "2025-01-31T12:00:00Z")
    pod = pod_of(op)
    names = [e.name for e in pod.spec.containers[0].env]
    assert names.count("PATCHED_AT") == 1
    assert env_of(pod)["PATCHED_AT"] == "2025-01-31T12:00:00Z"


def test_extra_env_is_templated_but_the_script_is_not() -> None:
    assert "extra_env" in StepPodOperator.template_fields
    assert "cmds" not in StepPodOperator.template_fields
    assert "arguments" not in StepPodOperator.template_fields
    op = step.task(Settings(), step.env(Settings(), EXPECTED, 60, dry_run=False))
    before = list(op.arguments)
    rendered(op, "2025-01-31T12:00:00Z")
    assert op.arguments == before


def test_poll_seconds_at_least_one_and_deferrable_from_settings() -> None:
    settings = Settings(poll_seconds=1, deferrable=True)
    env = step.env(settings, EXPECTED, 60, dry_run=True)
    assert (env["POLL_SECONDS"], env["DRY_RUN"], env["TIMEOUT_SECONDS"]) == ("1", "true", "60")
    assert step.task(settings, env).deferrable is True
    assert step.task(settings, env, deferrable=False).deferrable is False
