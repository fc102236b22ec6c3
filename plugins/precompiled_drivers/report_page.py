"""The run's report as a web page: the "Pipeline report" tab on a run's page in the Airflow UI.

Pure: the report text (the ``report`` task's XCom) in, HTML out. Every character of the text is
escaped; links are added only where a UI exists: each step of the step table to its task (logs) in
Airflow, and images on quay.io to their tag list. The UI plugin (``ui_plugin``) serves it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from urllib.parse import quote

# Registries with a web UI whose URL we know; others (a mirror, the demo's local registry) get no link.
# quay.io's repository page: https://quay.io/repository/<namespace>/<name>?tab=tags&tag=<tag>
_QUAY = re.compile(r"\bquay\.io/([a-z0-9][a-z0-9._-]*)/([a-z0-9][a-z0-9._/-]*):([A-Za-z0-9_][A-Za-z0-9_.-]*)")
_STYLE = (
    "body{font-family:sans-serif;margin:1rem}"
    "pre{font-family:ui-monospace,monospace;font-size:13px;line-height:1.35;white-space:pre}"
    ".failed{color:#b00020;font-weight:bold}"
)


def registry_link(image: str) -> str | None:
    """The registry's web page for an image reference, when its registry has a known UI."""
    match = _QUAY.fullmatch(image)
    if match is None:
        return None
    namespace, name, tag = match.groups()
    return f"https://quay.io/repository/{namespace}/{name}?tab=tags&tag={quote(tag)}"


def task_link(ui_root: str, dag_id: str, run_id: str, task_id: str) -> str:
    """The task's page (its logs) in the Airflow UI under ``ui_root`` (e.g. ``/``)."""
    root = ui_root if ui_root.endswith("/") else ui_root + "/"
    return (
        f"{root}dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id, safe='')}"
    )


def _link(href: str, text: str) -> str:
    return f'<a href="{html.escape(href, quote=True)}">{text}</a>'


def _linked_line(line: str, steps: Iterable[str], ui_root: str, dag_id: str, run_id: str) -> str:
    escaped = html.escape(line, quote=False)
    first = line.split(" ", 1)[0]
    if first in steps:  # a row of the step table: "<step>  <state>"
        escaped = _link(task_link(ui_root, dag_id, run_id, first), first) + escaped[len(first) :]

    def quay(match: re.Match[str]) -> str:
        href = registry_link(html.unescape(match.group(0)))
        return _link(href, match.group(0)) if href else match.group(0)

    return _QUAY.sub(quay, escaped)


def render_page(
    report: str | None,
    *,
    dag_id: str,
    run_id: str,
    run_state: str | None,
    steps: Iterable[str],
    ui_root: str = "/",
) -> str:
    """The whole HTML page for one run: its report, or why there is none yet."""
    steps = tuple(steps)
    title = f"{dag_id} / {run_id}"
    if report:
        lines = report.splitlines()
        head = html.escape(lines[0], quote=False)
        if lines[0].startswith("Run FAILED"):
            head = f'<span class="failed">{head}</span>'
        body = "\n".join([head, *(_linked_line(line, steps, ui_root, dag_id, run_id) for line in lines[1:])])
        content = f"<pre>{body}</pre>"
    else:
        state = html.escape(run_state or "unknown", quote=False)
        content = (
            f"<p>No report for this run yet (run state: {state}). The <code>report</code> task writes it "
            "when every other step has finished; reload this tab then.</p>"
        )
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head>\n"
        f"<body>{content}</body></html>\n"
    )
