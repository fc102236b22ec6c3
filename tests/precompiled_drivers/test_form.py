"""The trigger form's schema: it works with its defaults, and it refuses what validation refuses.

Airflow checks a manual run's conf against each ``Param``'s JSON Schema with jsonschema
(``airflow.sdk.definitions.param.Param.resolve``) before the run exists; the same check is done here.
"""

from __future__ import annotations

import math
from typing import Any

import jsonschema
import pytest
from airflow.sdk.definitions.param import ParamsDict
from test_hostile_inputs import FORM_CASES, valid_params

from precompiled_drivers import form, grammar, validation
from precompiled_drivers.config import run_config
from precompiled_drivers.settings import Settings

SETTINGS = Settings(target_repository="quay.io/acme/nvidia")
PARAMS = form.form_params(SETTINGS)
OPTIONAL = ("ocp_versions", "rollout_driver_version", "repository", "operator_version", "canary_pool")


def schema_refuses(field: str, value: Any) -> bool:
    """What Airflow's ``Param.resolve`` does with a value: jsonschema with the format checker, in the
    dialect the field declares (``form.SCHEMA_DIALECT``, draft 7)."""
    schema = PARAMS[field].schema
    validator = jsonschema.validators.validator_for(schema)
    assert validator is jsonschema.Draft7Validator, (field, schema.get("$schema"))
    return not validator(schema, format_checker=jsonschema.FormatChecker()).is_valid(value)


def test_the_defaults_pass_the_form_and_validation() -> None:
    resolved = ParamsDict(PARAMS).validate()
    cfg = run_config(resolved, SETTINGS)
    assert cfg.repository == "quay.io/acme/nvidia"
    assert cfg.rollout_driver_version == form.DEFAULT_DRIVER_VERSIONS[0]
    assert cfg.operator_version == ""  # detected from the cluster


def test_without_a_configured_repository_the_form_still_opens_with_valid_defaults() -> None:
    """An installation without PRECOMPILED_DRIVERS_TARGET_REPOSITORY: the field starts empty (null),
    which the schema accepts; validation then asks for a repository by name."""
    params = form.form_params(Settings())
    resolved = ParamsDict(params).validate()
    assert resolved["repository"] is None
    with pytest.raises(validation.ValidationError, match="repository"):
        run_config(resolved, Settings())


@pytest.mark.parametrize("field", OPTIONAL)
def test_optional_fields_are_nullable_so_the_ui_does_not_require_them(field: str) -> None:
    """Airflow's UI (components/FlexibleForm/isParamRequired.tsx) requires every field whose type does
    not list "null", and sends null for a field the user emptied: both must mean "the default"."""
    schema_type = PARAMS[field].schema["type"]
    assert isinstance(schema_type, list) and "null" in schema_type
    assert not schema_refuses(field, None)
    params = {**valid_params(), field: None}
    if field == "repository":
        params["repository"] = None  # falls back to the installation's repository
    run_config(params, SETTINGS)


@pytest.mark.parametrize("field", ("rollout_driver_version", "repository", "operator_version", "canary_pool"))
def test_optional_text_fields_accept_the_empty_string_too(field: str) -> None:
    """A REST caller's "" means the default as null does."""
    assert not schema_refuses(field, "")
    run_config({**valid_params(), field: ""}, SETTINGS)


def test_required_fields_are_not_nullable() -> None:
    for field in set(PARAMS) - set(OPTIONAL):
        schema_type = PARAMS[field].schema["type"]
        assert schema_type != "null" and "null" not in schema_type, field


# Each form field and the grammar that owns its shape (grammar.py); validation reads the same owner.
FIELD_GRAMMARS = {
    "ocp_versions": (grammar.OCP_VERSION, False),
    "driver_versions": (grammar.DRIVER_VERSION, False),
    "rollout_driver_version": (grammar.DRIVER_VERSION, True),
    "cuda_version": (grammar.CUDA_VERSION, False),
    "repository": (grammar.REPOSITORY, True),
    "image_name": (grammar.IMAGE_NAME, False),
    "driver_repo_ref": (grammar.GIT_REF, False),
    "operator_version": (grammar.OPERATOR_VERSION, True),
    "canary_pool": (grammar.NVIDIA_DRIVER_NAME, True),
}


