"""approve_rollout: the standard provider's ApprovalOperator, asking only when the run requires it, and
turning the answer into the step's result (approve, reject) or its failure (timeout).

The events are the ones the task gets back on resume: a person's answer is
``HITLDetail.as_resume_event_payload`` (airflow/models/hitl.py), a timeout without defaults is the
scheduler sweep's ``{"error": ..., "error_type": "timeout"}`` (scheduler_job_runner.py
``check_awaiting_input_timeouts``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException, DownstreamTasksSkipped

from precompiled_drivers.failures import FAILURE_KEY
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps import approve_rollout

AT = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


class FakeTI:
    """The task instance slice the step uses: xcom_pull of earlier steps, xcom_push, map_index."""

    def __init__(self, xcoms: dict[str, Any] | None = None) -> None:
        self.xcoms = xcoms or {}
        self.pushed: dict[str, Any] = {}
        self.map_index = -1

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return self.xcoms.get(task_ids)

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def answer(option: str) -> dict[str, Any]:
    return {
        "chosen_options": [option],
        "params_input": {},
        "responded_at": AT,
        "responded_by_user": {"id": "alice", "name": "alice"},
        "timedout": False,
    }


def wired() -> Any:
    """The step with the patch downstream, as the DAG wires it."""
    with DAG("approval_contract", schedule=None, start_date=AT):
        task = approve_rollout.operator(Settings(approval_timeout_seconds=60))
        task >> EmptyOperator(task_id="patch_cluster_policy")
    return task


def test_operator_contract() -> None:
    task = approve_rollout.operator(Settings(approval_timeout_seconds=60))
    assert task.task_id == "approve_rollout"
    assert task.response_timeout == timedelta(seconds=60)
    assert task.options == ["Approve", "Reject"]
    # No default answer: a timeout is never taken for a decision. No retry: it would ask twice.
    assert task.defaults is None and task.retries == 0
    assert task.ignore_downstream_trigger_rules is False and task.fail_on_reject is False


def test_a_bad_timeout_setting_does_not_break_the_parse() -> None:
    task = approve_rollout.operator(Settings(approval_timeout_seconds="soon"))  # type: ignore[arg-type]
    assert task.response_timeout == timedelta(seconds=86_400)


def test_not_required_passes_at_once_without_asking() -> None:
    ti = FakeTI({"validate_inputs": {"require_approval": False}})
    # No execution API is reachable here: posting a request would fail the test.
    assert wired().execute({"ti": ti}) == {"decision": "not required", "by": None, "at": None}


def test_approve_is_the_steps_result() -> None:
    ti = FakeTI()
    result = wired().execute_complete({"ti": ti, "task": wired()}, answer("Approve"))
    assert result == {"decision": "approved", "by": "alice", "at": "2026-01-01T10:00:00+00:00"}
    assert ti.pushed["return_value"] == result


def test_reject_skips_the_patch_and_its_result_is_pushed_first() -> None:
    task, ti = wired(), FakeTI()
    with pytest.raises(DownstreamTasksSkipped) as skipped:
        task.execute_complete({"ti": ti, "task": task}, answer("Reject"))
    assert skipped.value.tasks == ["patch_cluster_policy"]
    # The skip ends the try: the decision had to be pushed before it.
    assert ti.pushed["return_value"] == {
        "decision": "rejected",
        "by": "alice",
        "at": "2026-01-01T10:00:00+00:00",
    }
    assert FAILURE_KEY not in ti.pushed


def test_timeout_fails_the_step_saying_so() -> None:
    task, ti = wired(), FakeTI()
    event = {"error": "The Human-in-the-loop response timeout has passed", "error_type": "timeout"}
    with pytest.raises(AirflowFailException, match=r"^approval timed out after 1m: nobody approved"):
        task.execute_complete({"ti": ti, "task": task}, event)
    assert ti.pushed[FAILURE_KEY]["reason"].startswith("approval timed out after 1m")
    assert "return_value" not in ti.pushed
