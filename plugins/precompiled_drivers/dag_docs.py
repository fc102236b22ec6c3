"""The DAG's documentation in the Airflow UI (``doc_md``): what it does, its steps, its form, the README.

The form table is built from ``form.form_params`` so it always shows the fields, defaults and expected
forms the form really has; the step table is ``procedure.STEPS``, every task of the DAG in order.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from precompiled_drivers import procedure, validation
from precompiled_drivers.form import form_params, help_text
from precompiled_drivers.settings import Settings, installation

README_HINT = "README.md at the root of the pipeline's repository"


def _default(value: Any) -> str:
    if value in (None, "", []):
        return "(empty)"
    return f"`{json.dumps(value) if isinstance(value, list | bool) else value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# Cached per settings and made once at import for the installation's: the text depends only on the settings
# and the package, so a parser the dag-processor forks from a plugins-folder parent (which has imported
# this module) finds it made, ~0.5 ms less per parse (#20). Without the plugins folder a parse imports this
# module and makes it once, as before.
@lru_cache(maxsize=8)
def dag_doc_md(settings: Settings) -> str:
    """The Markdown the UI shows under *Dag Docs*; links the README when ``settings.docs_url`` is set."""
    readme = README_HINT
    if settings.docs_url:
        try:  # checked here too: the text is rendered as a link before any run validates settings
            readme = f"[README]({validation.https_url(settings.docs_url, 'PRECOMPILED_DRIVERS_DOCS_URL')})"
        except validation.ValidationError:
            readme = f"{README_HINT} (PRECOMPILED_DRIVERS_DOCS_URL is not an https:// URL)"
    lines = [
        "### NVIDIA precompiled GPU drivers for OpenShift",
        "",
        "NVIDIA's documented procedure, automated: for each OpenShift release, find its Driver Toolkit "
        "image, read its kernel, build the driver image with NVIDIA's Makefile, push it, then switch the "
        "GPU Operator's ClusterPolicy to `usePrecompiled` and check that the new driver pods run. The "
        "policy is patched only when every GPU-node kernel has an image, and restored exactly if "
        "verification fails.",
        "",
        "Runs when a new release appears in the followed update channels, or by hand: **Trigger** opens "
        "the form below (its defaults work as they are). The *report* task's log tells the run's story: "
        "releases, images, the patch, and per kernel the image, its digest and whether its driver pods "
        "are Ready.",
        "",
        "#### Steps",
        "",
        "| step | runs as | does |",
        "|---|---|---|",
        *(f"| `{s.task_id}` | {s.runs_as} | {_cell(s.doc)} |" for s in procedure.STEPS),
        "",
        "#### The form",
        "",
    ]
    # A list, not a table: the docs dialog is narrow and the help texts are long.
    for name, param in form_params(settings).items():
        title = param.schema.get("title", name)
        lines.append(f"- **{title}** (`{name}`, default {_default(param.value)}): {_cell(help_text(param))}")
    lines += [
        "",
        "Every value is checked again before any pod starts; a rejected one fails *validate_inputs* "
        "with one line naming the field, the bad value and the expected form.",
        "",
        f"Settings, release discovery (Airflow Variables), a real cluster, troubleshooting: {readme}.",
    ]
    return "\n".join(lines)


dag_doc_md(installation())
