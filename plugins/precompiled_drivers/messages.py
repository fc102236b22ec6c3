"""What the notifications say: a failed run, a rollback, a pending approval.

Pure: each function returns ``(subject, body)`` as plain text from values the notifier gathered
(the report, a step's result and failure reasons, the approval request); ``notifier.py`` sends them.
Subjects name the DAG and the run, so a mailbox rule or a reader can tell runs apart.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

from precompiled_drivers.approval import duration

MAX_SUBJECT = 200  # mail clients cut long subjects; the body holds the whole story


def _subject(dag_id: str, run_id: str, what: str) -> str:
    text = " ".join(f"[{dag_id}] {run_id}: {what}".split())  # one line: a newline would break the header
    return text if len(text) <= MAX_SUBJECT else text[: MAX_SUBJECT - 3] + "..."


def _links(links: Mapping[str, str | None]) -> list[str]:
    shown = [f"  {name}: {url}" for name, url in links.items() if url]
    return ["", "Links:", *shown] if shown else []


def failure_message(
    dag_id: str, run_id: str, report: str, links: Mapping[str, str | None] | None = None
) -> tuple[str, str]:
    """A failed run: the subject is the report's first line (the failed step and its reason)."""
    lines = report.strip().splitlines() or ["Run FAILED (no report was written; see the task logs)"]
    body = [f"Run {run_id} of {dag_id} failed.", "", *lines, *_links(links or {})]
    return _subject(dag_id, run_id, lines[0]), "\n".join(body)


def rollback_message(
    dag_id: str,
    run_id: str,
    rolled: Mapping[str, Any] | None,
    causes: Sequence[tuple[str, str]],
    links: Mapping[str, str | None] | None = None,
) -> tuple[str, str]:
    """A rollback: why (the failed step and its reason) and the spec.driver it restored."""
    rolled = rolled or {}
    why = causes[0] if causes else ("the rollout", "no reason recorded (see the task logs)")
    restored = bool(rolled.get("rolled_back"))
    what = (
        f"ClusterPolicy ROLLED BACK after {why[0]} failed"
        if restored
        else f"rollback after {why[0]} failed: spec.driver already was the previous one"
    )
    body = [
        f"Run {run_id} of {dag_id} patched the ClusterPolicy, then {why[0]} failed: {why[1]}",
        "",
        "The previous spec.driver was restored exactly."
        if restored
        else "spec.driver already was the previous one; nothing had to be restored.",
        "",
        "spec.driver now:",
        json.dumps(rolled.get("driver_after") or {}, indent=2, sort_keys=True),
    ]
    for step, reason in causes[1:]:
        body += ["", f"Also failed: {step}: {reason}"]
    body += [
        "",
        "The driver images of this run stay published. The run's report follows when the run ends.",
        *_links(links or {}),
    ]
    return _subject(dag_id, run_id, what), "\n".join(body)


def approval_message(
    dag_id: str,
    run_id: str,
    request_subject: str,
    request_body: str,
    timeout_seconds: int,
    link: str | None = None,
) -> tuple[str, str]:
    """A pending approval: what to approve, where, and until when the run waits."""
    body = [
        f"Run {run_id} of {dag_id} waits for approval before it patches the ClusterPolicy.",
        "",
        request_subject,
        "",
        f"Approve or reject in Airflow (Required Actions): {link}"
        if link
        else "Approve or reject in Airflow: Browse > Required Actions, or the task's Required Actions tab.",
        f"No answer within {duration(timeout_seconds)}: the rollout is not approved, nothing is patched.",
        "",
        request_body,
    ]
    return _subject(dag_id, run_id, f"approval needed: {request_subject}"), "\n".join(body)


def as_html(body: str) -> str:
    """The body as the HTML part the SMTP notifier sends: preformatted, so tables keep their columns."""
    return f"<pre>{html.escape(body)}</pre>"
