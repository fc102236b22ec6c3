"""What every step pod shares: the operator class, the script loader, security and secret mounts.

Each step module builds its own pod spec from these pieces in one place (the "maker"); the
KubernetesPodOperator runs and watches it (the "manager"). Every step module has the same shape:

- ``STEP``: its entry in ``procedure.STEPS`` (task id, doc, whether it is mapped per release or image);
- ``pod(settings)``: the ``StepPodOperator`` keyword arguments every pod of the step shares;
- ``env(settings, ...)`` (one pod per run) or ``item(settings, ...)`` (mapped: one pod per item): what a
  pod gets at run time, computed by a planning task or from the previous step's result;
- ``task(settings, inputs, **task_args)``: the DAG's task, made by ``pod_task``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.providers.cncf.kubernetes.backcompat.backwards_compat_converters import (
    convert_env_vars,
    convert_env_vars_or_raise_error,
)
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.secret import Secret
from airflow.providers.cncf.kubernetes.utils.container import get_container_termination_message
from airflow.sdk.definitions.mappedoperator import OperatorPartial
from kubernetes.client import Configuration
from kubernetes.client import models as k8s

from precompiled_drivers import failures
from precompiled_drivers.procedure import Step
from precompiled_drivers.settings import Settings

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"

SECRETS_ROOT = "/etc/precompiled-drivers"
SA_PREFIX = "precompiled-drivers-"

# A Kubernetes client model built without a configuration copies the client's default one
# (kubernetes/client/models/*.py ``__init__``: ``Configuration.get_default_copy()``), and building a
# Configuration sets two loggers' levels, which clears the cache of every logger in the process: ~70
# copies per DAG parse. A model only reads it for ``client_side_validation``, so the ones built here
# share this copy (MODEL_CONFIG, passed as ``local_vars_configuration``).
MODEL_CONFIG = Configuration.get_default_copy()


class StepPodOperator(KubernetesPodOperator):
    """A KubernetesPodOperator whose command is a static script.

    ``cmds`` and ``arguments`` are taken out of the templated fields: the script text is never
    rendered, so no value can be spliced into it (values travel as environment variables).

    ``extra_env`` (templated) is merged over ``env_vars``: it lets one variable come from another
    task's result at run time while the rest of the environment comes from a planning task's XCom.

    A failed try records why (``failures.record``): the script's last ERROR line from the container's
    termination message (its log tail, ``FallbackToLogsOnError``), else what the pod status says.

    ``retry_only_lost_tries``: a failure after the step's script ended is final (``AirflowFailException``,
    e.g. the patch's refused guard would only repeat); only a try that never finished (its process killed,
    its worker lost) is retried.

    ``skip_without_env``: a step that runs whatever its planning task did (``record_readiness``) skips,
    starting no pod, when that task left it no environment (its XCom resolves to None: it never ran).
    """

    # Templated: only the fields a step fills from another task's result or a template (env_vars,
    # extra_env, a mapped step's per-item keys) and the plain strings a reader may look up rendered. The
    # provider's others (pod spec models: volumes, resources...; files; cmds/arguments) are fixed values
    # here, and the dag-processor serializes every templated field of every task at each re-parse (#20).
    # tests/dags/test_dag_integrity.py fails if a step puts a template or an XComArg anywhere else.
    template_fields = (
        "image",
        "name",
        "namespace",
        "kubernetes_conn_id",
        "env_vars",
        "labels",
        "node_selector",
        "extra_env",
    )

    def __init__(
        self,
        *,
        extra_env: Mapping[str, str] | None = None,
        skip_without_env: bool = False,
        retry_only_lost_tries: bool = False,
        pod_models: PodModels | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs, **(pod_models.models if pod_models is not None else {}))
        self.extra_env = extra_env
        self.skip_without_env = skip_without_env
        self.retry_only_lost_tries = retry_only_lost_tries

    def build_pod_request_obj(self, context: Any = None, *, dry_run: bool = False) -> k8s.V1Pod:
        """Build the pod, with ``extra_env`` overriding variables of the same name."""
        if self.extra_env:
            base = convert_env_vars_or_raise_error(self.env_vars) if self.env_vars else []
            extra = convert_env_vars(dict(self.extra_env))
            names = {e.name for e in extra}
            self.env_vars = [e for e in base if e.name not in names] + extra
            self.extra_env = None
        return super().build_pod_request_obj(context, dry_run=dry_run)

    def execute(self, context: Any) -> Any:
        """Run the pod; on failure, record the step's own reason before the error ends the try."""
        if self.skip_without_env and not self.env_vars:
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"{self.task_id}: nothing to do, its planning step left no input")
        try:
            return self._recording_failure(context, super().execute, context)
        except Exception as exc:
            if not (self.retry_only_lost_tries and self._script_ended()):
                raise
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"{exc} (the step's script ran and failed: not retried)") from exc

    def _script_ended(self) -> bool:
        """True when the base container of the pod this try watched has terminated."""
        for pod in self._known_pods():
            for status in getattr(getattr(pod, "status", None), "container_statuses", None) or []:
                if status.name == self.base_container_name and status.state and status.state.terminated:
                    return True
        return False

    def trigger_reentry(self, context: Any, event: dict[str, Any]) -> Any:
        """Where a deferrable pod's failure surfaces: recorded the same way."""
        return self._recording_failure(context, super().trigger_reentry, context, event)

    def _recording_failure(self, context: Any, run: Any, *args: Any) -> Any:
        try:
            return run(*args)
        except Exception as exc:  # TaskDeferred is a BaseException: a deferral is not recorded
            ti = context["ti"]
            item = self.failure_item() if getattr(ti, "map_index", -1) >= 0 else None
            failures.record(ti, self.failure_reason(exc), item)
            raise

    def _known_pods(self) -> list[k8s.V1Pod]:
        # remote_pod: read back after the container ended (sync); pod: re-read on re-entry (deferrable).
        return [p for p in (getattr(self, "remote_pod", None), getattr(self, "pod", None)) if p is not None]

    def failure_reason(self, exc: BaseException) -> str:
        """The base container's own words when it ran, else the pod's status, else the exception."""
        pods = self._known_pods()
        for pod in pods:
            message = get_container_termination_message(pod, self.base_container_name)
            reason = failures.reason_from_output(message if isinstance(message, str) else None)
            if reason:
                return reason
        for pod in pods:
            status = getattr(pod, "status", None)
            if status is not None and getattr(status, "reason", None):
                return f"pod {status.reason}: {(status.message or '').strip()}".rstrip(": ")
        return failures.reason_from_exception(exc).splitlines()[0]

    def failure_item(self) -> str | None:
        """For a mapped step, what this item works on: its IMAGE, else its RELEASE_VERSION(-ARCH)."""
        specs = [
            getattr(p, "spec", None) for p in [*self._known_pods(), getattr(self, "pod_request_obj", None)]
        ]
        containers = [s.containers[0] for s in specs if s is not None and s.containers]
        env = {e.name: e.value for e in (containers[0].env or []) if e.value} if containers else {}
        if "IMAGE" in env:
            return env["IMAGE"]
        if "RELEASE_VERSION" in env:
            return "-".join(v for v in (env["RELEASE_VERSION"], env.get("RELEASE_ARCH")) if v)
        return None


