"""Pod contract of patch_cluster_policy: the guarded patch as an env value; a lost try is retried."""

from __future__ import annotations

import json
from typing import Any

import pytest
from step_pods import assert_common, assert_restricted, env_of, pod_of, secret_mounts

from precompiled_drivers.settings import Settings
from precompiled_drivers.steps import patch_cluster_policy as step

PATCH = [
    {"op": "test", "path": "/spec/driver", "value": {"enabled": True}},
    {"op": "add", "path": "/spec/driver/usePrecompiled", "value": True},
    {"op": "add", "path": "/spec/driver/repository", "value": "quay.io/acme/nvidia"},
]


def test_pod_contract() -> None:
    settings = Settings()
    op = step.task(settings, step.env(settings, PATCH, dry_run=False))
    pod = pod_of(op)
    assert_common(
        pod,
        task_id="patch_cluster_policy",
        service_account="patch",
        api_access=True,
        image=Settings().cli_image,
        script_name="patch_cluster_policy.sh",
    )
    assert_restricted(pod)
    env = env_of(pod)
    assert env == {
        "HOME": "/tmp",
        "STEP": "patch_cluster_policy",
        "POLICY_NAME": "gpu-cluster-policy",
        "PATCH_JSON": json.dumps(PATCH, separators=(",", ":")),
        "DRY_RUN": "false",
    }
    assert json.loads(env["PATCH_JSON"]) == PATCH
    assert secret_mounts(pod) == {}
    # One retry, for a try whose process was killed or whose worker was lost (see the tests below).
    assert op.retries == 1
    assert op.retry_only_lost_tries is True


def test_dry_run() -> None:
    env = step.env(Settings(policy_name="other-policy"), PATCH, dry_run=True)
    assert (env["DRY_RUN"], env["POLICY_NAME"]) == ("true", "other-policy")


def pod_with_base(terminated: bool) -> Any:
    from kubernetes.client import models as k8s

    state = (
        k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(exit_code=1))
        if terminated
        else k8s.V1ContainerState(waiting=k8s.V1ContainerStateWaiting(reason="ContainerCreating"))
    )
    status = k8s.V1ContainerStatus(
        name="base", image="x", image_id="", ready=False, restart_count=0, state=state
    )
    return k8s.V1Pod(status=k8s.V1PodStatus(phase="Failed", container_statuses=[status]))


class _TI:
    map_index = -1

    def xcom_push(self, key: str, value: Any) -> None:
        pass


@pytest.mark.parametrize("script_ended", [True, False])
def test_only_a_try_the_script_did_not_finish_is_retried(
    monkeypatch: pytest.MonkeyPatch, script_ended: bool
) -> None:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk.exceptions import AirflowFailException

    def execute(self: Any, context: Any) -> Any:
        # KPO read the pod back, then raised (the script refused, or the pod never ran it).
        self.remote_pod = pod_with_base(terminated=script_ended)
        raise RuntimeError("Pod patch-cluster-policy-abc returned a failure.")

    monkeypatch.setattr(KubernetesPodOperator, "execute", execute)
    settings = Settings()
    op = step.task(settings, step.env(settings, PATCH, dry_run=False))
    with pytest.raises(Exception, match="returned a failure") as raised:
        op.execute({"ti": _TI()})
    # A refusal is final (no retry would change it); a pod that never ran the script may be retried.
    assert isinstance(raised.value, AirflowFailException) is script_ended
