"""The notifier: attached only with recipients, gathers each event's facts from the callback context, and
sends through the smtp provider (to a real SMTP server on 127.0.0.1); a failed send never raises."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

import pytest

from harness.smtp_server import RECIPIENT, SENDER, MailCatcher
from precompiled_drivers import notifier
from precompiled_drivers.failures import FAILURE_KEY
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps import approve_rollout

RUN = "scheduled__2026-01-01T00:00:00+00:00"
DAG = "nvidia_precompiled_driver"


class FakeTI:
    """The slice of the task SDK's RuntimeTaskInstance a notifier reads (dag_id, run_id, xcom_pull)."""

    def __init__(self, xcoms: dict[tuple[str, str], Any], task_id: str = "rollback_cluster_policy") -> None:
        self.dag_id, self.run_id, self.xcoms, self.task_id = DAG, RUN, xcoms, task_id

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return self.xcoms.get((task_ids, key))


@pytest.fixture
def mails(monkeypatch: pytest.MonkeyPatch) -> Iterator[MailCatcher]:
    with MailCatcher() as catcher:
        for name, value in catcher.airflow_env().items():
            monkeypatch.setenv(name, value)
        yield catcher


def make(event: str) -> notifier.PipelineNotifier:
    return notifier.PipelineNotifier(event, [RECIPIENT], "smtp_default", SENDER)


def test_no_recipient_attaches_nothing_and_a_bad_one_too() -> None:
    assert notifier.callbacks(Settings()) == notifier.Callbacks()
    # A bad address fails the run's first task (settings are validated there), not the parse.
    assert notifier.callbacks(Settings(notify_email="nobody")) == notifier.Callbacks()
    on = notifier.callbacks(Settings(notify_email=RECIPIENT, smtp_conn_id="smtp_relay"))
    assert [n.event for n in on.failure + on.rollback + on.approval] == ["failure", "rollback", "approval"]
    assert on.failure[0].recipients == [RECIPIENT] and on.failure[0].smtp_conn_id == "smtp_relay"


def test_unknown_event_is_refused() -> None:
    with pytest.raises(ValueError, match="event: got 'success'"):
        notifier.PipelineNotifier("success", [RECIPIENT], "smtp_default")


def test_failure_mail_carries_the_report(mails: MailCatcher) -> None:
    report = "Run FAILED at plan_rollout: not patching the ClusterPolicy\nNVIDIA precompiled driver pipeline"
    ti = FakeTI({("report", "return_value"): report})
    make("failure").notify({"ti": ti, "exception": RuntimeError("no report attribute")})
    [mail] = mails.received()
    assert mail["Subject"] == f"[{DAG}] {RUN}: Run FAILED at plan_rollout: not patching the ClusterPolicy"
    assert mail["To"] == [RECIPIENT] and mail["From"] == SENDER
    assert report in html.unescape(mail["text"])


def test_rollback_mail_names_the_failed_step(mails: MailCatcher) -> None:
    ti = FakeTI(
        {
            ("rollback_cluster_policy", "return_value"): {
                "rolled_back": True,
                "driver_after": {"version": "1"},
            },
            ("verify_rollout", FAILURE_KEY): {"reason": "ERROR: pods not Ready\nmore", "map_index": -1},
        }
    )
    make("rollback").notify({"ti": ti})
    [mail] = mails.received()
    assert mail["Subject"] == f"[{DAG}] {RUN}: ClusterPolicy ROLLED BACK after verify_rollout failed"
    assert "then verify_rollout failed: ERROR: pods not Ready\n" in html.unescape(mail["text"])


def test_a_fleet_clusters_rollback_mail_reads_its_own_clusters_steps(mails: MailCatcher) -> None:
    ti = FakeTI(
        {
            ("prod-a.rollback_cluster_policy", "return_value"): {"rolled_back": True, "driver_after": {}},
            ("prod-a.verify_rollout", FAILURE_KEY): {"reason": "ERROR: pods not Ready", "map_index": -1},
            ("dev.check_gpu_workload", FAILURE_KEY): {"reason": "another cluster's", "map_index": -1},
        },
        task_id="prod-a.rollback_cluster_policy",
    )
    make("rollback").notify({"ti": ti})
    [mail] = mails.received()
    assert mail["Subject"] == f"[{DAG}] {RUN}: ClusterPolicy ROLLED BACK after verify_rollout failed"
    assert "another cluster's" not in html.unescape(mail["text"])


def test_rollback_mail_after_a_failed_gpu_check(mails: MailCatcher) -> None:
    reason = "ERROR: GPU workload check failed on kernel k (node gpu-2, pod p): failed: Failed to allocate"
    ti = FakeTI(
        {
            ("rollback_cluster_policy", "return_value"): {
                "rolled_back": True,
                "driver_after": {"version": "1"},
            },
            ("check_gpu_workload", FAILURE_KEY): {"reason": reason, "map_index": -1},
        }
    )
    make("rollback").notify({"ti": ti})
    [mail] = mails.received()
    assert mail["Subject"] == f"[{DAG}] {RUN}: ClusterPolicy ROLLED BACK after check_gpu_workload failed"
    assert f"then check_gpu_workload failed: {reason}" in html.unescape(mail["text"])


def test_approval_mail_reads_the_request_from_the_task(mails: MailCatcher) -> None:
    task = approve_rollout.operator(Settings(approval_timeout_seconds=1800))
    task.subject, task.body = "Roll out NVIDIA driver 570.158.01?", "| kernel | image |"
    make("approval").notify({"ti": FakeTI({}), "task": task, "task_instance": FakeTI({})})
    [mail] = mails.received()
    assert mail["Subject"] == f"[{DAG}] {RUN}: approval needed: Roll out NVIDIA driver 570.158.01?"
    text = html.unescape(mail["text"])
    assert "No answer within 30m" in text and text.rstrip().endswith("| kernel | image |</pre>")


def test_a_send_that_fails_is_logged_not_raised(monkeypatch: pytest.MonkeyPatch, capfd: Any) -> None:
    from harness.airflow_standalone import free_port

    closed = free_port()  # nothing listens there
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT",
        f'{{"conn_type": "smtp", "host": "127.0.0.1", "port": {closed}, '
        '"extra": {"disable_tls": true, "disable_ssl": true, "retry_limit": 0, "timeout": 2}}',
    )
    make("failure").notify({"ti": FakeTI({("report", "return_value"): "Run FAILED at x: y"})})
    # Airflow logs through structlog to the process's output, not to pytest's log capture.
    out, err = capfd.readouterr()
    assert "could not send the failure notification" in out + err
    assert "Connection refused" in out + err