LIB = "lib.sh"  # the helpers every step script uses (result file, token auth file, kubectl_retry)


def _read_scripts() -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(SCRIPTS.glob("*.sh"))}


# The packaged scripts, read once at import like the package's code: every parse puts each step's script
# in its pod's arguments, and when the package is the plugins folder the dag-processor has imported this
# module before it forks a parser, so no parse reads them again (26 file reads, ~0.75 ms per parse, #20).
# Without the plugins folder each parse imports this module and reads each script once, as before.
SCRIPT_TEXTS = _read_scripts()


def script(name: str) -> str:
    """What a step's pod runs: ``lib.sh``, then the packaged script, e.g. ``script("push_driver_image.sh")``.

    One static text (no value is spliced in), so the pod still needs nothing but ``bash -c``.
    """
    text = SCRIPT_TEXTS.get(name)
    if text is None:  # not among the scripts read at import: read it (FileNotFoundError names a missing one)
        text = (SCRIPTS / name).read_text()
    return SCRIPT_TEXTS[LIB] + text


def script_command(name: str) -> dict[str, list[str]]:
    """``cmds``/``arguments`` that run a packaged script with bash; $0 names the script in errors."""
    return {"cmds": ["bash", "-c"], "arguments": [script(name), name]}


@dataclass(frozen=True)
class SecretFile:
    """A Kubernetes Secret mounted read-only as a directory; ``env`` maps variables to files in it."""

    secret: str
    mount: str
    env: Mapping[str, str] = field(default_factory=dict)

    def kpo_secret(self) -> Secret:
        """The provider's volume Secret for this mount."""
        return Secret("volume", f"{SECRETS_ROOT}/{self.mount}", self.secret)

    def env_vars(self) -> dict[str, str]:
        """Environment variables pointing the script at the mounted files."""
        return {var: f"{SECRETS_ROOT}/{self.mount}/{key}" for var, key in self.env.items()}


def pull_secret(settings: Settings) -> SecretFile:
    """The OpenShift pull secret (Red Hat registries), as ``PULL_SECRET_FILE``."""
    return SecretFile(settings.pull_secret, "pull-secret", {"PULL_SECRET_FILE": ".dockerconfigjson"})


