"""What every step pod shares: no secret value anywhere in a pod, static scripts, secret mounts."""

from __future__ import annotations

import importlib
import inspect
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG
from step_pods import SCRIPTS, env_of, main_container, pod_of, secret_mounts, serialized, unmapped

from precompiled_drivers import plan
from precompiled_drivers.config import Target, run_config
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps import (
    build_driver_image,
    check_published_images,
    inspect_cluster,
    inspect_driver_toolkit,
    patch_cluster_policy,
    push_driver_image,
    resolve_driver_toolkit,
    rollback_cluster_policy,
    verify_rollout,
)
from precompiled_drivers.steps.base import (
    POD_MODEL_KWARGS,
    SECRETS_ROOT,
    SecretFile,
    StepPodOperator,
    pod_task,
    script,
    script_command,
    step_env,
    step_kwargs,
    step_partial,
)

K418 = "5.14.0-427.50.1.el9_4.x86_64"
DTK = "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:" + "a" * 64
DIGEST = "sha256:" + "d" * 64

# Values a careless implementation could copy from the Airflow worker's environment into a pod.
PLANTED = {
    "PRECOMPILED_DRIVERS_RHSM_ORG": "planted-org-7741234",
    "PRECOMPILED_DRIVERS_RHSM_ACTIVATIONKEY": "planted-activation-key-C0FFEE",
    "PRECOMPILED_DRIVERS_PUSH_PASSWORD": "planted-push-password-BEEF",
    "PRECOMPILED_DRIVERS_GARBAGE": "planted-garbage-$(id)",
    "RHSM_ACTIVATIONKEY": "planted-rhsm-key-F00D",
    "PULL_SECRET": '{"auths":{"quay.io":{"auth":"cGxhbnRlZC1wdWxsLXNlY3JldA=="}}}',
    "REGISTRY_AUTH_FILE": "/planted/auth.json",
    "AIRFLOW_CONN_KUBERNETES_DEFAULT": "kubernetes://?extra__kubernetes__token=planted-sa-token-ABCD",
    "PRECOMPILED_DRIVERS_MODULE_SIGNING_KEY": "-----BEGIN PRIVATE KEY-----planted-module-key-1234",
    "COSIGN_PASSWORD": "planted-cosign-password-CAFE",
}


def all_step_pods(settings: Settings) -> dict[str, Any]:
    """One pod per step, built the way the DAG builds it, with realistic inputs."""
    cfg = run_config(
        {
            "ocp_versions": ["4.18.12"],
            "driver_versions": ["570.158.01"],
            "cuda_version": "12.8.1",
            "repository": "quay.io/acme/nvidia",
            "driver_repo_ref": "main",
        },
        settings,
    )
    [build] = plan.plan_builds(
        cfg, settings, [plan.Toolkit("4.18.12", "x86_64", DTK, K418, "", "9.4")], "v26.7.0"
    )
    resolved = {"version": "4.18.12", "arch": "x86_64", "dtk_image": DTK}
    built = {"image": build.image, "tag": build.tag, "staging_image": build.staging_image, "digest": DIGEST}
    patch = [{"op": "test", "path": "/spec/driver", "value": {}}]
    verify = verify_rollout.task(settings, verify_rollout.env(settings, "k i " + DIGEST, 60, False))
    verify.extra_env = {"PATCHED_AT": "2025-01-31T12:00:00Z"}  # as rendered from the patch's XCom
    ops = {
        "resolve_driver_toolkit": unmapped(
            resolve_driver_toolkit,
            settings,
            resolve_driver_toolkit.item(settings, Target("4.18.12", "x86_64")),
        ),
        "inspect_driver_toolkit": unmapped(
            inspect_driver_toolkit, settings, inspect_driver_toolkit.item(settings, resolved)
        ),
        "inspect_cluster": inspect_cluster.task(settings),
        "check_published_images": check_published_images.task(
            settings, check_published_images.env(settings, [build.image])
        ),
        "build_driver_image": unmapped(
            build_driver_image, settings, build_driver_image.item(settings, cfg, build)
        ),
        "push_driver_image": unmapped(push_driver_image, settings, push_driver_image.item(settings, built)),
        "patch_cluster_policy": patch_cluster_policy.task(
            settings, patch_cluster_policy.env(settings, patch, False)
        ),
        "verify_rollout": verify,
        "rollback_cluster_policy": rollback_cluster_policy.task(
            settings, rollback_cluster_policy.env(settings, patch, {})
        ),
    }
    return {task_id: pod_of(op) for task_id, op in ops.items()}


