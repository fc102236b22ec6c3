"""The trigger form's schema: it works with its defaults, and it refuses what validation refuses.

Airflow checks a manual run's conf against each ``Param``'s JSON Schema with jsonschema
(``airflow.sdk.definitions.param.Param.resolve``) before the run exists; the same check is done here.
"""

from __future__ import annotations

import inspect
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
OPTIONAL = ("ocp_versions", "rollout_driver_version", "repository", "operator_version")


def schema_refuses(field: str, value: Any) -> bool:
    """What Airflow's ``Param.resolve`` does with a value: jsonschema with the format checker."""
    try:
        jsonschema.validate(value, PARAMS[field].schema, format_checker=jsonschema.FormatChecker())
    except jsonschema.ValidationError:
        return True
    return False


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


@pytest.mark.parametrize("field", ("rollout_driver_version", "repository", "operator_version"))
def test_optional_text_fields_accept_the_empty_string_too(field: str) -> None:
    """A REST caller's "" means the default as null does."""
    assert not schema_refuses(field, "")
    run_config({**valid_params(), field: ""}, SETTINGS)


def test_required_fields_are_not_nullable() -> None:
    for field in set(PARAMS) - set(OPTIONAL):
        schema_type = PARAMS[field].schema["type"]
        assert schema_type != "null" and "null" not in schema_type, field


def test_the_form_patterns_come_from_the_grammar_module() -> None:
    """One owner: the form's patterns are grammar's, anchored; validation compiles grammar's too."""
    expected = {
        "rollout_driver_version": grammar.anchored(grammar.DRIVER_VERSION, optional=True),
        "cuda_version": grammar.anchored(grammar.CUDA_VERSION),
        "repository": grammar.anchored(grammar.REPOSITORY, optional=True),
        "image_name": grammar.anchored(grammar.IMAGE_NAME),
        "driver_repo_ref": grammar.anchored(grammar.GIT_REF_FORBIDDEN + grammar.GIT_REF),
        "operator_version": grammar.anchored(grammar.OPERATOR_VERSION, optional=True),
    }
    for field, pattern in expected.items():
        assert PARAMS[field].schema["pattern"] == pattern, field
    assert PARAMS["driver_versions"].schema["items"]["pattern"] == grammar.anchored(grammar.DRIVER_VERSION)
    users = {
        validation.driver_version: "g.DRIVER_VERSION",
        validation.cuda_version: "g.CUDA_VERSION",
        validation.operator_version: "g.OPERATOR_VERSION",
        validation.image_name: "g.IMAGE_NAME",
        validation.git_ref: "g.GIT_REF",
    }
    for function, name in users.items():
        source = inspect.getsource(function)
        assert name in source and 're.compile(r"' not in source, function.__name__
    assert validation._REPOSITORY_RE.pattern == grammar.REPOSITORY
    assert (validation.SHORT_MAX, validation.REF_MAX) == (grammar.SHORT_MAX, grammar.REF_MAX)


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
    }
    for field, values in good.items():
        for value in values:
            assert not schema_refuses(field, value), (field, value)
            run_config({**valid_params(), field: value, "rollout_driver_version": None}, SETTINGS)


# JSON has no NaN: it cannot reach the form as a value, and JSON Schema cannot name it.
NOT_EXPRESSIBLE = {("verify_timeout_minutes", "nan")}


@pytest.mark.parametrize(("field", "value"), FORM_CASES)
def test_the_schema_refuses_every_hostile_value_validation_refuses(field: str, value: Any) -> None:
    params = valid_params()
    params[field] = value
    if field == "driver_versions":
        params["rollout_driver_version"] = None
    with pytest.raises(validation.ValidationError):
        run_config(params, SETTINGS)
    if isinstance(value, float) and math.isnan(value):
        assert (field, "nan") in NOT_EXPRESSIBLE
        return
    assert schema_refuses(field, value), f"the form accepts {value!r} for {field}"


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


def test_require_approval_defaults_to_the_installation_setting() -> None:
    assert form.form_params(Settings())["require_approval"].value is False
    param = form.form_params(Settings(require_approval=True))["require_approval"]
    assert param.value is True and param.schema["type"] == "boolean"
    assert "PRECOMPILED_DRIVERS_REQUIRE_APPROVAL" in form.help_text(param)
