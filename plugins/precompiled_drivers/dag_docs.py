"""The DAG's documentation in the Airflow UI (``doc_md``): what it does, its steps, its form, the README.

The form table is built from ``form.form_params`` so it always shows the fields, defaults and expected
forms the form really has; the step table lists every task of the DAG (a test checks both).
"""

from __future__ import annotations

import json
from typing import Any

from precompiled_drivers import validation
from precompiled_drivers.form import form_params, help_text
from precompiled_drivers.settings import Settings

# Every task of the DAG, in order: (runs as, what it does).
STEP_DOCS: dict[str, tuple[str, str]] = {
    "validate_inputs": (
        "Python",
        "checks every form field, release event and setting; nothing starts before",
    ),
    "inspect_cluster": (
        "pod (oc)",
        "GPU nodes with their kernels and OS, GPU Operator, ClusterPolicy, version",
    ),
    "plan_releases": ("Python", "form/event releases + the cluster's release + its upgrade targets"),
    "resolve_driver_toolkit": ("pod per release", "`oc adm release info --image-for=driver-toolkit`"),
    "inspect_driver_toolkit": ("pod per release", "reads the kernel and RHEL version of the DTK image"),
    "plan_builds": ("Python", "releases x driver versions: image tag, build directory, OS tag"),
    "check_published_images": ("pod (skopeo)", "which tags already exist in the target repository"),
    "select_builds": ("Python", "drops existing tags (unless *Force rebuild*)"),
    "build_driver_image": ("pod per image (podman)", "NVIDIA's `make image`, pushed to staging"),
    "push_driver_image": (
        "pod per image (skopeo)",
        "copies staging to the target repository, digest checked",
    ),
    "publish_os_tags": (
        "pod (skopeo)",
        "copies each image, by digest, to every other OS tag the operator may look for",
    ),
    "plan_rollout": (
        "Python",
        "refuses nodes precompiled mode cannot serve; coverage gate: every GPU-node kernel has an image "
        "under every OS tag the cluster reports; the guarded patch",
    ),
    "approve_rollout": (
        "human in the loop",
        "when approval is required: a person approves the patch (Required Actions) seeing the gate, the "
        "ClusterPolicy diff and the kernel -> image table; reject or timeout: no patch, images stay "
        "published; otherwise passes at once",
    ),
    "patch_cluster_policy": (
        "pod (oc)",
        "switches the ClusterPolicy to `usePrecompiled` (*Dry run*: prints)",
    ),
    "verify_rollout": ("pod (oc)", "waits until the new driver pods are Ready on every kernel"),
    "needs_rollback": ("Python", "only when the patch or its verification failed"),
    "rollback_cluster_policy": ("pod (oc)", "restores the previous `spec.driver` exactly"),
    "report": ("Python", "the run's summary (in its log); fails the run if any step failed"),
}

README_HINT = "README.md at the root of the pipeline's repository"


def _default(value: Any) -> str:
    if value in (None, "", []):
        return "(empty)"
    return f"`{json.dumps(value) if isinstance(value, list | bool) else value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


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
        *(f"| `{step}` | {runs} | {_cell(does)} |" for step, (runs, does) in STEP_DOCS.items()),
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