@pytest.mark.parametrize("field", FIELD_GRAMMARS)
def test_the_form_patterns_come_from_the_grammar_owners(field: str) -> None:
    """One owner: the form's pattern and length are the grammar's; validation refuses with its message."""
    owner, optional = FIELD_GRAMMARS[field]
    schema = PARAMS[field].schema
    keywords = schema["items"] if schema.get("items") else schema
    assert keywords["pattern"] == owner.schema_pattern(optional=optional)
    assert keywords["maxLength"] == owner.max_len
    # validation names the same owner's expected form when it refuses a value.
    bad = "_x"  # no grammar here starts with '_', and it passes validation's shared checks
    params = {**valid_params(), "rollout_driver_version": None}
    params[field] = [bad] if "items" in schema else bad
    with pytest.raises(validation.ValidationError) as err:
        run_config(params, SETTINGS)
    assert err.value.expected == owner.expected


def test_the_form_arches_are_the_grammar_arches_and_aliases() -> None:
    items = PARAMS["arches"].schema["items"]
    assert set(items["enum"]) == set(grammar.ARCHES) | set(grammar.ARCH_ALIASES)
    assert all(validation.arch(arch, "arches") in grammar.ARCHES for arch in items["enum"])


def test_schema_patterns_accept_what_validation_accepts() -> None:
    """The other direction, on the values a user types: the form never blocks a good value."""
    good = {
        "driver_versions": [["570.158.01", "580.65.06"], ["535.247.01"]],
        "rollout_driver_version": ["570.158.01", "580.105.08"],
        "cuda_version": ["12.8.1", "13.0.0"],
        "repository": ["quay.io/acme/nvidia", "127.0.0.1:5000/nvidia", "registry.example.com/a/b_c/d-e"],
        "image_name": ["driver", "nvidia-gpu-driver"],
        "driver_repo_ref": ["main", "v1.2", "release/25.10", form.DEFAULT_DRIVER_REPO_REF],
        "operator_version": ["v26.7.0", "25.10.0", "v25.10.0-rc.1"],
        "arches": [["x86_64"], ["x86_64", "aarch64"], ["arm64"]],
        "canary_pool": ["gpu-driver-rhcos", "pool-a", "nvidia.driver.1"],
    }
    for field, values in good.items():
        for value in values:
            assert not schema_refuses(field, value), (field, value)
            run_config({**valid_params(), field: value, "rollout_driver_version": None}, SETTINGS)


# What validation refuses and the form's JSON Schema cannot: one field's schema sees that field alone.
# (field, label) -> (the params that show it, why JSON Schema cannot say it).
NOT_EXPRESSIBLE: dict[tuple[str, str], tuple[dict[str, Any], str]] = {
    ("verify_timeout_minutes", "nan"): (
        {"verify_timeout_minutes": math.nan},
        "JSON has no NaN: it cannot reach the form as a value, and JSON Schema cannot name it",
    ),
    ("rollout_driver_version", "not being built"): (
        {"driver_versions": ["570.158.01"], "rollout_driver_version": "580.65.06"},
        "it must be one of driver_versions: a rule across two fields, each Param's schema sees its own",
    ),
    ("repository", "empty without an installation default"): (
        {"repository": None},
        "empty means PRECOMPILED_DRIVERS_TARGET_REPOSITORY, which the form does not know when unset",
    ),
    ("arches", "alias and its arch"): (
        {"arches": ["amd64", "x86_64"]},
        "uniqueItems compares the words; amd64 and x86_64 are the same arch only after mapping",
    ),
}


@pytest.mark.parametrize("case", NOT_EXPRESSIBLE, ids=lambda case: "-".join(case))
def test_what_only_validation_can_refuse_is_listed_with_its_reason(case: tuple[str, str]) -> None:
    """Each listed value passes the form and is refused by validation; when the form learns to refuse
    one, this fails and the entry goes."""
    field, _label = case
    overrides, reason = NOT_EXPRESSIBLE[case]
    assert reason
    with pytest.raises(validation.ValidationError) as err:
        run_config({**valid_params(), **overrides}, Settings())
    assert err.value.field.split("[")[0] == field
    if not (isinstance(overrides[field], float) and math.isnan(overrides[field])):
        assert all(not schema_refuses(name, value) for name, value in overrides.items()), overrides


@pytest.mark.parametrize(("field", "value"), FORM_CASES)
def test_the_schema_refuses_every_hostile_value_validation_refuses(field: str, value: Any) -> None:
    params = valid_params()
    params[field] = value
    if field == "driver_versions":
        params["rollout_driver_version"] = None
    with pytest.raises(validation.ValidationError):
        run_config(params, SETTINGS)
    if isinstance(value, float) and math.isnan(value):
        assert ("verify_timeout_minutes", "nan") in NOT_EXPRESSIBLE
        return
    assert schema_refuses(field, value), f"the form accepts {value!r} for {field}"