def push_secret(settings: Settings) -> SecretFile:
    """Credentials of the target repository, as ``PUSH_AUTH_FILE``."""
    return SecretFile(settings.push_secret, "push-secret", {"PUSH_AUTH_FILE": ".dockerconfigjson"})


def image_signing_secret(settings: Settings) -> SecretFile:
    """The sigstore key pair and passphrase (``cosign generate-key-pair k8s://...`` layout), as files."""
    return SecretFile(
        settings.image_signing_secret,
        "image-signing",
        {
            "SIGNING_KEY_FILE": "cosign.key",
            "SIGNING_PASSPHRASE_FILE": "cosign.password",
            "SIGNING_PUBLIC_KEY_FILE": "cosign.pub",
        },
    )


def rhsm_secret(settings: Settings) -> SecretFile:
    """Red Hat subscription org id and activation key, as two files."""
    return SecretFile(
        settings.rhsm_secret,
        "rhsm",
        {"RHSM_ORG_FILE": "org", "RHSM_ACTIVATIONKEY_FILE": "activationkey"},
    )


def optional_secret_volume(
    name: str, secret_name: str, keys: tuple[str, ...]
) -> tuple[k8s.V1Volume, k8s.V1VolumeMount]:
    """Only ``keys`` of a Secret, read-only at ``SECRETS_ROOT/<name>``. Optional: a missing Secret is an
    empty folder (the script says what is absent), never a pod stuck mounting."""
    source = k8s.V1SecretVolumeSource(
        secret_name=secret_name,
        optional=True,
        items=[k8s.V1KeyToPath(key=key, path=key, local_vars_configuration=MODEL_CONFIG) for key in keys],
        local_vars_configuration=MODEL_CONFIG,
    )
    volume = k8s.V1Volume(name=name, secret=source, local_vars_configuration=MODEL_CONFIG)
    mount = k8s.V1VolumeMount(
        name=name, mount_path=f"{SECRETS_ROOT}/{name}", read_only=True, local_vars_configuration=MODEL_CONFIG
    )
    return volume, mount


def restricted_security() -> k8s.V1SecurityContext:
    """Non-root, read-only root file system, no capabilities: what every step but build runs with."""
    return k8s.V1SecurityContext(
        run_as_non_root=True,
        read_only_root_filesystem=True,
        allow_privilege_escalation=False,
        capabilities=k8s.V1Capabilities(drop=["ALL"], local_vars_configuration=MODEL_CONFIG),
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault", local_vars_configuration=MODEL_CONFIG),
        local_vars_configuration=MODEL_CONFIG,
    )


def sidecar_security() -> k8s.V1SecurityContext:
    """The XCom sidecar's context: restricted, as a fixed unprivileged user (its image defaults to root)."""
    context = restricted_security()
    context.run_as_user = 65534
    return context


def resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> k8s.V1ResourceRequirements:
    """Requests and limits, so a step never starves the node it lands on."""
    return k8s.V1ResourceRequirements(
        requests={"cpu": cpu, "memory": memory},
        limits={"cpu": cpu_limit, "memory": memory_limit},
        local_vars_configuration=MODEL_CONFIG,
    )


# Tools write caches under $HOME and temp files under /tmp; with a read-only root both are emptyDirs.
SCRATCH_VOLUME = k8s.V1Volume(
    name="scratch",
    empty_dir=k8s.V1EmptyDirVolumeSource(local_vars_configuration=MODEL_CONFIG),
    local_vars_configuration=MODEL_CONFIG,
)
SCRATCH_MOUNT = k8s.V1VolumeMount(
    name="scratch",
    mount_path="/tmp",  # noqa: S108 - a path in the pod
    local_vars_configuration=MODEL_CONFIG,
)


def step_env(task_id: str, secrets: tuple[SecretFile, ...], env: Mapping[str, str]) -> dict[str, str]:
    """A step's whole environment: its inputs plus the paths of its mounted secret files.

    Mapped steps get their environment per item, which replaces the partial's, so they call this too.
    """
    env_vars = {"HOME": SCRATCH_MOUNT.mount_path, "STEP": task_id, **env}
    for secret in secrets:
        env_vars.update(secret.env_vars())
    return env_vars


def tls_verify(settings: Settings) -> str:
    """``true``/``false`` for skopeo/podman's --tls-verify (false only for a plain-HTTP test registry)."""
    return "true" if settings.registry_tls_verify else "false"


def retry_delay(settings: Settings) -> timedelta:
    """The first retry's wait; the default when the setting is invalid (validate_inputs then names it).

    Read at parse time, so a bad value must not break parsing: the run fails cleanly in its first task.
    """
    seconds = settings.retry_delay_seconds
    valid = isinstance(seconds, int) and not isinstance(seconds, bool) and 1 <= seconds <= 3_600
    return timedelta(seconds=seconds if valid else Settings.retry_delay_seconds)


