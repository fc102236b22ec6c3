"""Pod contract of roll_out_nvidia_drivers: the stages as env values, in order; skips without stages."""

from __future__ import annotations

import json
from typing import Any

from step_pods import assert_common, assert_restricted, env_of, pod_of, secret_mounts

from harness.nvidia_drivers import K418, POOL, pool_stages
from precompiled_drivers import nvidia_driver
from precompiled_drivers.cluster import KERNEL_LABEL
from precompiled_drivers.cluster_policy import apply_patch
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps import roll_out_nvidia_drivers as step

REPO = "quay.io/acme"


def cr(name: str, pool: str, precompiled: bool) -> dict[str, Any]:
    spec = {"driverType": "gpu", "usePrecompiled": precompiled, "nodeSelector": {POOL: pool}}
    if precompiled:
        spec.update(repository=REPO, image="driver", version="570.1")
    return {"metadata": {"name": name, "uid": f"uid-{name}", "labels": {"team": "ml"}}, "spec": spec}


def stages() -> tuple[nvidia_driver.Stage, ...]:
    return pool_stages((cr("pool-a", "a", True), cr("pool-b", "b", False)), REPO)


def test_pod_contract() -> None:
    settings = Settings()
    planned = stages()
    op = step.task(settings, step.env(settings, planned, 900, dry_run=False))
    pod = pod_of(op)
    assert_common(
        pod,
        task_id="roll_out_nvidia_drivers",
        service_account="roll-out-nvidia-drivers",
        api_access=True,
        image=settings.cli_image,
        script_name="roll_out_nvidia_drivers.sh",
    )
    assert_restricted(pod)
    assert secret_mounts(pod) == {}
    env = env_of(pod)
    assert env["STAGES"] == "pool-a patch\npool-b replace"  # the canary (fewest nodes) first
    assert (env["OPERATOR_NAMESPACE"], env["TIMEOUT_SECONDS"], env["DRY_RUN"]) == (
        "nvidia-gpu-operator",
        "900",
        "false",
    )
    patch, replace = planned
    assert json.loads(env["STAGE_1_APPLY"]) == patch.patch
    assert json.loads(env["STAGE_1_UNDO"]) == patch.undo
    assert json.loads(env["STAGE_2_APPLY"]) == replace.replacement
    assert json.loads(env["STAGE_2_UNDO"]) == replace.original
    # The patched CR keeps its UID, so its DaemonSet is named before; a replacement's is not ("-").
    image = f"{REPO}/driver:570.2-{K418}-rhcos4.18"
    daemonset = nvidia_driver.daemonset_name("gpu", "uid-pool-a", "rhcos4.18", K418)
    assert env["STAGE_1_EXPECTED"] == f"{image} sha256:{'1' * 64} {daemonset} a1"
    assert env["STAGE_2_EXPECTED"] == f"{image} sha256:{'1' * 64} - b1,b2"
    # The GPU workload check per pool, held to the NVIDIADriver's nodes, once each stage verifies.
    kernel, manifest = env["STAGE_2_CHECKS"].split(" ", 1)
    check = json.loads(manifest)
    assert kernel == K418
    assert check["spec"]["nodeSelector"] == {POOL: "b", KERNEL_LABEL: K418, "nvidia.com/gpu.present": "true"}
    assert check["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert (env["NAMESPACE"], env["CHECK_TIMEOUT_SECONDS"]) == ("nvidia-precompiled-drivers", "600")
    off = step.env(Settings(gpu_check=False), planned, 900, dry_run=False)
    assert off is not None and not [k for k in off if k.endswith("_CHECKS")]
    # A failed stage is final: the script has restored it; only a lost try is retried.
    assert op.retries == 1 and op.retry_only_lost_tries is True


def test_guards_and_targets_hold_on_the_objects_they_describe() -> None:
    patch, replace = stages()
    env = step.env(Settings(), (patch, replace), 60, dry_run=False)
    assert env is not None
    read_a = cr("pool-a", "a", True)
    # Patch: the guard holds on the CR as read, the target on it once patched, and not the other way.
    apply_patch(read_a, json.loads(env["STAGE_1_GUARD"]))
    patched = apply_patch(read_a, patch.patch)
    apply_patch(patched, json.loads(env["STAGE_1_TARGET"]))
    assert patched["spec"]["version"] == "570.2"
    # Replace: the guard checks the UID and spec read; the target, the replacement's spec.
    read_b = cr("pool-b", "b", False)
    apply_patch(read_b, json.loads(env["STAGE_2_GUARD"]))
    assert json.loads(env["STAGE_2_GUARD"])[0] == {
        "op": "test",
        "path": "/metadata/uid",
        "value": "uid-pool-b",
    }
    apply_patch(replace.replacement, json.loads(env["STAGE_2_TARGET"]))


def test_no_stage_means_no_input_and_the_step_skips() -> None:
    assert step.env(Settings(), (), 60, dry_run=False) is None
    op = step.task(Settings(), None)
    assert op.skip_without_env is True
    assert step.env(Settings(), stages(), 60, dry_run=True)["DRY_RUN"] == "true"
