"""Step: a person approves the ClusterPolicy patch (Airflow human-in-the-loop), when the run asks for it.

The standard provider's ``ApprovalOperator``, between ``plan_rollout`` and ``patch_cluster_policy``:
its request shows the coverage gate's result, the ClusterPolicy diff and JSON patch and the kernel ->
image table (``approval.request_body``, rendered from ``plan_rollout``'s result). In Airflow 3.3 the
task waits in the ``awaiting_input`` state (no worker slot, no triggerer); an answer through the UI's
Required Actions or the REST API (``PATCH .../taskInstances/approve_rollout/-1/hitlDetails``) resumes
it, and the scheduler's timeout sweep ends the wait.

- Approve: the patch runs.
- Reject: the operator skips the patch (and so verification); the run ends green and its report's first
  line says who rejected it. The images stay published.
- No answer in time: the step fails ("approval timed out after ..."), the patch does not run, the run
  fails (the failure notification tells people nobody answered).
- Approval off for this run (form field / installation setting): the step passes at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import BaseNotifier

from precompiled_drivers import approval, failures, procedure
from precompiled_drivers.settings import Settings

TASK_ID = approval.TASK_ID
log = logging.getLogger(__name__)


class RolloutApproval(ApprovalOperator):
    """``ApprovalOperator`` whose request is rendered from the run's plan, skipped when not required."""

    def execute(self, context: Any) -> Any:
        """Ask (post the request, then wait in ``awaiting_input``), or pass when the run does not ask."""
        ti = context["ti"]
        config = ti.xcom_pull(task_ids="validate_inputs") or {}
        if not config.get("require_approval"):
            log.info("approval not required for this run: the rollout goes on")
            return {"decision": approval.NOT_REQUIRED, "by": None, "at": None}
        plan = (ti.xcom_pull(task_ids=procedure.sibling(ti.task_id, "plan_rollout")) or {}).get("plan") or {}
        timeout = int(self.response_timeout.total_seconds()) if self.response_timeout else 0
        # Set here, after template rendering: the texts hold data, not templates.
        self.subject = approval.request_subject(config, plan)
        cluster = ti.task_id.rpartition(".")[0]  # a fleet's cluster: its group
        if cluster:
            self.subject = f"cluster {cluster}: {self.subject}"
        self.body = approval.request_body(config, plan, timeout)
        log.info("asking for approval (Required Actions; no answer within %ss: no rollout)", timeout)
        try:
            # Posts the request, then raises TaskAwaitingInput (a BaseException: not caught here).
            return super().execute(context)
        except Exception as exc:  # e.g. the Execution API refused the request: the report says why
            failures.record(ti, failures.reason_from_exception(exc))
            raise

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        """The answer (or the timeout): approve -> go on, reject -> skip the patch, timeout -> fail."""
        from airflow.providers.standard.exceptions import HITLTimeoutError
        from airflow.sdk.exceptions import AirflowFailException, DownstreamTasksSkipped

        decision = None
        if "error" not in event:
            responded_at = event.get("responded_at")
            decision = approval.result(
                list(event.get("chosen_options") or []),
                event.get("responded_by_user"),
                responded_at.isoformat() if hasattr(responded_at, "isoformat") else responded_at,
            )
            log.info("rollout %s by %s", decision["decision"], decision["by"])
            # Pushed before the operator acts on it: a Reject ends the try by raising
            # DownstreamTasksSkipped (how the SkipMixin skips the patch), so no return value follows.
            context["ti"].xcom_push(key="return_value", value=decision)
        try:
            super().execute_complete(context=context, event=event)
        except DownstreamTasksSkipped:
            raise  # the rejection, carried out: a success that skips the patch
        except HITLTimeoutError:
            timeout = int(self.response_timeout.total_seconds()) if self.response_timeout else 0
            reason = approval.timed_out(timeout)
            log.error("%s", reason)
            failures.record(context["ti"], reason)
            raise AirflowFailException(reason) from None
        except Exception as exc:
            failures.record(context["ti"], failures.reason_from_exception(exc))
            raise
        return decision


def operator(settings: Settings, notifiers: Sequence[BaseNotifier] = ()) -> RolloutApproval:
    """The approval task; ``notifiers`` are told when a request is posted."""
    timeout = settings.approval_timeout_seconds
    # A bad value from the environment stays a string until validate_inputs names it and fails the run.
    timeout = timeout if isinstance(timeout, int) and not isinstance(timeout, bool) else 86_400
    return RolloutApproval(
        task_id=TASK_ID,
        subject="Roll out the precompiled driver images?",  # replaced by the run's own at execute
        response_timeout=timedelta(seconds=timeout),
        notifiers=list(notifiers),
        # No default answer: a timeout must not be taken for a decision (the scheduler's sweep then
        # fails the wait, which execute_complete turns into "approval timed out").
        defaults=None,
        # Reject skips the patch only; verification and the rest follow by their trigger rules.
        ignore_downstream_trigger_rules=False,
        retries=0,  # a retry would post a second request; a timeout is an answer of its own
    )
