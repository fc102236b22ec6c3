"""The trigger form's fields declare JSON Schema draft 7 (cheaper for Airflow to re-check at every parse).

Airflow resolves a field with ``jsonschema.validate``, which picks the validator from ``$schema``: these
tests go through Airflow's own ``ParamsDict``, so they check what the form and the REST API will enforce.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from airflow.sdk.definitions.param import ParamsDict
from airflow.sdk.exceptions import ParamValidationError

from precompiled_drivers.form import SCHEMA_DIALECT, form_params
from precompiled_drivers.settings import Settings


@pytest.fixture
def params() -> ParamsDict:
    return ParamsDict(form_params(Settings.from_env()))


def test_every_field_declares_draft_7_and_is_a_valid_draft_7_schema(params: ParamsDict) -> None:
    assert SCHEMA_DIALECT == "http://json-schema.org/draft-07/schema#"
    for name in params:
        schema = params.get_param(name).schema
        assert schema["$schema"] == SCHEMA_DIALECT, name
        assert jsonschema.validators.validator_for(schema) is jsonschema.Draft7Validator, name
        jsonschema.Draft7Validator.check_schema(schema)


def test_defaults_are_valid(params: ParamsDict) -> None:
    resolved = params.validate()
    assert resolved["arches"] == ["x86_64"]
    assert resolved["verify_timeout_minutes"] == 30


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("image_name", "bad/name", "does not match"),
        ("arches", ["sparc"], "is not one of"),
        ("arches", ["x86_64", "aarch64", "arm64"], "is too long"),
        ("driver_versions", [], "should be non-empty"),
        ("driver_versions", ["57x.1"], "does not match"),
        ("ocp_versions", ["4.18"], "does not match"),
        ("verify_timeout_minutes", 0, "less than the minimum"),
        ("verify_timeout_minutes", 241, "greater than the maximum"),
        ("rollout_driver_version", "x" * 21, "does not match"),
        ("force_rebuild", "yes", "is not of type 'boolean'"),
    ],
)
def test_the_form_still_rejects_bad_values(params: ParamsDict, field: str, value: Any, message: str) -> None:
    with pytest.raises(ParamValidationError, match=message):
        params[field] = value


def test_the_form_accepts_good_values(params: ParamsDict) -> None:
    params["ocp_versions"] = ["4.18.12", "4.19.0-rc.1"]
    params["arches"] = ["x86_64", "arm64"]
    params["driver_versions"] = ["570.158.01", "580.65.06"]
    params["verify_timeout_minutes"] = 0.5
    assert params.validate()["driver_versions"] == ["570.158.01", "580.65.06"]
