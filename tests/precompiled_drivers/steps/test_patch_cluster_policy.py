"""Pod contract of patch_cluster_policy: the guarded patch as an env value, never retried."""

from __future__ import annotations

import json

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
    # A failed guard is final: retrying would only repeat the refusal (or, worse, race).
    assert op.retries == 0


def test_dry_run() -> None:
    env = step.env(Settings(policy_name="other-policy"), PATCH, dry_run=True)
    assert (env["DRY_RUN"], env["POLICY_NAME"]) == ("true", "other-policy")
