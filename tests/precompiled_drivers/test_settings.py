"""Settings: PRECOMPILED_DRIVERS_* environment variables, parsed and validated with the variable named."""

from __future__ import annotations

from dataclasses import fields

import pytest

from precompiled_drivers.config import run_config
from precompiled_drivers.settings import PREFIX, Settings
from precompiled_drivers.validation import ValidationError

PARAMS = {
    "driver_versions": ["570.158.01"],
    "cuda_version": "12.8.1",
    "repository": "quay.io/acme/nvidia",
    "driver_repo_ref": "main",
}


def test_defaults_are_valid() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.validate() is settings


def test_unrelated_variables_are_ignored() -> None:
    assert Settings.from_env({"NAMESPACE": "other", "PRECOMPILED_DRIVERS": "x"}) == Settings()


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRECOMPILED_DRIVERS_NAMESPACE", "gpu-builds")
    assert Settings.from_env().namespace == "gpu-builds"


def test_every_field_has_its_variable() -> None:
    env = {
        "PRECOMPILED_DRIVERS_NAMESPACE": "ns-a",
        "PRECOMPILED_DRIVERS_PULL_SECRET": "my-pull",
        "PRECOMPILED_DRIVERS_CLI_IMAGE": "registry.example.com/cli:1",
        "PRECOMPILED_DRIVERS_TARGET_REPOSITORY": "quay.io/acme/nvidia",
        "PRECOMPILED_DRIVERS_STARTUP_TIMEOUT_SECONDS": "120",
        "PRECOMPILED_DRIVERS_DEFERRABLE": "true",
    }
    settings = Settings.from_env(env).validate()
    assert settings.namespace == "ns-a"
    assert settings.pull_secret == "my-pull"
    assert settings.cli_image == "registry.example.com/cli:1"
    assert settings.target_repository == "quay.io/acme/nvidia"
    assert settings.startup_timeout_seconds == 120
    assert settings.deferrable is True
    # The variable names are exactly PREFIX + FIELD.
    assert {PREFIX + f.name.upper() for f in fields(Settings)} >= set(env)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        (" yes ", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("False", False),
        ("no", False),
        ("off", False),
    ],
)
def test_bool_parsing(raw: str, expected: bool) -> None:
    settings = Settings.from_env({"PRECOMPILED_DRIVERS_REGISTRY_TLS_VERIFY": raw}).validate()
    assert settings.registry_tls_verify is expected


@pytest.mark.parametrize("raw", ["ture", "", "2", "enabled"])
def test_unknown_bool_is_refused_naming_the_variable(raw: str) -> None:
    # A typo must not silently switch TLS verification off.
    settings = Settings.from_env({"PRECOMPILED_DRIVERS_REGISTRY_TLS_VERIFY": raw})
    with pytest.raises(ValidationError) as err:
        settings.validate()
    assert err.value.field == "PRECOMPILED_DRIVERS_REGISTRY_TLS_VERIFY"


@pytest.mark.parametrize(("raw", "expected"), [("5", 5), (" 30 ", 30), ("600", 600)])
def test_int_parsing(raw: str, expected: int) -> None:
    assert Settings.from_env({"PRECOMPILED_DRIVERS_POLL_SECONDS": raw}).validate().poll_seconds == expected


@pytest.mark.parametrize("raw", ["-1", "0", "1.5", "ten", "", "601"])
def test_bad_int_is_refused_naming_the_variable(raw: str) -> None:
    settings = Settings.from_env({"PRECOMPILED_DRIVERS_POLL_SECONDS": raw})
    with pytest.raises(ValidationError) as err:
        settings.validate()
    assert err.value.field == "PRECOMPILED_DRIVERS_POLL_SECONDS"


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("namespace", "Nvidia_Drivers"),
        ("namespace", "a" * 64),
        ("operator_namespace", "ns;rm"),
        ("operator_deployment", "gpu operator"),
        ("policy_name", "Policy"),
        ("kubernetes_conn_id", "conn id"),
        ("cli_image", "quay.io/openshift/origin-cli"),  # no tag
        ("builder_image", "podman"),
        ("skopeo_image", "quay.io/skopeo/stable:$(id)"),
        ("release_image_repository", "https://quay.io/openshift"),
        ("staging_repository", "registry"),
        ("driver_repo_url", "http://github.com/NVIDIA/gpu-driver-container.git"),
        ("driver_repo_url", "git@github.com:NVIDIA/gpu-driver-container.git"),
        ("pull_secret", "Pull_Secret"),
        ("rhsm_secret", "-rhsm"),
        ("push_secret", "push/secret"),
        ("startup_timeout_seconds", "86401"),
        ("deferrable", "sometimes"),
        ("require_approval", "maybe"),
        ("approval_timeout_seconds", "0"),
        ("approval_timeout_seconds", str(7 * 86_400 + 1)),
        ("approval_timeout_seconds", "1h"),
        ("notify_from", "airflow at example.org"),
        ("notify_from", "root"),
        ("smtp_conn_id", "smtp default"),
        ("gpu_check", "maybe"),
        ("gpu_check_image", "nvcr.io/nvidia/k8s/cuda-sample"),  # no tag
        ("gpu_check_command", "nvidia-smi && reboot"),
        ("gpu_check_timeout_seconds", "0"),
    ],
)
def test_bad_value_names_the_variable(field: str, raw: str) -> None:
    variable = PREFIX + field.upper()
    settings = Settings.from_env({variable: raw})
    with pytest.raises(ValidationError) as err:
        settings.validate()
    assert err.value.field == variable
    assert str(err.value).startswith(variable + ":")