@pytest.fixture(scope="module")
def planted_pods() -> dict[str, Any]:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in PLANTED.items():
            mp.setenv(name, value)
        mp.setenv("PRECOMPILED_DRIVERS_SIGN_IMAGES", "true")  # every Secret a pod can mount is mounted
        settings = Settings.from_env().validate()
        return all_step_pods(settings)


def test_every_step_has_a_pod(planted_pods: dict[str, Any]) -> None:
    assert set(planted_pods) == {
        "resolve_driver_toolkit",
        "inspect_driver_toolkit",
        "inspect_cluster",
        "check_published_images",
        "build_driver_image",
        "push_driver_image",
        "patch_cluster_policy",
        "verify_rollout",
        "rollback_cluster_policy",
    }


@pytest.mark.parametrize("planted", sorted(PLANTED))
def test_no_planted_secret_value_in_any_pod(planted_pods: dict[str, Any], planted: str) -> None:
    value = PLANTED[planted]
    for task_id, pod in planted_pods.items():
        text = serialized(pod)
        assert value not in text, f"{planted} leaked into the {task_id} pod"
        assert json.dumps(value)[1:-1] not in text, f"{planted} leaked (JSON-escaped) into {task_id}"
        assert planted not in {e.name for e in main_container(pod).env or []}


def test_secret_inputs_are_file_paths_only(planted_pods: dict[str, Any]) -> None:
    for task_id, pod in planted_pods.items():
        env = env_of(pod)
        mounted = secret_mounts(pod)
        for name, value in env.items():
            if name.endswith(("_FILE", "AUTH_FILE")):
                directory = value.rsplit("/", 1)[0]
                assert directory in mounted, f"{task_id}: {name}={value} is not in a mounted Secret"
            assert not any(word in name for word in ("PASSWORD", "TOKEN", "ACTIVATIONKEY")) or name.endswith(
                "_FILE"
            ), f"{task_id}: {name} looks like a secret passed by value"
        # The script text is the packaged files (lib.sh, then the step's): no value spliced into it.
        container = main_container(pod)
        files = (SCRIPTS / "lib.sh").read_text() + (SCRIPTS / container.args[1]).read_text()
        assert container.args[0] == files


def test_secret_volumes_read_only_and_named_by_settings(planted_pods: dict[str, Any]) -> None:
    names = {
        "/etc/precompiled-drivers/pull-secret": "precompiled-drivers-pull-secret",
        "/etc/precompiled-drivers/push-secret": "precompiled-drivers-push-secret",
        "/etc/precompiled-drivers/rhsm": "precompiled-drivers-rhsm",
        "/etc/precompiled-drivers/module-signing": "precompiled-drivers-module-signing",
        "/etc/precompiled-drivers/module-signing-public": "precompiled-drivers-module-signing",
        "/etc/precompiled-drivers/image-signing": "precompiled-drivers-image-signing",
        "/etc/precompiled-drivers/image-signing-public": "precompiled-drivers-image-signing",
    }
    seen = set()
    for pod in planted_pods.values():
        for path, (secret, read_only) in secret_mounts(pod).items():
            assert read_only
            assert names[path] == secret
            seen.add(path)
    assert seen == set(names)


def secret_files(pod: Any) -> dict[str, set[str] | None]:
    """``{Secret name: keys projected}`` of a pod's Secret volumes (None: every key of the Secret)."""
    out: dict[str, set[str] | None] = {}
    for volume in pod.spec.volumes or []:
        if volume.secret:
            items = volume.secret.items
            out[volume.secret.secret_name] = {i.key for i in items} if items else None
    return out


