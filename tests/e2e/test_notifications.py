"""Notifications (#17): a failed run and a rollback are mailed, through the smtp provider, to a real SMTP
server on 127.0.0.1; the mail names the run, the failed step and its reason.

The real DAG runs with ``dag.test()``; the notification settings and the SMTP connection come from
the environment, as in a deployment. The pending-approval mail needs a run that waits for a person:
it is asserted in test_rollout_approval.py's approve test (real scheduler and api-server).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harness.dag_runner import DAG_ID, task_states, xcom
from harness.pipeline_world import World
from harness.smtp_server import RECIPIENT, SENDER, MailCatcher
from testcluster import Scenario

pytestmark = pytest.mark.e2e

ONE_DRIVER = ["570.158.01"]


@pytest.fixture
def mails(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[MailCatcher]:
    """The SMTP server, and the settings that send to it (read when run_dag parses the DAG)."""
    with MailCatcher() as catcher:
        for name, value in catcher.airflow_env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("PRECOMPILED_DRIVERS_RETRY_DELAY_SECONDS", "1")
        yield catcher


def text_of(mail: dict[str, Any]) -> str:
    return html.unescape(mail["text"])


def test_failed_run_is_mailed_with_the_failed_step_and_its_reason(
    world: World, run_dag: Callable[..., Any], mails: MailCatcher
) -> None:
    reason = "ERROR: nodes is forbidden: cannot list resource nodes (injected)"
    world.cluster.scenarios.set(
        "inspect_cluster", Scenario(exit_code=1, logs=["reading", reason], duration=0.1)
    )
    dag_run = run_dag(driver_versions=ONE_DRIVER)
    assert dag_run.state == "failed", task_states(dag_run)

    [mail] = mails.received()  # exactly one: the run's failure
    assert mail["To"] == [RECIPIENT] and mail["From"] == SENDER
    assert mail["Subject"] == f"[{DAG_ID}] {dag_run.run_id}: Run FAILED at inspect_cluster: {reason}"
    text = text_of(mail)
    assert f"Run {dag_run.run_id} of {DAG_ID} failed." in text
    report = xcom(dag_run, "report")
    assert report.rstrip() in text, "the mail carries the whole report"
    assert f"  inspect_cluster: {reason}" in text, "the Failures section names the step and its reason"


def test_rollback_is_mailed_with_the_step_that_failed_and_the_restored_spec(
    world: World, run_dag: Callable[..., Any], mails: MailCatcher
) -> None:
    world.cluster.scenarios.set(
        "verify_rollout",
        Scenario(
            exit_code=1, logs=["waiting", "ERROR: driver pods not Ready on 5.14.0 (injected)"], duration=0.1
        ),
    )
    before = world.policy_driver()
    dag_run = run_dag(driver_versions=ONE_DRIVER)
    states = task_states(dag_run)
    assert dag_run.state == "failed", states
    assert states["rollback_cluster_policy"] == "success", states
    assert world.policy_driver() == before

    rollback = mails.wait_for(lambda m: "ROLLED BACK" in m["Subject"], 10, "the rollback mail")
    assert rollback["Subject"] == (
        f"[{DAG_ID}] {dag_run.run_id}: ClusterPolicy ROLLED BACK after verify_rollout failed"
    )
    text = text_of(rollback)
    assert (
        f"Run {dag_run.run_id} of {DAG_ID} patched the ClusterPolicy, then verify_rollout failed: "
        "ERROR: driver pods not Ready on 5.14.0 (injected)"
    ) in text, text
    assert "The previous spec.driver was restored exactly." in text
    assert json.dumps(before, indent=2, sort_keys=True) in text, "the mail shows the restored spec.driver"
    # The run failed too: its own mail follows, naming the verification.
    failure = mails.wait_for(lambda m: "Run FAILED" in m["Subject"], 10, "the failure mail")
    assert failure["Subject"].startswith(
        f"[{DAG_ID}] {dag_run.run_id}: Run FAILED at verify_rollout: ERROR: "
    )
    assert len(mails.received()) == 2, [m["Subject"] for m in mails.received()]
