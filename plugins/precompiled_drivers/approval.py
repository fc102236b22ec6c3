"""The rollout approval: what the person asked to approve reads, and what the report says of the answer.

Pure: the request is rendered from ``plan_rollout``'s result (the ``plan`` XCom) and the run's config;
the outcome from the approval step's result, state and failure reason. The operator that asks
(the standard provider's ``ApprovalOperator``) lives in ``steps/approve_rollout.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

TASK_ID = "approve_rollout"

# The approval step's result when the run did not ask (approval off for this run).
NOT_REQUIRED = "not required"
APPROVED = "approved"
REJECTED = "rejected"
# Said in the report and in the step's failure reason, whatever the outcome's cause.
UNCHANGED = "the ClusterPolicy was not patched; the images stay published"


def duration(seconds: int) -> str:
    """``90`` -> ``1m 30s``, ``86400`` -> ``24h``: a timeout as a person reads it."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return " ".join(p for p in parts if p) or "0s"


def request_subject(config: Mapping[str, Any], plan: Mapping[str, Any]) -> str:
    """The request's headline: which driver, how many kernels, which ClusterPolicy."""
    kernels = plan.get("kernels") or []
    policy = (config.get("settings") or {}).get("policy_name", "the ClusterPolicy")
    version = config.get("rollout_driver_version", "?")
    if plan.get("mode") == "NVIDIADriver":
        names = ", ".join(s.get("driver", "?") for s in plan.get("stages") or [])
        return f"Roll out NVIDIA driver {version} (precompiled) to NVIDIADriver {names}, one at a time?"
    noun = "kernel" if len(kernels) == 1 else "kernels"
    return f"Roll out NVIDIA driver {version} (precompiled) to {len(kernels)} GPU-node {noun} via {policy}?"


def _md_cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def kernel_image_rows(plan: Mapping[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """One row per (kernel, OS tag): kernel, its GPU nodes, the OS tag, the image, its digest."""
    rows = []
    for kernel in plan.get("kernels") or []:
        for tag, image in sorted((kernel.get("images") or {}).items()):
            digest = (kernel.get("digests") or {}).get(image, "")
            nodes = ", ".join(kernel.get("nodes") or ())
            rows.append((kernel["kernel"], nodes, tag, image, digest))
    return rows


def gate_result(plan: Mapping[str, Any]) -> str:
    """The coverage gate's verdict; only a plan that passed it reaches the approval."""
    kernels = plan.get("kernels") or []
    nodes = sorted({n for k in kernels for n in k.get("nodes") or ()})
    images = sorted({i for k in kernels for i in (k.get("images") or {}).values()})
    return (
        f"passed: every GPU-node kernel ({len(kernels)}, on {len(nodes)} nodes) has a published image "
        f"under every OS tag the operator may use ({len(images)} images)"
    )


def request_body(config: Mapping[str, Any], plan: Mapping[str, Any], timeout_seconds: int) -> str:
    """The request's Markdown: the gate, the ClusterPolicy diff and JSON patch, the kernel -> image table."""
    policy = (config.get("settings") or {}).get("policy_name", "the ClusterPolicy")
    if plan.get("mode") == "NVIDIADriver":
        return nvidia_driver_request_body(config, plan, timeout_seconds)
    lines = [
        f"**Coverage gate**: {gate_result(plan)}.",
        "",
        f"{plan['os_tag_note']}." if plan.get("os_tag_note") else "",
        "",
        f"#### ClusterPolicy `{policy}`: spec.driver before -> after",
        "",
        "```",
        str(plan.get("summary") or "no change to spec.driver"),
        "```",
        "",
        "JSON patch (applied as one request; its `test` guard refuses it if spec.driver changed meanwhile):",
        "",
        "```json",
        json.dumps(plan.get("patch") or [], indent=2, sort_keys=True),
        "```",
        "",
        "#### Kernel -> image",
        "",
        "| kernel | GPU nodes | OS tag | image | digest |",
        "|---|---|---|---|---|",
        *(f"| {' | '.join(_md_cell(c) for c in row)} |" for row in kernel_image_rows(plan)),
        "",
        "**Approve**: the ClusterPolicy is patched and the new driver pods are verified (rolled back if "
        f"they do not become Ready). **Reject**, or no answer within {duration(timeout_seconds)}: "
        f"{UNCHANGED}.",
    ]
    if config.get("dry_run"):
        lines += ["", "*Dry run*: on approval the patch is printed, not applied."]
    return "\n".join(lines)


def nvidia_driver_request_body(
    config: Mapping[str, Any], plan: Mapping[str, Any], timeout_seconds: int
) -> str:
    """NVIDIADriver mode's request: the pools, each stage (canary first) with its undo, the commands."""
    lines = [
        f"**{plan.get('mode_note', 'NVIDIADriver mode')}**",
        "",
        "**Coverage gate**: passed: every pool of every NVIDIADriver has a published image.",
        "",
        "#### Pools now",
        "",
        *(f"- {_md_cell(line)}" for line in plan.get("pools") or []),
        "",
        "#### Stages, one at a time (the first failure restores that NVIDIADriver and stops)",
        "",
        *(f"1. {_md_cell(line)}" for line in plan.get("stage_lines") or []),
        "",
        "```",
        *(plan.get("commands") or []),
        "```",
        "",
        f"**Approve**: the stages run. **Reject**, or no answer within {duration(timeout_seconds)}: "
        "no NVIDIADriver is changed; the images stay published.",
    ]
    if config.get("dry_run"):
        lines += ["", "*Dry run*: on approval the stages are printed, not applied."]
    return "\n".join(lines)


def result(chosen: list[str], user: Mapping[str, Any] | None, responded_at: str | None) -> dict[str, Any]:
    """The approval step's result (its XCom) from the answer the operator received."""
    return {
        "decision": APPROVED if chosen == ["Approve"] else REJECTED,
        "by": str((user or {}).get("name") or (user or {}).get("id") or "unknown user"),
        "at": responded_at,
    }


def timed_out(timeout_seconds: int) -> str:
    """The approval step's failure reason when nobody answered in time."""
    return (
        f"approval timed out after {duration(timeout_seconds)}: nobody approved or rejected the rollout; "
        f"{UNCHANGED}"
    )


def outcome(
    step_result: Mapping[str, Any] | None, state: str | None, reason: str | None = None
) -> str | None:
    """The report's line on the approval, or None when the step did not decide anything.

    ``reason`` is the step's recorded failure reason (a timeout says so).
    """
    decision = (step_result or {}).get("decision")
    if decision == APPROVED:
        return f"Rollout approved by {step_result['by']} at {step_result.get('at') or '?'}."  # type: ignore[index]
    if decision == REJECTED:
        return rejected_line(step_result or {})
    if decision == NOT_REQUIRED:
        return None  # the run did not ask: nothing to tell (the report of such a run stays as it was)
    if state == "failed":
        why = (reason or "").strip().splitlines()[0] if (reason or "").strip() else ""
        return f"Rollout not approved: {why or f'{TASK_ID} failed; ' + UNCHANGED}."
    return None


def rejected_line(step_result: Mapping[str, Any]) -> str:
    """The report's first line for a rejected rollout."""
    return f"Rollout not approved: rejected by {step_result.get('by', '?')}; {UNCHANGED}."


def was_rejected(step_result: Mapping[str, Any] | None) -> bool:
    """True when a person rejected the rollout."""
    return (step_result or {}).get("decision") == REJECTED
