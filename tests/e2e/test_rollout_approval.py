"""Approval before rollout (#17): approve -> patched; reject or timeout -> not patched, images published.

Real Airflow components (scheduler with the LocalExecutor, triggerer, dag-processor, api-server): in
Airflow 3.3 the approval task waits in ``awaiting_input``; a person's answer arrives through the REST
API (``PATCH /api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{task}/{map_index}/hitlDetails``, upstream
airflow/api_fastapi/core_api/routes/public/hitl.py ``update_hitl_detail``, which resumes the task), and
only the scheduler's sweep (scheduler_job_runner.py ``check_awaiting_input_timeouts``) ends a wait that
nobody answers, so ``dag.test()`` cannot play these runs. The run requires approval through the form's
field; the timeout is the installation's setting, short here. A local SMTP server receives the mails
(the pending-approval notification is asserted in the approve test).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from typing import Any

import pytest

from harness.airflow_standalone import AirflowStandalone, wait_for
from harness.pipeline_world import World
from harness.smtp_server import RECIPIENT, SENDER, MailCatcher
from testcluster.cluster import TestCluster
from testcluster.fleet import seed_demo
from testcluster.registry import Registry

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]

DAG_ID = "nvidia_precompiled_driver"
TASK = "approve_rollout"
ONE_DRIVER = ["570.158.01"]
UNCHANGED = "the ClusterPolicy was not patched; the images stay published"


class Approval:
    """One standalone Airflow on the demo world, with a run that requires approval."""

    def __init__(self, world: World, airflow: AirflowStandalone, mails: MailCatcher) -> None:
        self.world, self.airflow, self.mails = world, airflow, mails
        self.before = policy_json(world)
        self.run_id = airflow.trigger(
            DAG_ID, conf=world.params(driver_versions=ONE_DRIVER, require_approval=True)
        )

    def states(self) -> dict[str, str]:
        """task_id -> state (the worst of a mapped task's instances is enough here)."""
        states: dict[str, str] = {}
        for ti in self.airflow.task_instances(DAG_ID, self.run_id):
            states.setdefault(ti["task_id"], str(ti["state"]))
        return states

    def wait_awaiting_input(self, or_states: tuple[str, ...] = ()) -> dict[str, Any]:
        """Wait until the approval task asks (or reaches one of ``or_states``: a short timeout may end
        the wait between two polls); return its request (REST ``hitlDetails``)."""
        wanted = ("awaiting_input", *or_states)
        wait_for(lambda: self.states().get(TASK) in wanted, 300, f"{TASK} to await input", 1)
        # Answer as a person would: after the scheduler has seen the task's worker exit (an answer within
        # that loop hits an Airflow race the README names; CI met it once).
        self.airflow.wait_executor_event(DAG_ID, self.run_id, TASK)
        return dict(self.airflow.api("GET", self.hitl_path()))

    def hitl_path(self) -> str:
        return f"/api/v2/dags/{DAG_ID}/dagRuns/{self.run_id}/taskInstances/{TASK}/-1/hitlDetails"

    def answer(self, option: str) -> dict[str, Any]:
        """Answer as the UI's Required Actions page does."""
        return dict(
            self.airflow.api("PATCH", self.hitl_path(), {"chosen_options": [option], "params_input": {}})
        )

    def finish(self) -> tuple[dict[str, Any], dict[str, str], str]:
        """Wait for the run's end: (run, task states, report)."""
        run = self.airflow.wait_run(DAG_ID, self.run_id, timeout=300)
        report = self.airflow.xcom(DAG_ID, self.run_id, "report")
        return run, self.states(), str(report)

    def pushed_images_are_published(self) -> None:
        pushed = self.airflow.xcom(DAG_ID, self.run_id, "push_driver_image", 0)
        assert pushed and pushed["digest"], pushed
        repo, tag = pushed["image"].split("/", 1)[1].rsplit(":", 1)
        assert self.world.registry.manifest_digest(repo, tag) == pushed["digest"], "the image stays published"


def policy_json(world: World) -> str:
    return json.dumps(world.policy_driver(), sort_keys=True)


def standalone_env(world: World, mails: MailCatcher, timeout_seconds: int) -> dict[str, str]:
    return {
        **world.env(),
        **mails.airflow_env(),
        "PRECOMPILED_DRIVERS_APPROVAL_TIMEOUT_SECONDS": str(timeout_seconds),
        # The scheduler's awaiting_input timeout sweep runs at this interval (15 s by default).
        "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "1",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    }


@pytest.fixture
def mails() -> Iterator[MailCatcher]:
    with MailCatcher() as catcher:
        yield catcher


def start(world: World, mails: MailCatcher, timeout_seconds: int) -> AirflowStandalone:
    # login: the answer is given by a named user (admin), as in a deployment.
    airflow = AirflowStandalone(standalone_env(world, mails, timeout_seconds), parallelism=4, login=True)
    # Links in the mails point at this api-server's UI.
    airflow.env["AIRFLOW__API__BASE_URL"] = airflow.url
    return airflow.start()


@pytest.fixture
def demo_world(test_cluster: TestCluster, registry: Registry) -> World:
    seed_demo(test_cluster)
    return World(test_cluster, registry).install()


def test_approved_rollout_is_patched_and_the_request_showed_the_plan_and_was_mailed(
    demo_world: World, mails: MailCatcher
) -> None:
    """The pending approval's notification is checked here (#17 point 5: one test per event; the
    failure and rollback mails are in test_notifications.py): it needs the waiting run anyway."""
    airflow = start(demo_world, mails, timeout_seconds=3600)
    try:
        flow = Approval(demo_world, airflow, mails)
        request = flow.wait_awaiting_input()
        # Images pushed, nothing patched yet: the run waits for a person.
        assert flow.states()["push_driver_image"] == "success"
        assert flow.states().get("patch_cluster_policy") in (None, "none", "None"), flow.states()
        assert policy_json(demo_world) == flow.before
        assert request["options"] == ["Approve", "Reject"]
        assert request["subject"].startswith("Roll out NVIDIA driver 570.158.01 (precompiled) to ")
        body = request["body"]
        assert "**Coverage gate**: passed" in body
        assert "spec.driver.usePrecompiled: " in body and "-> true" in body, body
        assert '"op": "test"' in body, "the JSON patch with its guard"
        plan = airflow.xcom(DAG_ID, flow.run_id, "plan_rollout")["plan"]
        for kernel in plan["kernels"]:
            for image in kernel["images"].values():
                assert f"| {kernel['kernel']} |" in body and image in body, (kernel["kernel"], image)

        # The pending approval was mailed: the run, what to approve, where, and the plan.
        mail = mails.wait_for(lambda m: "approval needed" in m["Subject"], 60, "the pending-approval mail")
        assert mail["To"] == [RECIPIENT] and mail["From"] == SENDER
        assert mail["Subject"] == f"[{DAG_ID}] {flow.run_id}: approval needed: {request['subject']}"
        text = html.unescape(mail["text"])
        assert f"Run {flow.run_id} of {DAG_ID} waits for approval" in text
        link = f"{airflow.url}/dags/{DAG_ID}/runs/{flow.run_id}/tasks/{TASK}/required_actions"
        assert link in text, text
        assert "No answer within 1h: the rollout is not approved" in text
        assert "spec.driver.usePrecompiled: " in text and plan["kernels"][0]["kernel"] in text

        answered = flow.answer("Approve")
        assert answered["chosen_options"] == ["Approve"]
        run, states, report = flow.finish()
    finally:
        airflow.stop()

    assert run["state"] == "success", f"{airflow.failures(DAG_ID, flow.run_id)}\n{report}"
    assert states[TASK] == "success"
    assert states["patch_cluster_policy"] == "success" and states["verify_rollout"] == "success"
    assert demo_world.policy_driver()["usePrecompiled"] is True
    assert airflow.xcom(DAG_ID, flow.run_id, TASK)["decision"] == "approved"
    assert "Rollout approved by admin at " in report, report
    assert "ClusterPolicy patch (applied):" in report


def test_rejected_rollout_is_not_patched_the_images_stay_and_the_report_says_who(
    demo_world: World, mails: MailCatcher
) -> None:
    airflow = start(demo_world, mails, timeout_seconds=3600)
    try:
        flow = Approval(demo_world, airflow, mails)
        flow.wait_awaiting_input()
        flow.answer("Reject")
        run, states, report = flow.finish()
        flow.pushed_images_are_published()
    finally:
        airflow.stop()

    # A decision, not a failure: the run ends green, the patch and its verification are skipped.
    assert run["state"] == "success", f"{airflow.failures(DAG_ID, flow.run_id)}\n{report}"
    assert states[TASK] == "success"
    assert states["patch_cluster_policy"] == "skipped"
    assert states["verify_rollout"] == "skipped"
    assert states["rollback_cluster_policy"] == "skipped"
    assert policy_json(demo_world) == flow.before, "nothing was patched"
    assert report.splitlines()[0] == f"Rollout not approved: rejected by admin; {UNCHANGED}.", report
    assert "ClusterPolicy patch (NOT applied: the rollout was not approved):" in report


def test_unanswered_approval_times_out_without_a_patch_and_fails_the_run(
    demo_world: World, mails: MailCatcher
) -> None:
    airflow = start(demo_world, mails, timeout_seconds=10)
    try:
        flow = Approval(demo_world, airflow, mails)
        request = flow.wait_awaiting_input(or_states=("failed",))
        assert request["responded_by_user"] is None, request
        run, states, report = flow.finish()  # nobody answers
        flow.pushed_images_are_published()
        # The failure notification, from the real deployment's task process, names the timeout.
        failure = mails.wait_for(lambda m: "Run FAILED" in m["Subject"], 60, "the failure mail")
    finally:
        airflow.stop()

    assert failure["Subject"].startswith(
        f"[{DAG_ID}] {flow.run_id}: Run FAILED at {TASK}: approval timed out after 10s"
    ), failure["Subject"]
    assert report.rstrip() in html.unescape(failure["text"])

    assert run["state"] == "failed", f"{states}\n{report}"
    assert states[TASK] == "failed"
    assert states["patch_cluster_policy"] == "upstream_failed"
    assert states["rollback_cluster_policy"] == "skipped"
    assert policy_json(demo_world) == flow.before, "nothing was patched"
    first = report.splitlines()[0]
    assert first == (
        f"Run FAILED at {TASK}: approval timed out after 10s: nobody approved or rejected the rollout; "
        f"{UNCHANGED}"
    ), report
    assert "Rollout not approved: approval timed out after 10s" in report