def step_kwargs(
    settings: Settings,
    *,
    task_id: str,
    service_account: str,
    script_name: str,
    image: str,
    env: Mapping[str, str] | None = None,
    secrets: tuple[SecretFile, ...] = (),
    container_resources: k8s.V1ResourceRequirements | None = None,
    security_context: k8s.V1SecurityContext | None = None,
    xcom: bool = True,
    api_access: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """Keyword arguments of ``StepPodOperator`` common to all steps, for one step."""
    return {
        "task_id": task_id,
        "name": task_id.replace("_", "-"),
        "namespace": settings.namespace,
        "kubernetes_conn_id": settings.kubernetes_conn_id,
        "image": image,
        **script_command(script_name),
        "env_vars": step_env(task_id, secrets, env or {}),
        "secrets": [s.kpo_secret() for s in secrets],
        "volumes": [SCRATCH_VOLUME],
        "volume_mounts": [SCRATCH_MOUNT],
        "service_account_name": SA_PREFIX + service_account,
        "automount_service_account_token": api_access,
        "container_security_context": security_context or restricted_security(),
        # KPO's XCom sidecar (alpine, root by default) only sleeps and is exec'd into: nobody will do.
        "xcom_sidecar_container_security_context": sidecar_security(),
        "container_resources": container_resources or resources("50m", "64Mi", "500m", "256Mi"),
        "labels": {
            "app.kubernetes.io/part-of": "nvidia-precompiled-drivers",
            "precompiled-drivers/step": task_id,
        },
        "do_xcom_push": xcom,
        "get_logs": True,
        "log_events_on_failure": True,
        # A failing container's log tail becomes its termination message: the reason the report shows.
        "termination_message_policy": "FallbackToLogsOnError",
        "on_finish_action": "delete_succeeded_pod",
        "startup_timeout_seconds": settings.startup_timeout_seconds,
        "poll_interval": settings.poll_seconds,
        "startup_check_interval_seconds": settings.poll_seconds,
        "retries": 2,
        "retry_delay": retry_delay(settings),
        "retry_exponential_backoff": True,
        **extra,
    }


# The pod operator's arguments that take Kubernetes client models, which a mapped step's partial carries
# as one PodModels value.
POD_MODEL_KWARGS = frozenset(
    {
        "volumes",
        "volume_mounts",
        "container_security_context",
        "xcom_sidecar_container_security_context",
        "container_resources",
        "security_context",
        "image_pull_secrets",
    }
)


@dataclass(frozen=True, repr=False)
class PodModels:
    """A mapped step's pod-spec models (volumes, mounts, security contexts, resources...) as one value
    of its partial; ``StepPodOperator`` spreads them back into its arguments when a pod's task is made.

    Why one value: the dag-processor serializes every value of a mapped task's partial at each re-parse,
    and it serializes a client model as its text (``str``: the model's every field, pretty-printed), about
    3 ms per parse for the mapped steps' models (#20). Nothing reads that text back: a task's pod is
    built from the DAG file, not from the serialized DAG. This value's text names the arguments it holds.
    """

    models: Mapping[str, Any]

    def __str__(self) -> str:
        return f"PodModels({', '.join(sorted(self.models))})"

    __repr__ = __str__


def step_partial(kwargs: Mapping[str, Any], per_item: tuple[str, ...] = ("env_vars",)) -> OperatorPartial:
    """``StepPodOperator.partial`` for a mapped step, without the keys each item supplies.

    ``expand_kwargs`` refuses at run time ("unmappable or already specified argument") a key given
    both to ``partial`` and by an item, so the per-item keys must be left out of the partial. The
    client models go in as one ``PodModels`` (see there).
    """
    shared = {k: value for k, value in kwargs.items() if k not in per_item}
    models = {k: shared.pop(k) for k in sorted(POD_MODEL_KWARGS & shared.keys())}
    return StepPodOperator.partial(**shared, pod_models=PodModels(models))


def pod_task(
    step: Step,
    kwargs: Mapping[str, Any],
    inputs: Any,
    *,
    per_item: tuple[str, ...] = ("env_vars",),
    **task_args: Any,
) -> Any:
    """The DAG task of a pod step: ``kwargs`` (its ``pod``) with ``task_args`` over them, and its inputs.

    An unmapped step runs one pod whose environment is ``inputs`` (a planning task's XCom, or a dict);
    a mapped step (``step.per``) runs one pod per item of ``inputs``, each item holding ``per_item``.
    """
    merged = {**kwargs, **task_args}
    if step.per is None:
        return StepPodOperator(**{**merged, "env_vars": inputs})
    return step_partial(merged, per_item=per_item).expand_kwargs(inputs)
