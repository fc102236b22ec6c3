"""Notifications through Airflow's notifier mechanism: e-mail via the smtp provider by default.

``PipelineNotifier`` is a ``BaseNotifier``: the DAG attaches it as a task callback (the report's
``on_failure_callback`` for a failed run, the rollback's ``on_success_callback``) and as the approval
operator's ``notifiers`` (called when the request is posted). It gathers what the event needs from the
callback's context, has ``messages`` word it, and sends it with the provider's ``SmtpNotifier``.

The failed-run notification hangs on the report task, not on the DAG: the report is the run's only leaf
and fails exactly when the run fails, and a task callback runs in the task's own process with the report
in hand, where a DAG callback would run in the dag-processor without it.

Off when ``PRECOMPILED_DRIVERS_NOTIFY_EMAIL`` is empty: the DAG then attaches nothing. Another channel
(Slack, a webhook) is another ``BaseNotifier`` added in ``callbacks``.

A notification never changes a run's outcome: a send that fails is logged, not raised (the approval
operator calls its notifiers inside its own execute, where an error would fail the approval).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow.sdk import BaseNotifier

from precompiled_drivers import messages
from precompiled_drivers.failures import FAILURE_KEY
from precompiled_drivers.procedure import sibling
from precompiled_drivers.settings import Settings

FAILURE = "failure"
ROLLBACK = "rollback"
APPROVAL = "approval"
EVENTS = (FAILURE, ROLLBACK, APPROVAL)
# What a rollback follows, in the order the report reads them.
ROLLBACK_CAUSES = ("patch_cluster_policy", "verify_rollout", "check_gpu_workload")


class PipelineNotifier(BaseNotifier):
    """Mail one pipeline event (``failure``, ``rollback`` or ``approval``) to ``recipients``.

    No template fields: the texts are built from the run's data, never rendered as Jinja.
    """

    template_fields = ()

    def __init__(
        self, event: str, recipients: Sequence[str], smtp_conn_id: str, from_email: str = ""
    ) -> None:
        if event not in EVENTS:
            raise ValueError(f"event: got {event!r}, expected one of {', '.join(EVENTS)}")
        super().__init__()
        self.event = event
        self.recipients = list(recipients)
        self.smtp_conn_id = smtp_conn_id
        self.from_email = from_email

    def message(self, context: Mapping[str, Any]) -> tuple[str, str]:
        """(subject, body) for this event, from the callback's context."""
        ti = context["ti"]
        dag_id, run_id = ti.dag_id, ti.run_id
        links = {"run": _run_link(dag_id, run_id)}
        if self.event == FAILURE:
            report = getattr(context.get("exception"), "report", None) or ti.xcom_pull(task_ids="report")
            return messages.failure_message(dag_id, run_id, str(report or ""), links)
        if self.event == ROLLBACK:
            # The rollback's own result; in a fleet, its cluster's group holds it and the causes.
            rolled = ti.xcom_pull(task_ids=sibling(ti.task_id, "rollback_cluster_policy"))
            causes = []
            for step in ROLLBACK_CAUSES:
                record = ti.xcom_pull(task_ids=sibling(ti.task_id, step), key=FAILURE_KEY)
                if isinstance(record, Mapping) and record.get("reason"):
                    causes.append((step, str(record["reason"]).strip().splitlines()[0]))
            return messages.rollback_message(dag_id, run_id, rolled, causes, links)
        task = context["task"]
        timeout = int(task.response_timeout.total_seconds()) if task.response_timeout else 0
        return messages.approval_message(
            dag_id, run_id, task.subject, task.body or "", timeout, _approval_link(context)
        )

    def notify(self, context: Any) -> None:
        """Send the mail through the smtp provider (``SmtpNotifier``); log, never raise, on failure."""
        try:
            from airflow.providers.smtp.notifications.smtp import SmtpNotifier

            subject, body = self.message(context)
            mail = SmtpNotifier(
                to=self.recipients,
                from_email=self.from_email or None,
                subject=subject,
                html_content=messages.as_html(body),
                smtp_conn_id=self.smtp_conn_id,
            )
            mail.notify(context)  # not mail(context): that would render our texts as Jinja templates
            self.log.info("%s notification sent to %s: %s", self.event, ", ".join(self.recipients), subject)
        except Exception:
            self.log.exception("could not send the %s notification (the run goes on)", self.event)


@dataclass(frozen=True)
class Callbacks:
    """The notifiers per event; every list is empty when notifications are off."""

    failure: list[BaseNotifier] = field(default_factory=list)
    rollback: list[BaseNotifier] = field(default_factory=list)
    approval: list[BaseNotifier] = field(default_factory=list)


def callbacks(settings: Settings) -> Callbacks:
    """The DAG's notifiers from the installation's settings (none when no recipient is set).

    Read at parse time: an address that does not validate attaches nothing here, and fails the run's
    first task (settings are validated there) with the variable's name.
    """
    try:
        recipients = settings.notify_recipients()
    except ValueError:
        return Callbacks()
    if not recipients:
        return Callbacks()

    def make(event: str) -> list[BaseNotifier]:
        return [PipelineNotifier(event, recipients, settings.smtp_conn_id, settings.notify_from)]

    return Callbacks(failure=make(FAILURE), rollback=make(ROLLBACK), approval=make(APPROVAL))


def _base_url() -> str | None:
    from airflow.sdk.configuration import conf

    return conf.get("api", "base_url", fallback=None) or None


def _run_link(dag_id: str, run_id: str) -> str | None:
    base = _base_url()
    return f"{base.rstrip('/')}/dags/{dag_id}/runs/{run_id}" if base else None


def _approval_link(context: Mapping[str, Any]) -> str | None:
    """The task's Required Actions page (the provider's own link builder), when the UI's URL is known."""
    try:
        return str(context["task"].generate_link_to_ui_from_context(context=context))  # type: ignore[arg-type]
    except (ValueError, KeyError, AttributeError):
        return None
