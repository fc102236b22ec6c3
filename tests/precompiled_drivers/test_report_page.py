"""The report as a web page: escaped, linked where a UI exists, and honest when there is no report yet."""

from __future__ import annotations

import re

from precompiled_drivers.report import STEPS
from precompiled_drivers.report_page import registry_link, render_page, task_link

DAG = "nvidia_precompiled_driver"
RUN = "manual__2026-12-02T10:00:00+00:00"
REPORT = "\n".join(
    [
        "Run FAILED at verify_rollout: driver pods not Ready <after 30m>",
        "NVIDIA precompiled driver pipeline: report",
        "",
        "step                     state",
        "-----------------------  -------",
        "validate_inputs          success",
        "verify_rollout           failed",
        "",
        "image                                                                      outcome",
        "quay.io/acme/nvidia-gpu-driver:570.158.01-5.14.0-570.25.1.el9_6.x86_64-rhcos4.18  built+pushed",
        "127.0.0.1:5000/acme/driver:570.158.01-5.14.0-570.25.1.el9_6.x86_64-rhcos4.18  built+pushed",
    ]
)


def page() -> str:
    return render_page(REPORT, dag_id=DAG, run_id=RUN, run_state="failed", steps=STEPS)


def test_every_line_of_the_report_is_on_the_page_escaped() -> None:
    text = re.sub(r"<[^>]+>", "", page().split("<pre>", 1)[1].split("</pre>", 1)[0])
    assert text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") == REPORT
    assert "<after 30m>" not in page() and "&lt;after 30m&gt;" in page()


def test_the_failure_headline_stands_out() -> None:
    assert '<span class="failed">Run FAILED at verify_rollout' in page()


def test_each_step_row_links_to_its_task_in_the_airflow_ui() -> None:
    href = task_link("/", DAG, RUN, "verify_rollout")
    assert href == f"/dags/{DAG}/runs/manual__2026-12-02T10%3A00%3A00%2B00%3A00/tasks/verify_rollout"
    assert f'<a href="{href}">verify_rollout</a>           failed' in page()
    assert task_link("/airflow", DAG, "r", "report") == f"/airflow/dags/{DAG}/runs/r/tasks/report"
    # A word that is not a step is not linked, even at the start of a line.
    assert '">image</a>' not in page()


def test_images_link_to_the_registry_ui_only_where_one_is_known() -> None:
    image = "quay.io/acme/nvidia-gpu-driver:570.158.01-5.14.0-570.25.1.el9_6.x86_64-rhcos4.18"
    link = registry_link(image)
    assert link == (
        "https://quay.io/repository/acme/nvidia-gpu-driver?tab=tags"
        "&tag=570.158.01-5.14.0-570.25.1.el9_6.x86_64-rhcos4.18"
    )
    assert f'<a href="{link.replace("&", "&amp;")}">{image}</a>' in page()
    assert registry_link("127.0.0.1:5000/acme/driver:1") is None
    assert registry_link("registry.example.com/acme/driver:1") is None
    assert page().count('<a href="https://') == 1


def test_a_run_without_a_report_says_why() -> None:
    html = render_page(None, dag_id=DAG, run_id=RUN, run_state="running", steps=STEPS)
    assert "No report for this run yet (run state: running)" in html
    assert "<pre>" not in html


def test_hostile_run_ids_are_escaped_in_the_title_and_links() -> None:
    html = render_page(REPORT, dag_id=DAG, run_id='<script>"x"', run_state="failed", steps=STEPS)
    assert "<script>" not in html
    assert "%3Cscript%3E%22x%22" in html