def test_private_signing_keys_reach_only_the_build_and_push_pods(planted_pods: dict[str, Any]) -> None:
    """The Secure Boot private key is mounted in the build pod alone, the sigstore key in the push pod
    alone; inspect_cluster sees the two public keys only (to refuse a run before any build)."""
    holders: dict[str, set[str]] = {}
    for task_id, pod in planted_pods.items():
        for secret, keys in secret_files(pod).items():
            if secret == "precompiled-drivers-module-signing":
                assert keys is not None
                if "private_key.priv" in keys:
                    holders.setdefault("private_key.priv", set()).add(task_id)
                assert keys <= {"private_key.priv", "public_key.der"}
            if secret == "precompiled-drivers-image-signing" and (keys is None or "cosign.key" in keys):
                holders.setdefault("cosign.key", set()).add(task_id)
    assert holders == {"private_key.priv": {"build_driver_image"}, "cosign.key": {"push_driver_image"}}
    assert secret_files(planted_pods["inspect_cluster"]) == {
        "precompiled-drivers-module-signing": {"public_key.der"},
        "precompiled-drivers-image-signing": {"cosign.pub"},
    }
    # Optional: no Secret means an empty folder (reported as "no key"), not a pod stuck in mounting.
    optional = {
        (task_id, v.secret.secret_name, bool(v.secret.items)): v.secret.optional
        for task_id, pod in planted_pods.items()
        for v in pod.spec.volumes or []
        if v.secret and "signing" in v.secret.secret_name
    }
    assert optional == {
        ("inspect_cluster", "precompiled-drivers-module-signing", True): True,
        ("inspect_cluster", "precompiled-drivers-image-signing", True): True,
        ("build_driver_image", "precompiled-drivers-module-signing", True): True,
        # Image signing on: the push pod needs its key (select_builds checked it exists before any build).
        ("push_driver_image", "precompiled-drivers-image-signing", False): None,
    }


def test_automount_only_for_steps_with_api_rights(planted_pods: dict[str, Any]) -> None:
    automount = {task_id: pod.spec.automount_service_account_token for task_id, pod in planted_pods.items()}
    assert automount == {
        "resolve_driver_toolkit": False,
        "inspect_driver_toolkit": False,
        "check_published_images": False,
        "inspect_cluster": True,
        "build_driver_image": True,
        "push_driver_image": True,
        "patch_cluster_policy": True,
        "verify_rollout": True,
        "rollback_cluster_policy": True,
    }


def test_service_accounts_are_one_per_step(planted_pods: dict[str, Any]) -> None:
    accounts = {task_id: pod.spec.service_account_name for task_id, pod in planted_pods.items()}
    assert accounts == {
        "resolve_driver_toolkit": "precompiled-drivers-resolve",
        "inspect_driver_toolkit": "precompiled-drivers-inspect-dtk",
        "inspect_cluster": "precompiled-drivers-inspect-cluster",
        "check_published_images": "precompiled-drivers-check-images",
        "build_driver_image": "precompiled-drivers-build",
        "push_driver_image": "precompiled-drivers-push",
        "patch_cluster_policy": "precompiled-drivers-patch",
        "verify_rollout": "precompiled-drivers-verify",
        "rollback_cluster_policy": "precompiled-drivers-rollback",
    }


def test_only_build_is_not_restricted(planted_pods: dict[str, Any]) -> None:
    for task_id, pod in planted_pods.items():
        sc = main_container(pod).security_context
        assert sc.privileged is not True
        assert sc.run_as_non_root is True
        assert sc.capabilities.drop == ["ALL"]
        if task_id == "build_driver_image":
            assert sc.capabilities.add
            continue
        assert not sc.capabilities.add, task_id
        assert sc.read_only_root_filesystem is True, task_id
        assert sc.allow_privilege_escalation is False, task_id


# ----------------------------------------------------------------------------- the building blocks


def test_secret_file_env_and_volume() -> None:
    secret = SecretFile("my-secret", "creds", {"A_FILE": "a", "B_FILE": "dir.b"})
    assert secret.env_vars() == {"A_FILE": f"{SECRETS_ROOT}/creds/a", "B_FILE": f"{SECRETS_ROOT}/creds/dir.b"}
    kpo = secret.kpo_secret()
    assert (kpo.deploy_type, kpo.deploy_target, kpo.secret, kpo.key) == (
        "volume",
        f"{SECRETS_ROOT}/creds",
        "my-secret",
        None,
    )


