"""Pod contract of record_readiness: the ConfigMap to write and where, its own ServiceAccount."""

from __future__ import annotations

import json

import pytest
from step_pods import assert_common, assert_restricted, env_of, pod_of, secret_mounts

from precompiled_drivers.readiness import CONFIGMAP_NAME
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps import record_readiness as step

MANIFEST = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIGMAP_NAME}, "data": {"a": "b"}}


def test_pod_contract() -> None:
    settings = Settings()
    op = step.task(settings, step.env(settings, MANIFEST))
    pod = pod_of(op)
    assert_common(
        pod,
        task_id="record_readiness",
        service_account="record-readiness",
        api_access=True,
        image=Settings().cli_image,
        script_name="record_readiness.sh",
    )
    assert_restricted(pod)
    env = env_of(pod)
    assert env == {
        "HOME": "/tmp",
        "STEP": "record_readiness",
        "CONFIGMAP_NAME": "precompiled-drivers-readiness",
        "NAMESPACE": "nvidia-precompiled-drivers",
        "CONFIGMAP_JSON": json.dumps(MANIFEST, separators=(",", ":")),
    }
    assert secret_mounts(pod) == {}
    assert op.trigger_rule == "none_skipped"


def test_no_readiness_no_pod() -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    op = step.task(Settings(), None)  # plan_rollout never ran: its XCom resolves to None
    with pytest.raises(AirflowSkipException, match="record_readiness: nothing to do"):
        op.execute({})
