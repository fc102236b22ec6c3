"""Pod contract of check_gpu_workload: the step's pod, and the check pod it creates per kernel."""

from __future__ import annotations

import json

import pytest
from kubernetes.client import ApiClient
from step_pods import assert_common, assert_restricted, env_of, pod_of, secret_mounts

from precompiled_drivers.settings import Settings
from precompiled_drivers.steps import check_gpu_workload as step
from precompiled_drivers.steps.base import restricted_security
from precompiled_drivers.validation import ValidationError

K_A = "5.14.0-427.50.1.el9_4.x86_64"
K_B = "5.14.0-570.12.1.el9_6.x86_64"


def test_pod_contract() -> None:
    settings = Settings()
    env = step.env(settings, [K_B, K_A, K_A], dry_run=False)
    op = step.task(settings, env)
    pod = pod_of(op)
    assert_common(
        pod,
        task_id="check_gpu_workload",
        service_account="gpu-check",
        api_access=True,
        image=settings.cli_image,
        script_name="check_gpu_workload.sh",
    )
    assert_restricted(pod)
    assert secret_mounts(pod) == {}
    assert env_of(pod) == {
        "HOME": "/tmp",
        "STEP": "check_gpu_workload",
        "NAMESPACE": "nvidia-precompiled-drivers",
        "CHECKS": step.checks(settings, [K_A, K_B]),
        "CHECK_IMAGE": "nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-ubi8",
        "TIMEOUT_SECONDS": "600",
        "POLL_SECONDS": "2",
    }
    assert op.retries == 0  # the script waits; a retry would start every check again
    assert op.skip_without_env is True


def test_checks_one_line_per_kernel_sorted_and_deduplicated() -> None:
    lines = step.checks(Settings(), [K_B, K_A, K_A]).splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == [K_A, K_B]
    _kernel, manifest = lines[0].split(" ", 1)
    assert json.loads(manifest) == step.check_pod(Settings(), K_A)


def test_the_check_pod_requests_one_gpu_on_a_gpu_node_of_its_kernel() -> None:
    pod = step.check_pod(Settings(namespace="gpu-pipeline", gpu_check_timeout_seconds=300), K_A)
    assert pod["metadata"] == {
        "generateName": "gpu-check-",
        "namespace": "gpu-pipeline",
        "labels": {
            "app.kubernetes.io/part-of": "nvidia-precompiled-drivers",
            "precompiled-drivers/step": "check_gpu_workload",
            "precompiled-drivers/gpu-check-kernel": K_A,
        },
    }
    spec = pod["spec"]
    assert spec["nodeSelector"] == {
        "feature.node.kubernetes.io/kernel-version.full": K_A,
        "nvidia.com/gpu.present": "true",
    }
    # What NVIDIA's validator pods tolerate (gpu-operator validator/manifests/*-workload-validation.yaml).
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] == 300
    assert spec["automountServiceAccountToken"] is False
    [container] = spec["containers"]
    assert container["image"] == "nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-ubi8"
    assert "command" not in container and "args" not in container, "the image's own vectorAdd"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_the_check_pod_is_restricted_like_every_step() -> None:
    pod = step.check_pod(Settings(), K_A)
    steps_context = ApiClient().sanitize_for_serialization(restricted_security())
    assert pod["spec"]["containers"][0]["securityContext"] == steps_context
    assert pod["spec"]["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert "privileged" not in json.dumps(pod)
    assert "hostPath" not in json.dumps(pod)


def test_mirror_image_and_nvidia_smi_command() -> None:
    settings = Settings(
        gpu_check_image="mirror.example.com:5000/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-ubi8",
        gpu_check_command="nvidia-smi --query-gpu=name,driver_version --format=csv,noheader",
    ).validate()
    [container] = step.check_pod(settings, K_A)["spec"]["containers"]
    assert container["image"].startswith("mirror.example.com:5000/")
    assert container["command"] == [
        "nvidia-smi",
        "--query-gpu=name,driver_version",
        "--format=csv,noheader",
    ]


@pytest.mark.parametrize(
    ("settings", "dry_run", "kernels"),
    [(Settings(gpu_check=False), False, [K_A]), (Settings(), True, [K_A]), (Settings(), False, [])],
    ids=["switched-off", "dry-run", "no-kernel"],
)
def test_no_check_no_pod(settings: Settings, dry_run: bool, kernels: list[str]) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    env = step.env(settings, kernels, dry_run=dry_run)
    assert env is None
    with pytest.raises(AirflowSkipException, match="check_gpu_workload: nothing to do"):
        step.task(settings, env).execute({})


@pytest.mark.parametrize(
    ("command", "why"),
    [
        ("nvidia-smi  -L", "exactly one space"),
        ("nvidia-smi;reboot", "holds another character"),
        ("sh -c $(id)", "holds another character"),
        ("-L", "starts with an option"),
        (" ".join(["x"] * 21), "more than 20 words"),
    ],
)
def test_a_bad_command_is_refused_naming_the_setting(command: str, why: str) -> None:
    with pytest.raises(ValidationError, match="PRECOMPILED_DRIVERS_GPU_CHECK_COMMAND") as exc:
        Settings(gpu_check_command=command).validate()
    assert why in str(exc.value)
    assert "nvidia-smi -L" in str(exc.value), "the refusal shows a good value"