def test_local_http_driver_repo_is_allowed() -> None:
    settings = Settings.from_env({"PRECOMPILED_DRIVERS_DRIVER_REPO_URL": "http://127.0.0.1:8080/recipe.git"})
    assert settings.validate().driver_repo_url == "http://127.0.0.1:8080/recipe.git"


def test_to_dict_holds_secret_names_only() -> None:
    data = Settings().to_dict()
    assert data["pull_secret"] == "precompiled-drivers-pull-secret"
    assert data["rhsm_secret"] == "precompiled-drivers-rhsm"
    assert data["push_secret"] == "precompiled-drivers-push-secret"
    assert Settings(**data) == Settings()


def test_the_dag_and_the_steps_share_one_settings_object(monkeypatch: pytest.MonkeyPatch) -> None:
    """The operators (built at parse time) and the Python steps' pod environments read one object."""
    from precompiled_drivers import tasks
    from precompiled_drivers.settings import installation

    monkeypatch.setenv("PRECOMPILED_DRIVERS_NAMESPACE", "gpu-builds")
    first = installation()
    assert first is installation() and first.namespace == "gpu-builds"
    _cfg, steps_settings = tasks._load(run_config(PARAMS, first).to_dict())
    assert steps_settings is first
    # Another environment is another installation: a new object, never a stale one.
    monkeypatch.setenv("PRECOMPILED_DRIVERS_NAMESPACE", "gpu-other")
    assert installation().namespace == "gpu-other"


def test_approval_and_notification_defaults_are_off() -> None:
    settings = Settings()
    assert settings.require_approval is False
    assert settings.approval_timeout_seconds == 86_400
    assert settings.notify_recipients() == []
    assert settings.smtp_conn_id == "smtp_default"


def test_approval_and_notification_variables() -> None:
    env = {
        "PRECOMPILED_DRIVERS_REQUIRE_APPROVAL": "yes",
        "PRECOMPILED_DRIVERS_APPROVAL_TIMEOUT_SECONDS": "3600",
        "PRECOMPILED_DRIVERS_NOTIFY_EMAIL": "gpu-team@example.org, Oncall+GPU@Example.ORG,",
        "PRECOMPILED_DRIVERS_NOTIFY_FROM": "airflow@example.org",
        "PRECOMPILED_DRIVERS_SMTP_CONN_ID": "smtp_relay",
    }
    settings = Settings.from_env(env).validate()
    assert settings.require_approval is True
    assert settings.approval_timeout_seconds == 3600
    # Spaces and a trailing comma are tolerated; each address is checked.
    assert settings.notify_recipients() == ["gpu-team@example.org", "Oncall+GPU@Example.ORG"]
    assert settings.notify_from == "airflow@example.org"
    assert settings.smtp_conn_id == "smtp_relay"


@pytest.mark.parametrize(
    ("raw", "index", "why"),
    [
        ("gpu-team@example.org, nobody", 1, "expected an e-mail address like gpu-team@example.com"),
        ("a@example.org;rm -rf /", 0, "contains shell metacharacter ';'"),
        ("Ops <ops@example.org>", 0, "contains whitespace"),
        ("ops@example..org", 0, "contains '..'"),
    ],
)
def test_a_bad_notification_address_is_named_with_its_position(raw: str, index: int, why: str) -> None:
    settings = Settings.from_env({"PRECOMPILED_DRIVERS_NOTIFY_EMAIL": raw})
    with pytest.raises(ValidationError) as err:
        settings.validate()
    assert err.value.field == f"PRECOMPILED_DRIVERS_NOTIFY_EMAIL[{index}]"
    assert why in str(err.value)


def test_gpu_check_is_on_by_default_with_nvidias_vectoradd_sample() -> None:
    settings = Settings().validate()
    assert settings.gpu_check is True
    assert settings.gpu_check_image == "nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-ubi8"
    assert settings.gpu_check_words() == []  # the image's own command
    assert settings.gpu_check_timeout_seconds == 600


def test_gpu_check_variables() -> None:
    settings = Settings.from_env(
        {
            PREFIX + "GPU_CHECK": "off",
            PREFIX + "GPU_CHECK_IMAGE": "mirror.example.com/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-ubi8",
            PREFIX + "GPU_CHECK_COMMAND": "nvidia-smi -L",
            PREFIX + "GPU_CHECK_TIMEOUT_SECONDS": "120",
        }
    ).validate()
    assert settings.gpu_check is False
    assert settings.gpu_check_image.startswith("mirror.example.com/")
    assert settings.gpu_check_words() == ["nvidia-smi", "-L"]
    assert settings.gpu_check_timeout_seconds == 120
