"""Helpers for the pod-spec contract tests: build a step's pod the way the DAG does, and read it back.

Mapped steps go through ``pod_task`` (as their ``task`` does) with one item in a throw-away DAG and
are unmapped with it, which is the path Airflow takes at run time (including its refusal of keys
given twice).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from airflow.sdk import DAG
from airflow.sdk.definitions.mappedoperator import OperatorPartial
from kubernetes.client import models as k8s

from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import SECRETS_ROOT, StepPodOperator, pod_task, step_partial

ROOT = Path(__file__).resolve().parents[3]
SCRIPTS = ROOT / "plugins" / "precompiled_drivers" / "scripts"
PART_OF = {"app.kubernetes.io/part-of": "nvidia-precompiled-drivers"}


def unmapped(
    step: ModuleType, settings: Settings, item: Mapping[str, Any], **task_args: Any
) -> StepPodOperator:
    """The operator Airflow builds for one item of a mapped step's task (``pod_task`` over ``[item]``)."""
    assert step.STEP.per is not None, f"{step.STEP.task_id} is not mapped"
    with DAG(f"contract_{step.STEP.task_id}", schedule=None, start_date=datetime(2025, 1, 1)):
        mapped = pod_task(step.STEP, step.pod(settings), [dict(item)], per_item=step.PER_ITEM, **task_args)
    op = mapped.unmap(dict(item))
    assert isinstance(op, StepPodOperator)
    return op


def partial_of(step: ModuleType, settings: Settings) -> OperatorPartial:
    """The partial a mapped step's task expands (only inspected: never expanded)."""
    partial = step_partial(step.pod(settings), per_item=step.PER_ITEM)
    partial._expand_called = True  # inspected only; Airflow warns about an unexpanded partial otherwise
    return partial


def pod_of(op: StepPodOperator) -> k8s.V1Pod:
    """The pod the operator would create (no Kubernetes client needed)."""
    return op.build_pod_request_obj(dry_run=True)


def main_container(pod: k8s.V1Pod) -> k8s.V1Container:
    [container] = [c for c in pod.spec.containers if c.name == "base"]
    return container


def env_of(pod: k8s.V1Pod) -> dict[str, str]:
    """The main container's environment as a dict (every value must be a plain value)."""
    env = main_container(pod).env or []
    assert all(e.value_from is None for e in env), "secrets are mounted as files, never env references"
    names = [e.name for e in env]
    assert len(names) == len(set(names)), f"duplicate variables: {names}"
    return {e.name: e.value for e in env}


def secret_mounts(pod: k8s.V1Pod) -> dict[str, tuple[str, bool]]:
    """``{mount path: (Secret name, read_only)}`` for every Secret volume of the main container."""
    secrets = {v.name: v.secret.secret_name for v in pod.spec.volumes or [] if v.secret}
    return {
        m.mount_path: (secrets[m.name], bool(m.read_only))
        for m in main_container(pod).volume_mounts or []
        if m.name in secrets
    }


def serialized(pod: k8s.V1Pod) -> str:
    return json.dumps(pod.to_dict(), default=str)


def assert_command_runs_script(pod: k8s.V1Pod, script_name: str) -> None:
    container = main_container(pod)
    assert container.command == ["bash", "-c"]
    # The shared helpers, then the step's own static script, as one text; $0 names the script.
    text = (SCRIPTS / "lib.sh").read_text() + (SCRIPTS / script_name).read_text()
    assert container.args == [text, script_name]


def assert_restricted(pod: k8s.V1Pod) -> None:
    """Non-root, read-only root file system, no capabilities, no escalation, RuntimeDefault seccomp."""
    sc = main_container(pod).security_context
    assert sc.run_as_non_root is True
    assert sc.read_only_root_filesystem is True
    assert sc.allow_privilege_escalation is False
    assert sc.privileged is not True
    assert sc.capabilities.drop == ["ALL"]
    assert not sc.capabilities.add
    assert sc.seccomp_profile.type == "RuntimeDefault"
    # A read-only root needs a writable /tmp (and $HOME there).
    assert "/tmp" in {m.mount_path for m in main_container(pod).volume_mounts}
    assert env_of(pod)["HOME"] == "/tmp"


def assert_common(
    pod: k8s.V1Pod,
    *,
    task_id: str,
    service_account: str,
    api_access: bool,
    image: str,
    script_name: str,
    namespace: str = "nvidia-precompiled-drivers",
) -> None:
    """What every step pod must carry (DESIGN.md 5.2)."""
    container = main_container(pod)
    assert container.image == image
    assert_command_runs_script(pod, script_name)
    assert pod.metadata.namespace == namespace
    assert pod.metadata.name.startswith(task_id.replace("_", "-"))
    assert pod.spec.service_account_name == f"precompiled-drivers-{service_account}"
    assert pod.spec.automount_service_account_token is api_access
    assert pod.spec.restart_policy == "Never"
    for sidecar in (c for c in pod.spec.containers if c.name == "airflow-xcom-sidecar"):
        context = sidecar.security_context
        assert context.run_as_non_root is True and context.run_as_user == 65534
        assert context.read_only_root_filesystem is True
        assert context.allow_privilege_escalation is False
        assert context.capabilities.drop == ["ALL"]
    labels = pod.metadata.labels
    assert labels["app.kubernetes.io/part-of"] == "nvidia-precompiled-drivers"
    assert labels["precompiled-drivers/step"] == task_id
    resources = container.resources
    assert set(resources.requests) == {"cpu", "memory"}
    assert set(resources.limits) == {"cpu", "memory"}
    env = env_of(pod)
    assert env["STEP"] == task_id
    for name, value in env.items():
        if name.endswith("_FILE"):
            assert value.startswith(SECRETS_ROOT + "/"), f"{name} must point at a mounted file"
    for path, (_secret, read_only) in secret_mounts(pod).items():
        assert read_only, f"secret at {path} must be mounted read-only"
        assert path.startswith(SECRETS_ROOT + "/")
