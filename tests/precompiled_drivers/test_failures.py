"""How a failed step records why: the reason rules and the Python-step wrapper."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from precompiled_drivers import failures


class RecordingTI:
    def __init__(self, map_index: int = -1) -> None:
        self.map_index = map_index
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a\nERROR: first\nb\nERROR: second\nc\n", "ERROR: second"),
        ("  ERROR: indented\n", "ERROR: indented"),
        ("make: *** [Makefile:80: image] Error 1\n\n", "make: *** [Makefile:80: image] Error 1"),
        ("Error from server (Forbidden): no\n", "Error from server (Forbidden): no"),  # not the script's
        ("", None),
        (None, None),
        ("ERROR: " + "x" * 5_000, "ERROR: " + "x" * (failures.MAX_REASON - 7)),
    ],
)
def test_reason_from_output(text: str | None, reason: str | None) -> None:
    assert failures.reason_from_output(text) == reason


def test_reason_from_exception() -> None:
    assert (
        failures.reason_from_exception(ValueError("driver_versions: got 'x'")) == "driver_versions: got 'x'"
    )
    assert failures.reason_from_exception(KeyError()) == "KeyError"


def test_recorded_step_records_and_reraises(monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow.sdk

    ti = RecordingTI(map_index=3)
    monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: {"ti": ti})

    def plan_things(config: dict[str, Any], ti: Any = None) -> dict[str, Any]:
        """Doc kept."""
        raise RuntimeError("coverage gate: kernel K has no image")

    wrapped = failures.recorded(plan_things)
    # Airflow reads the signature to pass context values, and the name for the task id.
    assert inspect.signature(wrapped) == inspect.signature(plan_things)
    assert wrapped.__name__ == "plan_things" and wrapped.__doc__ == "Doc kept."
    with pytest.raises(RuntimeError, match="coverage gate"):
        wrapped({})
    assert ti.pushed == {
        "failure": {"reason": "coverage gate: kernel K has no image", "item": None, "map_index": 3}
    }


def test_recorded_step_passes_results_and_skips_through(monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow.sdk
    from airflow.sdk.exceptions import AirflowSkipException

    ti = RecordingTI()
    monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: {"ti": ti})
    assert failures.recorded(lambda x: x + 1)(1) == 2

    def skip() -> None:
        raise AirflowSkipException("nothing to do")

    with pytest.raises(AirflowSkipException):
        failures.recorded(skip)()
    assert ti.pushed == {}, "a skip is not a failure"


def test_a_failing_push_never_hides_the_step_error() -> None:
    class BrokenTI:
        map_index = -1

        def xcom_push(self, key: str, value: Any) -> None:
            raise ConnectionError("api server away")

    failures.record(BrokenTI(), "reason")  # logs, does not raise