def test_the_hostile_cases_reach_every_pod_bound_text_field() -> None:
    """The pod-bound fields (they end up in pod env) are all in the hostile table run above."""
    pod_bound = {"repository", "driver_repo_ref", "operator_version", "rollout_driver_version", "image_name"}
    pod_bound |= {"cuda_version", "driver_versions", "ocp_versions", "arches"}
    fields = {case.values[0] for case in FORM_CASES}
    assert pod_bound <= fields
    assert all(PARAMS[field].schema["$schema"] == form.SCHEMA_DIALECT for field in PARAMS)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("driver_versions", ["570.158.01\n"]),
        ("cuda_version", "12.8.1\n"),
        ("repository", "quay.io/acme/nvidia\n"),
        ("driver_repo_ref", "main\n"),
        ("driver_repo_ref", "feature..x"),
        ("driver_repo_ref", "main.lock"),
        ("driver_repo_ref", "a//b"),
        ("driver_repo_ref", "main/"),
        ("cuda_version", "\uff11\uff12.8.1"),  # fullwidth digits: Python's \d would match them
        ("repository", "quay.io/acme/nvidia; rm -rf /"),
        ("repository", "Quay.io/Acme"),
        ("image_name", "Driver"),
    ],
)
def test_the_schema_refuses_what_a_loose_pattern_would_let_through(field: str, value: Any) -> None:
    """A trailing newline (Python's ``$`` matches before it), git's ref rules, non-ASCII digits."""
    params = {**valid_params(), field: value, "rollout_driver_version": None}
    with pytest.raises(validation.ValidationError):
        run_config(params, SETTINGS)
    assert schema_refuses(field, value)


def test_every_field_says_what_it_expects() -> None:
    for name, param in PARAMS.items():
        assert param.schema.get("title"), name
        assert len(form.help_text(param)) > 20 and param.description is None, name


def test_the_form_limits_are_run_configs() -> None:
    """List lengths and the verify timeout's range: one definition (config), said by the form."""
    from precompiled_drivers import config

    assert PARAMS["ocp_versions"].schema["maxItems"] == config.OCP_VERSIONS_MAX
    assert PARAMS["arches"].schema["maxItems"] == config.ARCHES_MAX
    assert PARAMS["driver_versions"].schema["maxItems"] == config.DRIVER_VERSIONS_MAX
    minutes = PARAMS["verify_timeout_minutes"].schema
    assert (minutes["minimum"], minutes["maximum"]) == (config.VERIFY_MINUTES_MIN, config.VERIFY_MINUTES_MAX)
    too_many = ["570.158.01", "570.158.02", *(f"5{n:02d}.10.01" for n in range(config.DRIVER_VERSIONS_MAX))]
    assert schema_refuses("driver_versions", too_many)
    with pytest.raises(validation.ValidationError, match="driver_versions"):
        run_config({**valid_params(), "driver_versions": too_many, "rollout_driver_version": None}, SETTINGS)


def test_require_approval_defaults_to_the_installation_setting() -> None:
    assert form.form_params(Settings())["require_approval"].value is False
    param = form.form_params(Settings(require_approval=True))["require_approval"]
    assert param.value is True and param.schema["type"] == "boolean"
    assert "PRECOMPILED_DRIVERS_REQUIRE_APPROVAL" in form.help_text(param)


def test_the_import_time_warm_up_compiles_every_pattern_the_form_declares() -> None:
    # warm_validation compiles what schema_patterns finds: it must find each field's pattern, nested
    # ones (an array's items) included, or the first parse compiles it after all.
    params = form.form_params(Settings())
    found = {pattern for param in params.values() for pattern in form.schema_patterns(param.schema)}
    declared = {
        pattern
        for param in params.values()
        for pattern in (param.schema.get("pattern"), param.schema.get("items", {}).get("pattern"))
        if pattern
    }
    assert grammar.OCP_VERSION.schema_pattern() in found  # ocp_versions' items
    assert grammar.DRIVER_VERSION.schema_pattern(optional=True) in found  # rollout_driver_version
    assert found == declared
    form.warm_validation()  # idempotent: a second import (the plugins loader's copy) is harmless
