"""Deployment settings: where the pipeline runs and what it talks to, read from environment variables.

These describe the installation, not a run, so they come from the environment of the Airflow
components (docker-compose's env file, a Helm values file...), are cheap to read at parse time and
are validated at use by the first task, before any pod starts. :func:`installation` is the one object
the DAG and the steps share; the run's own choices (the form, see ``form.py``) are ``config.RunConfig``,
which holds no copy of these.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from functools import lru_cache

from precompiled_drivers import fleet as fleet_config
from precompiled_drivers import grammar as g
from precompiled_drivers import validation as v

PREFIX = "PRECOMPILED_DRIVERS_"


@dataclass(frozen=True)
class Settings:
    """Every installation-level knob, with the default a stock OpenShift cluster needs."""

    namespace: str = "nvidia-precompiled-drivers"
    operator_namespace: str = "nvidia-gpu-operator"
    operator_deployment: str = "gpu-operator"
    policy_name: str = "gpu-cluster-policy"
    kubernetes_conn_id: str = "kubernetes_default"
    cli_image: str = "quay.io/openshift/origin-cli:4.18"
    # podman + make + git: built from deploy/builder/Containerfile into the pipeline namespace.
    builder_image: str = (
        "image-registry.openshift-image-registry.svc:5000/nvidia-precompiled-drivers/driver-builder:latest"
    )
    skopeo_image: str = "quay.io/skopeo/stable:v1.18"
    release_image_repository: str = "quay.io/openshift-release-dev/ocp-release"
    driver_repo_url: str = "https://github.com/NVIDIA/gpu-driver-container.git"
    staging_repository: str = "image-registry.openshift-image-registry.svc:5000/nvidia-precompiled-drivers"
    # Names of Kubernetes Secrets, never their contents.
    pull_secret: str = "precompiled-drivers-pull-secret"  # noqa: S105
    rhsm_secret: str = "precompiled-drivers-rhsm"  # noqa: S105
    push_secret: str = "precompiled-drivers-push-secret"  # noqa: S105
    # Secure Boot: private_key.priv + public_key.der, used by NVIDIA's Dockerfile to sign the modules
    # whenever this Secret exists; required = a run without it is refused before any build (signing.py).
    module_signing_secret: str = "precompiled-drivers-module-signing"  # noqa: S105
    require_module_signing: bool = False
    # Sign every pushed image (sigstore, stored next to it in the registry) with cosign.key from this Secret.
    sign_images: bool = False
    image_signing_secret: str = "precompiled-drivers-image-signing"  # noqa: S105
    target_repository: str = ""
    image_name: str = "driver"
    registry_tls_verify: bool = True
    deferrable: bool = False
    startup_timeout_seconds: int = 600
    poll_seconds: int = 2
    # First wait before a failed step pod is retried; each further retry waits about twice as long.
    retry_delay_seconds: int = 30
    # Cron fallback for installations without a triggerer ("" = event-driven only).
    cron: str = ""
    # Also build aarch64 64k-page images (BUILD_ARCH=aarch64+64k) for every aarch64 release, before any
    # GPU node runs a 64k kernel (when one does, they are built anyway): look-ahead for a 64k node pool.
    build_64k: bool = False
    # Where people read the README (your fork's page, an internal wiki); the DAG's docs in the UI link it.
    docs_url: str = ""
    # Ask a person (the UI's Required Actions, or the REST API) before the ClusterPolicy is patched; the
    # form's "Require approval" overrides it per run. Production clusters with scheduled runs want it.
    require_approval: bool = False
    # No answer within this time: the rollout is not approved (no patch, the images stay published).
    approval_timeout_seconds: int = 86_400
    # E-mail on a failed run, a rollback and a pending approval: comma-separated addresses ("" = off),
    # sent through this Airflow SMTP connection, from this address ("" = the connection's from_email).
    notify_email: str = ""
    notify_from: str = ""
    smtp_conn_id: str = "smtp_default"
    # The fleet: a JSON list of clusters (fleet.py); "" = one cluster, on kubernetes_conn_id.
    clusters: str = ""
    # After verify_rollout, one pod per GPU-node kernel runs a CUDA workload on one GPU (check_gpu_workload);
    # a failure rolls the patch back. Off: verified driver pods are trusted as they are.
    gpu_check: bool = True
    # NVIDIA's CUDA vectorAdd sample (what NVIDIA's OpenShift docs run to test a GPU); set a mirror's copy
    # on a disconnected cluster. The command "" runs the image's own (vectorAdd); e.g. "nvidia-smi -L".
    gpu_check_image: str = "nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-ubi8"
    gpu_check_command: str = ""
    # The whole check, image pulls included; a pod not done by then fails the check (and rolls back).
    gpu_check_timeout_seconds: int = 600

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``PRECOMPILED_DRIVERS_<FIELD>`` variables; unset ones keep their default."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None:
                continue
            if f.type == "bool":
                # An unknown word (or an empty value) stays a string so validate() names the variable:
                # REGISTRY_TLS_VERIFY=ture must not silently turn TLS verification off.
                word = g.boolean_word(raw)
                values[f.name] = raw if word is None else word
            elif f.type == "int":
                values[f.name] = int(raw) if raw.strip().isdigit() else raw
            else:
                values[f.name] = raw
        return cls(**values)  # type: ignore[arg-type]

    def validate(self) -> Settings:
        """Check every value, naming the environment variable that holds a bad one."""

        def name(field: str) -> str:
            return PREFIX + field.upper()

        v.dns_label(self.namespace, name("namespace"))
        v.dns_label(self.operator_namespace, name("operator_namespace"))
        for field in (
            "operator_deployment",
            "policy_name",
            "pull_secret",
            "rhsm_secret",
            "push_secret",
            "module_signing_secret",
            "image_signing_secret",
        ):
            v.k8s_name(getattr(self, field), name(field))
        v.k8s_name(self.kubernetes_conn_id.replace("_", "-"), name("kubernetes_conn_id"))
        for field in ("cli_image", "builder_image", "skopeo_image"):
            v.image_ref(getattr(self, field), name(field))
        v.repository(self.release_image_repository, name("release_image_repository"))
        v.repository(self.staging_repository, name("staging_repository"))
        v.https_url(self.driver_repo_url, name("driver_repo_url"))
        if self.docs_url:
            v.https_url(self.docs_url, name("docs_url"))
        v.boolean(self.registry_tls_verify, name("registry_tls_verify"))
        v.boolean(self.deferrable, name("deferrable"))
        v.boolean(self.build_64k, name("build_64k"))
        v.boolean(self.require_module_signing, name("require_module_signing"))
        v.boolean(self.sign_images, name("sign_images"))
        v.positive_int(self.startup_timeout_seconds, name("startup_timeout_seconds"), 86_400)
        v.positive_int(self.poll_seconds, name("poll_seconds"), 600)
        v.positive_int(self.retry_delay_seconds, name("retry_delay_seconds"), 3_600)
        v.boolean(self.require_approval, name("require_approval"))
        v.positive_int(self.approval_timeout_seconds, name("approval_timeout_seconds"), 7 * 86_400)
        self.notify_recipients()
        if self.notify_from:
            v.email_address(self.notify_from, name("notify_from"))
        v.k8s_name(self.smtp_conn_id.replace("_", "-"), name("smtp_conn_id"))
        self.fleet()
        v.boolean(self.gpu_check, name("gpu_check"))
        v.image_ref(self.gpu_check_image, name("gpu_check_image"))
        self.gpu_check_words()
        v.positive_int(self.gpu_check_timeout_seconds, name("gpu_check_timeout_seconds"), 86_400)
        return self

    def fleet(self) -> tuple[fleet_config.Cluster, ...]:
        """The clusters this installation covers, wave by wave (one, ``default``, unless CLUSTERS is set)."""
        return fleet_config.parse_fleet(self.clusters, self.kubernetes_conn_id)

    def gpu_check_words(self) -> list[str]:
        """The check pod's command, word by word ([] = the image's own entrypoint), each word checked."""
        return v.command_words(self.gpu_check_command, PREFIX + "GPU_CHECK_COMMAND")

    def notify_recipients(self) -> list[str]:
        """The notification addresses, each checked ([] = notifications off)."""
        return [
            v.email_address(address.strip(), f"{PREFIX}NOTIFY_EMAIL[{i}]")
            for i, address in enumerate(self.notify_email.split(","))
            if address.strip()  # "a@x.org, " is one address, not an error
        ]

    def to_dict(self) -> dict[str, object]:
        """Plain dict for XCom and reports (holds names of Secrets, never their contents)."""
        return asdict(self)


def installation(environ: Mapping[str, str] | None = None) -> Settings:
    """The installation's settings: the one object the DAG's pods and the Python steps both read.

    The DAG file builds its operators from it at parse time, and the Python steps (which run in the
    process that parsed the file) build pod environments from it, so no pod gets a value from two copies.
    The object is the same while the ``PRECOMPILED_DRIVERS_*`` variables are; ``validate_inputs``
    validates it, before any pod starts.
    """
    env = os.environ if environ is None else environ
    return _from_variables(tuple(sorted((k, v) for k, v in env.items() if k.startswith(PREFIX))))


@lru_cache(maxsize=8)
def _from_variables(variables: tuple[tuple[str, str], ...]) -> Settings:
    return Settings.from_env(dict(variables))