def test_script_command_is_static_text() -> None:
    command = script_command("push_driver_image.sh")
    assert command == {
        "cmds": ["bash", "-c"],
        "arguments": [
            (SCRIPTS / "lib.sh").read_text() + (SCRIPTS / "push_driver_image.sh").read_text(),
            "push_driver_image.sh",
        ],
    }
    assert script("push_driver_image.sh") == command["arguments"][0]
    with pytest.raises(FileNotFoundError):
        script("no_such_script.sh")


def test_a_packaged_script_is_read_at_import_not_at_each_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = (SCRIPTS / "lib.sh").read_text() + (SCRIPTS / "verify_rollout.sh").read_text()

    def no_read(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("a script file was read")

    monkeypatch.setattr(Path, "read_text", no_read)
    assert script("verify_rollout.sh") == expected


def test_step_env_order_and_secret_paths() -> None:
    env = step_env("x", (SecretFile("s", "m", {"F_FILE": "f"}),), {"A": "1", "HOME": "/elsewhere"})
    assert env == {"HOME": "/elsewhere", "STEP": "x", "A": "1", "F_FILE": f"{SECRETS_ROOT}/m/f"}


def test_step_kwargs_defaults() -> None:
    kwargs = step_kwargs(
        Settings(startup_timeout_seconds=42, poll_seconds=3),
        task_id="some_step",
        service_account="some",
        script_name="inspect_cluster.sh",
        image="quay.io/x/y:1",
    )
    assert kwargs["name"] == "some-step"
    assert kwargs["automount_service_account_token"] is False
    assert kwargs["do_xcom_push"] is True
    assert kwargs["on_finish_action"] == "delete_succeeded_pod"
    assert (kwargs["startup_timeout_seconds"], kwargs["poll_interval"]) == (42, 3)
    assert kwargs["secrets"] == []


def test_step_partial_drops_only_per_item_keys() -> None:
    kwargs = step_kwargs(
        Settings(), task_id="p", service_account="p", script_name="inspect_cluster.sh", image="quay.io/x/y:1"
    )
    partial = step_partial(kwargs, per_item=("env_vars", "image"))
    partial._expand_called = True
    assert "env_vars" not in partial.kwargs
    assert "image" not in partial.kwargs
    assert partial.kwargs["service_account_name"] == "precompiled-drivers-p"
    assert partial.kwargs["arguments"] == kwargs["arguments"]


def test_a_mapped_steps_client_models_serialize_as_one_short_value_and_reach_its_pods() -> None:
    from airflow.serialization.serialized_objects import BaseSerialization

    from precompiled_drivers.procedure import Step

    kwargs = step_kwargs(
        Settings(), task_id="p", service_account="p", script_name="inspect_cluster.sh", image="quay.io/x/y:1"
    )
    partial = step_partial(kwargs)
    partial._expand_called = True
    assert not POD_MODEL_KWARGS & partial.kwargs.keys()
    models = partial.kwargs["pod_models"]
    # What the dag-processor writes for it at each parse: its text, which names the arguments only.
    assert BaseSerialization.serialize(models) == (
        "PodModels(container_resources, container_security_context, volume_mounts, volumes, "
        "xcom_sidecar_container_security_context)"
    )
    # Each pod's task gets the very models the step built.
    item = {"env_vars": {"A": "1"}}
    with DAG("contract_models", schedule=None, start_date=datetime(2025, 1, 1)):
        mapped = pod_task(Step("p", "pod", "doc", per="image"), kwargs, [item])
    op = mapped.unmap(item)
    for name in POD_MODEL_KWARGS & kwargs.keys():
        assert getattr(op, name) == kwargs[name], name
    assert main_container(pod_of(op)).security_context == kwargs["container_security_context"]


def test_mapped_item_may_not_repeat_a_partial_key() -> None:
    # The reason for step_partial: Airflow refuses, at run time, a key given twice.
    kwargs = step_kwargs(
        Settings(),
        task_id="dup",
        service_account="p",
        script_name="inspect_cluster.sh",
        image="quay.io/x/y:1",
    )
    item = {"env_vars": {"A": "1"}}
    with pytest.raises(TypeError, match="env_vars"):
        with DAG("contract_dup", schedule=None, start_date=datetime(2025, 1, 1)):
            mapped = StepPodOperator.partial(**kwargs).expand_kwargs([item])
        mapped.unmap(item)


def test_template_fields() -> None:
    fields = StepPodOperator.template_fields
    assert "cmds" not in fields
    assert "arguments" not in fields
    assert {"env_vars", "extra_env", "image", "labels"} <= set(fields)


def test_every_per_item_key_of_a_mapped_step_is_rendered() -> None:
    """A mapped step's items come from a planning task: each key the provider templates stays templated."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    from precompiled_drivers import procedure

    names = [f"precompiled_drivers.steps.{step.task_id}" for step in procedure.pod_steps()]
    modules = [importlib.import_module(name) for name in names]
    # pod_task's default per-item keys when a module names none
    per_item = {m.STEP.task_id: getattr(m, "PER_ITEM", ("env_vars",)) for m in modules if m.STEP.per}
    assert per_item, "no mapped pod step found"
    for task_id, keys in per_item.items():
        templated = set(keys) & set(KubernetesPodOperator.template_fields)
        assert templated <= set(StepPodOperator.template_fields), (task_id, keys)


def test_build_pod_request_obj_matches_the_provider_signature() -> None:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    ours = inspect.signature(StepPodOperator.build_pod_request_obj).parameters
    theirs = inspect.signature(KubernetesPodOperator.build_pod_request_obj).parameters
    assert ours["dry_run"].kind == theirs["dry_run"].kind == inspect.Parameter.KEYWORD_ONLY


def test_extra_env_without_env_vars() -> None:
    op = StepPodOperator(
        **step_kwargs(
            Settings(),
            task_id="e",
            service_account="e",
            script_name="inspect_cluster.sh",
            image="quay.io/x/y:1",
        )
        | {"env_vars": None},
        extra_env={"ONLY": "this"},
    )
    assert env_of(pod_of(op)) == {"ONLY": "this"}


def test_every_step_module_has_its_contract_test() -> None:
    steps = Path(SCRIPTS).parent / "steps"
    here = Path(__file__).resolve().parent
    modules = {p.stem for p in steps.glob("*.py") if p.stem != "__init__"}
    assert {p.stem.removeprefix("test_") for p in here.glob("test_*.py")} >= modules


# ----------------------------------------------------------------------------- failure capture


class RecordingTI:
    """Stands in for the task instance the operator gets in its context: keeps what is pushed."""

    def __init__(self, map_index: int = -1) -> None:
        self.map_index = map_index
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def terminated_pod(message: str | None, reason: str | None = None) -> Any:
    from kubernetes.client import models as k8s

    return k8s.V1Pod(
        status=k8s.V1PodStatus(
            phase="Failed",
            reason=reason,
            message="The node was low on resource: memory." if reason else None,
            container_statuses=[
                k8s.V1ContainerStatus(
                    name="base",
                    image="q.io/x/y:1",
                    image_id="",
                    ready=False,
                    restart_count=0,
                    state=k8s.V1ContainerState(
                        terminated=k8s.V1ContainerStateTerminated(exit_code=1, message=message)
                    ),
                )
            ],
        )
    )


def run_failing(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], remote_pod: Any, map_index: int = -1
) -> dict[str, Any]:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    op = StepPodOperator(
        **step_kwargs(
            Settings(), task_id="f", service_account="f", script_name="inspect_cluster.sh", image="q.io/x/y:1"
        )
        | {"env_vars": env}
    )

    def execute(self: Any, context: Any) -> Any:
        # What KPO does before it raises: it built the pod and read it back once the container ended.
        self.pod_request_obj = self.build_pod_request_obj(dry_run=True)
        self.remote_pod = remote_pod
        raise RuntimeError("Pod f-abc returned a failure.\nremote_pod: {...}")

    monkeypatch.setattr(KubernetesPodOperator, "execute", execute)
    ti = RecordingTI(map_index)
    with pytest.raises(RuntimeError, match="returned a failure"):
        op.execute({"ti": ti})
    return ti.pushed["failure"]


def test_a_failed_pod_records_its_last_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    tail = "step: starting\nERROR: first problem\nERROR: could not push x: denied\nsee above\n"
    record = run_failing(monkeypatch, {"IMAGE": "q.io/a/driver:1"}, terminated_pod(tail))
    assert record == {"reason": "ERROR: could not push x: denied", "item": None, "map_index": -1}


def test_a_mapped_item_is_named_by_its_image_or_release(monkeypatch: pytest.MonkeyPatch) -> None:
    pod = terminated_pod("exec /usr/bin/bash: exec format error\n")
    record = run_failing(monkeypatch, {"IMAGE": "q.io/a/driver:1"}, pod, map_index=2)
    assert record == {
        "reason": "exec /usr/bin/bash: exec format error",
        "item": "q.io/a/driver:1",
        "map_index": 2,
    }
    release = {"RELEASE_VERSION": "4.19.3", "RELEASE_ARCH": "aarch64"}
    assert run_failing(monkeypatch, release, pod, map_index=0)["item"] == "4.19.3-aarch64"


def test_without_a_message_the_pod_status_or_the_error_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    evicted = run_failing(monkeypatch, {}, terminated_pod(None, reason="Evicted"))
    assert evicted["reason"] == "pod Evicted: The node was low on resource: memory."
    assert run_failing(monkeypatch, {}, None)["reason"] == "Pod f-abc returned a failure."


def test_every_step_pod_falls_back_to_its_log_tail(planted_pods: dict[str, Any]) -> None:
    for step, pod in planted_pods.items():
        assert main_container(pod).termination_message_policy == "FallbackToLogsOnError", step


def test_a_deferrable_pod_failure_is_recorded_on_reentry(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import models as k8s

    pod = terminated_pod("ERROR: could not push q.io/a/driver:2\n")
    # After a deferral the operator is a new instance: what it knows comes from the pod it re-reads.
    pod.spec = k8s.V1PodSpec(
        containers=[k8s.V1Container(name="base", env=[k8s.V1EnvVar(name="IMAGE", value="q.io/a/driver:2")])]
    )

    def trigger_reentry(self: Any, context: Any, event: dict[str, Any]) -> Any:
        self.pod = pod
        raise RuntimeError(event["message"])

    monkeypatch.setattr(KubernetesPodOperator, "trigger_reentry", trigger_reentry)
    op = StepPodOperator(
        **step_kwargs(
            Settings(), task_id="f", service_account="f", script_name="inspect_cluster.sh", image="q.io/x/y:1"
        )
    )
    ti = RecordingTI(map_index=1)
    with pytest.raises(RuntimeError, match="pod failed"):
        op.trigger_reentry({"ti": ti}, {"status": "failed", "message": "pod failed"})
    assert ti.pushed["failure"] == {
        "reason": "ERROR: could not push q.io/a/driver:2",
        "item": "q.io/a/driver:2",
        "map_index": 1,
    }


def test_pod_spec_models_share_one_client_configuration_and_keep_client_side_validation() -> None:
    """Built at parse time, the models share ``MODEL_CONFIG`` instead of copying the client's default each.

    Pins the kubernetes client behaviour this relies on (kubernetes/client/models/*.py ``__init__``): a model
    built without ``local_vars_configuration`` copies a new Configuration, one built with it keeps it and
    still validates its fields with it (``client_side_validation``).
    """
    from kubernetes.client import models as k8s

    from precompiled_drivers.steps.base import MODEL_CONFIG, resources, restricted_security, sidecar_security

    assert k8s.V1Capabilities(drop=["ALL"]).local_vars_configuration is not MODEL_CONFIG
    context = restricted_security()
    models = [
        context,
        context.capabilities,
        context.seccomp_profile,
        sidecar_security(),
        resources("1", "1Gi", "2", "2Gi"),
        build_driver_image.build_security(),
        build_driver_image.STORAGE_VOLUME,
        build_driver_image.STORAGE_VOLUME.empty_dir,
    ]
    assert all(m.local_vars_configuration is MODEL_CONFIG for m in models)
    assert MODEL_CONFIG.client_side_validation is True
    with pytest.raises(ValueError, match="`type`, must not be `None`"):
        k8s.V1SeccompProfile(type=None, local_vars_configuration=MODEL_CONFIG)
    # Separate objects per call all the same: a step may change its own without touching another's.
    assert sidecar_security() is not sidecar_security()
    assert sidecar_security().run_as_user == 65534 and restricted_security().run_as_user is None
