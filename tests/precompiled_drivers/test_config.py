"""RunConfig: the form's params (and release events) validated once, errors naming the field."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from precompiled_drivers.config import RunConfig, Target, run_config
from precompiled_drivers.settings import Settings
from precompiled_drivers.validation import ValidationError

REF = "06a208ca9747c82b1ba99b76ecdcf2469b0a0207"


def params(**overrides: Any) -> dict[str, Any]:
    """What the form sends with its defaults, plus a repository."""
    base: dict[str, Any] = {
        "ocp_versions": ["4.18.12"],
        "arches": ["x86_64"],
        "driver_versions": ["570.158.01"],
        "rollout_driver_version": "",
        "cuda_version": "12.8.1",
        "repository": "quay.io/acme/nvidia",
        "image_name": "driver",
        "driver_repo_ref": REF,
        "operator_version": "",
        "include_cluster_release": True,
        "force_rebuild": False,
        "dry_run": False,
        "verify_timeout_minutes": 30,
    }
    base.update(overrides)
    return base


def test_defaults() -> None:
    cfg = run_config(params(), Settings())
    assert cfg.targets == (Target("4.18.12", "x86_64", "form"),)
    assert cfg.arches == ("x86_64",)
    assert cfg.driver_versions == ("570.158.01",)
    assert cfg.rollout_driver_version == "570.158.01"  # empty means the first built version
    assert cfg.cuda_version == "12.8.1"
    assert cfg.repository == "quay.io/acme/nvidia"
    assert cfg.image_name == "driver"
    assert cfg.driver_repo_ref == REF
    assert cfg.operator_version == ""
    assert cfg.include_cluster_release is True
    assert cfg.force_rebuild is False
    assert cfg.dry_run is False
    assert cfg.verify_timeout_seconds == 30 * 60
    # The run's choices only: no copy of the installation's settings or the look-ahead's.
    assert set(cfg.to_dict()) == {f.name for f in dataclasses.fields(RunConfig)}
    assert not {"settings", "upgrade_lookahead", "lookahead_limit"} & set(cfg.to_dict())


def test_missing_optional_params_take_defaults() -> None:
    minimal = {
        k: v for k, v in params().items() if k in ("driver_versions", "cuda_version", "driver_repo_ref")
    }
    cfg = run_config(minimal, Settings(target_repository="quay.io/acme/nvidia"))
    assert cfg.arches == ("x86_64",)
    assert cfg.targets == ()
    assert cfg.include_cluster_release is True
    assert cfg.verify_timeout_seconds == 1800


def test_round_trip_through_dict() -> None:
    cfg = run_config(params(ocp_versions=["4.18.12", "4.19.3"], arches=["x86_64", "aarch64"]), Settings())
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("arches", "expected"),
    [
        (["amd64"], ("x86_64",)),
        (["arm64"], ("aarch64",)),
        (["x86_64", "arm64"], ("x86_64", "aarch64")),
    ],
)
def test_arch_aliases(arches: list[str], expected: tuple[str, ...]) -> None:
    cfg = run_config(params(arches=arches), Settings())
    assert cfg.arches == expected
    assert {t.arch for t in cfg.targets} == set(expected)


def test_targets_are_versions_times_arches() -> None:
    cfg = run_config(params(ocp_versions=["4.18.12", "4.19.3"], arches=["amd64", "aarch64"]), Settings())
    assert [t.key for t in cfg.targets] == [
        ("4.18.12", "x86_64"),
        ("4.18.12", "aarch64"),
        ("4.19.3", "x86_64"),
        ("4.19.3", "aarch64"),
    ]


def test_event_releases_become_targets_and_dedup_with_form() -> None:
    events = [{"version": "4.19.3", "arch": "amd64"}, {"version": "4.18.12", "arch": "x86_64"}]
    cfg = run_config(params(), Settings(), events)
    assert cfg.targets == (Target("4.18.12", "x86_64", "form"), Target("4.19.3", "x86_64", "event"))


def test_an_events_clusters_travel_with_its_target_and_a_plain_target_is_as_before() -> None:
    events = [{"version": "4.19.3", "arch": "x86_64", "clusters": ["prod-a", "prod-b"]}]
    cfg = run_config(params(), Settings(), events)
    assert cfg.targets[-1] == Target("4.19.3", "x86_64", "event", ("prod-a", "prod-b"))
    data = cfg.to_dict()
    assert data["targets"][0] == {"version": "4.18.12", "arch": "x86_64", "source": "form"}
    assert list(data["targets"][-1]["clusters"]) == ["prod-a", "prod-b"]
    assert RunConfig.from_dict(json.loads(json.dumps(data))) == cfg


@pytest.mark.parametrize(
    ("events", "field"),
    [
        (["4.19.3"], "event[0]"),
        ([{"version": "4.19.3"}], "event[0].arch"),
        (
            [{"version": "4.19.3", "arch": "x86_64"}, {"version": "4.19;id", "arch": "x86_64"}],
            "event[1].version",
        ),
        ([{"version": "4.19.3", "arch": "s390x"}], "event[0].arch"),
    ],
)
def test_bad_event_names_it(events: list[Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        run_config(params(), Settings(), events)
    assert err.value.field == field


def test_rollout_version_chosen_among_built() -> None:
    cfg = run_config(
        params(driver_versions=["570.158.01", "580.65.06"], rollout_driver_version="580.65.06"), Settings()
    )
    assert cfg.rollout_driver_version == "580.65.06"


def test_rollout_version_not_built_is_refused() -> None:
    with pytest.raises(ValidationError) as err:
        run_config(params(rollout_driver_version="580.65.06"), Settings())
    assert err.value.field == "rollout_driver_version"
    assert "570.158.01" in str(err.value)


def test_missing_repository_names_field_and_env_var() -> None:
    with pytest.raises(ValidationError) as err:
        run_config(params(repository=""), Settings())
    assert err.value.field == "repository"
    assert "PRECOMPILED_DRIVERS_TARGET_REPOSITORY" in str(err.value)


def test_repository_falls_back_to_settings() -> None:
    cfg = run_config(params(repository=""), Settings(target_repository="registry.example.com:5000/gpu"))
    assert cfg.repository == "registry.example.com:5000/gpu"


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"ocp_versions": ["4.18"]}, "ocp_versions[0]"),
        ({"ocp_versions": "4.18.12"}, "ocp_versions"),
        ({"ocp_versions": ["4.18.12", "4.18.12"]}, "ocp_versions[1]"),
        ({"arches": ["s390x"]}, "arches[0]"),
        ({"arches": []}, "arches"),
        ({"arches": ["amd64", "x86_64"]}, "arches[1]"),
        ({"driver_versions": []}, "driver_versions"),
        ({"driver_versions": ["570.158.01;reboot"]}, "driver_versions[0]"),
        ({"rollout_driver_version": "570"}, "rollout_driver_version"),
        ({"cuda_version": "12.8"}, "cuda_version"),
        ({"repository": "Quay.io/Acme"}, "repository"),
        ({"repository": "quay.io/acme/$(id)"}, "repository"),
        ({"image_name": "Driver"}, "image_name"),
        ({"image_name": "driver/x"}, "image_name"),
        ({"driver_repo_ref": "--upload-pack=touch"}, "driver_repo_ref"),
        ({"driver_repo_ref": "a..b"}, "driver_repo_ref"),
        ({"operator_version": "latest"}, "operator_version"),
        ({"include_cluster_release": "maybe"}, "include_cluster_release"),
        ({"force_rebuild": 1}, "force_rebuild"),
        ({"dry_run": "yes"}, "dry_run"),
        ({"verify_timeout_minutes": 0}, "verify_timeout_minutes"),
        ({"verify_timeout_minutes": 241}, "verify_timeout_minutes"),
        ({"verify_timeout_minutes": True}, "verify_timeout_minutes"),
    ],
)
def test_bad_values_name_the_field(override: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        run_config(params(**override), Settings())
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}:")


def test_operator_version_normalized() -> None:
    assert run_config(params(operator_version="26.7.0"), Settings()).operator_version == "v26.7.0"


def test_form_strings_for_booleans() -> None:
    cfg = run_config(params(dry_run="True", force_rebuild="false"), Settings())
    assert (cfg.dry_run, cfg.force_rebuild) == (True, False)


@pytest.mark.parametrize(("minutes", "seconds"), [(5, 300), (0.25, 15), (0.1, 6), (240, 14400)])
def test_verify_timeout_minutes_may_be_fractions(minutes: float, seconds: int) -> None:
    assert run_config(params(verify_timeout_minutes=minutes), Settings()).verify_timeout_seconds == seconds


@pytest.mark.parametrize("minutes", ["5", 0.05, float("nan"), float("inf"), None])
def test_bad_verify_timeout(minutes: object) -> None:
    with pytest.raises(ValidationError) as err:
        run_config(params(verify_timeout_minutes=minutes), Settings())
    assert err.value.field == "verify_timeout_minutes"


def test_bad_settings_are_rejected_first() -> None:
    with pytest.raises(ValidationError) as err:
        run_config(params(), Settings(namespace="Bad_NS"))
    assert err.value.field == "PRECOMPILED_DRIVERS_NAMESPACE"


def test_approval_follows_the_installation_unless_the_run_says_otherwise() -> None:
    assert run_config(params(), Settings()).require_approval is False
    assert run_config(params(), Settings(require_approval=True)).require_approval is True
    # The form's field wins; null (emptied) or missing (a release event's run) means the setting.
    assert (
        run_config(params(require_approval=False), Settings(require_approval=True)).require_approval is False
    )
    assert run_config(params(require_approval=True), Settings()).require_approval is True
    assert run_config(params(require_approval=None), Settings(require_approval=True)).require_approval is True
    cfg = run_config(params(require_approval=True), Settings())
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_a_non_boolean_approval_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as err:
        run_config(params(require_approval="maybe"), Settings())
    assert err.value.field == "require_approval"


def test_nvidiadriver_mode_fields_default_to_no_restart_and_the_smallest_pool() -> None:
    cfg = run_config(params(), Settings())
    assert (cfg.allow_driver_restart, cfg.canary_pool) == (False, "")
    # Emptied form fields (null) and a REST caller's "" mean the defaults too.
    cfg = run_config(params(allow_driver_restart=None, canary_pool=""), Settings())
    assert (cfg.allow_driver_restart, cfg.canary_pool) == (False, "")
    cfg = run_config(params(allow_driver_restart=True, canary_pool="gpu-driver-rhcos"), Settings())
    assert (cfg.allow_driver_restart, cfg.canary_pool) == (True, "gpu-driver-rhcos")
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("allow_driver_restart", "maybe"),
        ("canary_pool", "Pool_A"),
        ("canary_pool", "a;id"),
        ("canary_pool", 3),
    ],
)
def test_bad_nvidiadriver_mode_fields_are_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as err:
        run_config(params(**{field: value}), Settings())
    assert err.value.field == field
    assert field in str(err.value)
