"""Notification texts: a failed run, a rollback, a pending approval; subject and body name the run."""

from __future__ import annotations

from precompiled_drivers import messages

DAG = "nvidia_precompiled_driver"
RUN = "manual__2026-01-01T10:00:00+00:00"
REPORT = (
    "Run FAILED at verify_rollout: ERROR: driver pods not Ready on 5.14.0\n"
    "NVIDIA precompiled driver pipeline: report\n"
    "\n"
    "step             state\n"
    "---------------  ------\n"
    "verify_rollout   failed"
)


def test_failure_subject_is_the_reports_first_line_and_the_body_the_report() -> None:
    subject, body = messages.failure_message(
        DAG, RUN, REPORT, {"run": "http://ui/dags/x/runs/y", "log": None}
    )
    assert subject == f"[{DAG}] {RUN}: Run FAILED at verify_rollout: ERROR: driver pods not Ready on 5.14.0"
    assert body.startswith(f"Run {RUN} of {DAG} failed.\n\n{REPORT}")
    assert body.endswith("Links:\n  run: http://ui/dags/x/runs/y")


def test_failure_without_a_report_says_where_to_look() -> None:
    subject, body = messages.failure_message(DAG, RUN, "")
    assert subject.endswith("Run FAILED (no report was written; see the task logs)")
    assert "Links" not in body


def test_a_long_or_multi_line_subject_stays_one_short_line() -> None:
    subject, _ = messages.failure_message(DAG, RUN, "Run FAILED at x: " + "why " * 100)
    assert len(subject) == messages.MAX_SUBJECT and subject.endswith("...")
    assert "\n" not in messages._subject(DAG, RUN, "a\nb")


def test_rollback_names_the_failed_step_its_reason_and_the_restored_spec() -> None:
    rolled = {
        "rolled_back": True,
        "driver_before": {"usePrecompiled": True},
        "driver_after": {"version": "550"},
    }
    causes = [("verify_rollout", "ERROR: driver pods not Ready"), ("patch_cluster_policy", "slow")]
    subject, body = messages.rollback_message(DAG, RUN, rolled, causes)
    assert subject == f"[{DAG}] {RUN}: ClusterPolicy ROLLED BACK after verify_rollout failed"
    assert body.startswith(
        f"Run {RUN} of {DAG} patched the ClusterPolicy, then verify_rollout failed: "
        "ERROR: driver pods not Ready"
    )
    assert "The previous spec.driver was restored exactly." in body
    assert 'spec.driver now:\n{\n  "version": "550"\n}' in body
    assert "Also failed: patch_cluster_policy: slow" in body
    assert "The driver images of this run stay published." in body


def test_a_rollback_with_nothing_to_restore_says_so() -> None:
    subject, body = messages.rollback_message(DAG, RUN, {"rolled_back": False}, [])
    assert subject.endswith("rollback after the rollout failed: spec.driver already was the previous one")
    assert "no reason recorded" in body and "nothing had to be restored" in body


def test_pending_approval_names_the_request_the_link_and_the_deadline() -> None:
    subject, body = messages.approval_message(
        DAG, RUN, "Roll out NVIDIA driver 570.158.01?", "**Coverage gate**: passed", 7200, "http://ui/ra"
    )
    assert subject == f"[{DAG}] {RUN}: approval needed: Roll out NVIDIA driver 570.158.01?"
    assert f"Run {RUN} of {DAG} waits for approval before it patches the ClusterPolicy." in body
    assert "Approve or reject in Airflow (Required Actions): http://ui/ra" in body
    assert "No answer within 2h: the rollout is not approved, nothing is patched." in body
    assert body.endswith("**Coverage gate**: passed")
    _, without_link = messages.approval_message(DAG, RUN, "s", "b", 60)
    assert "Browse > Required Actions" in without_link


def test_html_keeps_the_text_and_escapes_it() -> None:
    assert messages.as_html("a < b\n  c") == "<pre>a &lt; b\n  c</pre>"
