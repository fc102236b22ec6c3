"""Pod contract of rollback_cluster_policy: the exact undo patch and the previous spec, as env values."""

from __future__ import annotations

import json

from step_pods import assert_common, assert_restricted, env_of, pod_of, secret_mounts

from precompiled_drivers.settings import Settings
from precompiled_drivers.steps import rollback_cluster_policy as step

PREVIOUS = {"enabled": True, "repository": "nvcr.io/nvidia", "image": "driver", "version": "550.163.01"}
ROLLBACK = [
    {"op": "test", "path": "/spec/driver", "value": {**PREVIOUS, "usePrecompiled": True}},
    {"op": "replace", "path": "/spec/driver", "value": PREVIOUS},
]


def test_pod_contract() -> None:
    settings = Settings()
    op = step.task(settings, step.env(settings, ROLLBACK, PREVIOUS))
    pod = pod_of(op)
    assert_common(
        pod,
        task_id="rollback_cluster_policy",
        service_account="rollback",
        api_access=True,
        image=Settings().cli_image,
        script_name="rollback_cluster_policy.sh",
    )
    assert_restricted(pod)
    env = env_of(pod)
    assert env == {
        "HOME": "/tmp",
        "STEP": "rollback_cluster_policy",
        "POLICY_NAME": "gpu-cluster-policy",
        "PATCH_JSON": json.dumps(ROLLBACK, separators=(",", ":")),
        "PREVIOUS_DRIVER_JSON": json.dumps(PREVIOUS, separators=(",", ":")),
    }
    assert json.loads(env["PATCH_JSON"]) == ROLLBACK
    assert json.loads(env["PREVIOUS_DRIVER_JSON"]) == PREVIOUS
    assert secret_mounts(pod) == {}
    assert op.retries == 3  # restoring the policy is worth retrying
