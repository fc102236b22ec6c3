"""The run's human summary: what was planned, built, skipped, pushed, patched and verified.

Pure: it reads the steps' results (XCom values) and task states, and returns text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from precompiled_drivers import approval, procedure, readiness, signing

# Every step the report accounts for, in procedure order: all but the report itself.
STEPS: tuple[str, ...] = tuple(t for t in procedure.TASK_IDS if t != "report")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    line = "  ".join("{:<%d}" % w for w in widths)  # noqa: UP031 - widths are computed
    return [line.format(*header), line.format(*("-" * w for w in widths))] + [
        line.format(*map(str, row)) for row in rows
    ]


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return [v for v in value if v] if isinstance(value, list | tuple) else [value]


def kernel_rows(results: Mapping[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """One row per GPU-node kernel: kernel, OS tag the operator uses, tags published, digest, pods Ready."""
    plan = (results.get("plan_rollout") or {}).get("plan") or {}
    verified = (results.get("verify_rollout") or {}).get("kernels") or {}
    rows = []
    for kernel in plan.get("kernels", []):
        # verify_rollout reports each kernel under the name rollout.expected_lines gave it.
        status = verified.get(kernel["kernel"])
        ready = "yes" if status and status.get("status") == "ok" else ("-" if status is None else "NO")
        by_image = {image: tag for tag, image in kernel["images"].items()}
        in_use = by_image.get((status or {}).get("image", ""), "-")
        digests = sorted(set(kernel["digests"].values()))
        rows.append((kernel["kernel"], in_use, ",".join(sorted(kernel["images"])), ",".join(digests), ready))
    return rows


NO_CHANGE_AT = "1970-01-01T00:00:00Z"  # patch_cluster_policy.sh's patched_at when nothing changed
FAILED = ("failed", "upstream_failed")


def failure_records(failures: Mapping[str, Any] | None, step: str) -> list[dict[str, Any]]:
    """The failure records a step pushed (one per failed item of a mapped step), by map index."""
    records = [r for r in _list((failures or {}).get(step)) if isinstance(r, Mapping)]
    return sorted(records, key=lambda r: r.get("map_index", -1))


def first_failure(states: Mapping[str, str]) -> str | None:
    """The step that failed first, in procedure order (a later failure cannot come before it)."""
    return next((s for s in STEPS if states.get(s) == "failed"), None) or next(
        (s for s in STEPS if states.get(s) == "upstream_failed"), None
    )


def _describe(step: str, records: Sequence[Mapping[str, Any]]) -> str:
    items = [str(r["item"]) for r in records if r.get("item")]
    return f"{step} ({', '.join(items)})" if items else step


def _reason(records: Sequence[Mapping[str, Any]]) -> str:
    reasons = [str(r.get("reason") or "").strip() for r in records]
    reasons = [r.splitlines()[0] for r in reasons if r]
    return reasons[0] if reasons else "no reason recorded (see the step's task log)"


def rejected_releases(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Releases whose driver toolkit plan_builds could not use: they got no image, so the run failed."""
    return list((results.get("plan_builds") or {}).get("rejected") or [])


def headline(
    results: Mapping[str, Any], states: Mapping[str, str], failures: Mapping[str, Any] | None = None
) -> str:
    """The report's first line: the first failure and its reason, or what the run did."""
    step = first_failure(states)
    if step is not None:
        records = failure_records(failures, step)
        if states.get(step) == "upstream_failed":
            return f"Run FAILED: {step} could not run because an earlier task failed (see the task states)"
        return f"Run FAILED at {_describe(step, records)}: {_reason(records)}"
    if approval.was_rejected(results.get(approval.TASK_ID)):
        return approval.rejected_line(results[approval.TASK_ID])
    rejected = rejected_releases(results)
    if rejected:
        first = rejected[0]
        return f"Run FAILED: release {first['version']}-{first['arch']} left out: {first['error']}"
    nothing_new = states.get("validate_inputs") == "success" and not results.get("validate_inputs")
    if nothing_new and states.get("inspect_cluster") == "skipped":
        return "Nothing to do: no new release in the followed update channels; no pod was started."
    return "NVIDIA precompiled driver pipeline: report"


def step_state(step: str, states: Mapping[str, str], upstream: Mapping[str, Sequence[str]] | None) -> str:
    """A step's state as the report shows it: a step that could not run names the failure that stopped it."""
    state = states.get(step, "-")
    if state != "upstream_failed":
        return state
    ancestors = set((upstream or {}).get(step) or STEPS[: STEPS.index(step)])
    cause = next((s for s in STEPS if s in ancestors and states.get(s) == "failed"), None)
    cause = cause or next((s for s in STEPS if s in ancestors and states.get(s) in FAILED), None)
    return f"not run because of {cause}" if cause else "not run (an earlier task failed)"


def patch_outcome(results: Mapping[str, Any], states: Mapping[str, str]) -> str:
    """What the patch did to the ClusterPolicy, in words that match what happened."""
    patch = results.get("patch_cluster_policy") or {}
    state = states.get("patch_cluster_policy")
    if patch.get("patched"):
        if patch.get("patched_at") == NO_CHANGE_AT:
            return "already in place, nothing changed"
        return "applied"
    if state == "failed":
        if patch.get("patched") is False:
            return "NOT applied: refused, nothing changed"
        return "FAILED: see the step's reason"
    if state == "success":
        return "NOT applied: dry run"
    if approval.was_rejected(results.get(approval.TASK_ID)):
        return "NOT applied: the rollout was not approved"
    return "NOT applied: the step did not run"


def rollback_outcome(results: Mapping[str, Any], states: Mapping[str, str]) -> str | None:
    """One line on the rollback, or None when there was nothing to say (a run that went well)."""
    state = states.get("rollback_cluster_policy")
    rolled = results.get("rollback_cluster_policy") or {}
    patch_state = states.get("patch_cluster_policy")
    if state == "success":
        if rolled.get("rolled_back"):
            return "ROLLED BACK: the previous spec.driver was restored."
        return "Rollback: spec.driver already was the previous one; nothing to restore."
    if state == "failed":
        return "ROLLBACK FAILED: the ClusterPolicy may still hold the pipeline's patch (see the failure)."
    if state in ("upstream_failed",):
        if patch_state not in ("success", "failed"):
            # plan_rollout refused (or an earlier step failed): the patch step never ran.
            return "Rollback: not needed, the ClusterPolicy was not patched."
        return "Rollback: NOT run; check the ClusterPolicy by hand."
    if patch_state == "failed" and (results.get("patch_cluster_policy") or {}).get("patched") is False:
        return "Rollback: nothing to restore (the patch changed nothing)."
    return None


def _image_outcome(
    image: str, pushed: Mapping[str, str], published: Mapping[str, str], failed: Mapping[str, str]
) -> tuple[str, str]:
    if image in pushed:
        return "built+pushed", pushed[image]
    if published.get(image):
        return "exists, skipped", published[image]
    return failed.get(image, "not built"), ""


def render_report(
    results: Mapping[str, Any],
    states: Mapping[str, str],
    failures: Mapping[str, Any] | None = None,
    upstream: Mapping[str, Sequence[str]] | None = None,
    *,
    builds: bool = True,
) -> str:
    """The summary printed by the report task and by ``make demo``.

    ``failures`` holds each step's failure records (``failures.FAILURE_KEY`` XComs); ``upstream`` each
    step's ancestors, to name the failure that kept a step from running. ``builds=False`` leaves out the
    releases, images and signing (``build_lines``): a fleet's report prints them once for all clusters.
    """
    out = [headline(results, states, failures)]
    if out[0] != "NVIDIA precompiled driver pipeline: report":
        out.append("NVIDIA precompiled driver pipeline: report")
    out.append("")
    out += _table(("step", "state"), [(step, step_state(step, states, upstream)) for step in STEPS])
    failed = [s for s in STEPS if states.get(s) == "failed"]
    if failed:
        out += ["", "Failures (first one first):"]
        for step in failed:
            records = failure_records(failures, step) or [{}]
            for record in records:
                item = f" [{record['item']}]" if record.get("item") else ""
                out.append(f"  {step}{item}: {_reason([record])}")
                # The rest of a multi-line reason (the gate's list of kernels, each refusal) follows.
                more = str(record.get("reason") or "").strip().splitlines()[1:]
                out += [f"      {line.strip()}" for line in more if line.strip()]
    if builds:
        out += build_lines(results, failures)
    plan = (results.get("plan_rollout") or {}).get("plan") or {}
    approval_state = states.get(approval.TASK_ID)
    why_not = _reason(failure_records(failures, approval.TASK_ID)) if approval_state == "failed" else None
    approved = approval.outcome(results.get(approval.TASK_ID), approval_state, why_not)
    if approved:
        out += ["", approved]
    if plan.get("mode") == NVIDIA_DRIVER_MODE:
        out += nvidia_driver_lines(plan, results, states)
    elif plan:
        out += ["", f"ClusterPolicy patch ({patch_outcome(results, states)}):", plan.get("summary", "")]
    rollback = rollback_outcome(results, states)
    if rollback:
        out += ["", rollback]
    if plan.get("os_tag_note"):
        out += ["", plan["os_tag_note"] + "."]
    if plan.get("upgrade_note"):
        out += ["", plan["upgrade_note"] + "."]
    rows = kernel_rows(results)
    if rows:
        header = ("kernel", "OS tag in use", "OS tags published", "digest", "driver pods Ready")
        out += ["", *_table(header, rows)]
    out += gpu_check_lines(results, states, failures)
    out += readiness_lines(results)
    return "\n".join(out)


def build_lines(results: Mapping[str, Any], failures: Mapping[str, Any] | None = None) -> list[str]:
    """The releases resolved, the releases left out, the images (built, pushed, copied) and their signing."""
    out: list[str] = []
    releases = _list(results.get("resolve_driver_toolkit"))
    if releases:
        out += ["", "Releases:"] + [
            f"  {r['version']}-{r['arch']}: driver toolkit {r['dtk_image']}"
            + (f", driver-toolkit-10 {r['dtk_image_10']}" if r.get("dtk_image_10") else "")
            for r in releases
        ]
    rejected = rejected_releases(results)
    if rejected:
        out += ["", "Releases left out (driver toolkit unusable, no image planned):"] + [
            f"  {r['version']}-{r['arch']}: {r['error']}" for r in rejected
        ]
    candidates = (results.get("plan_builds") or {}).get("candidates") or []
    published = results.get("check_published_images") or {}
    pushed = {p["image"]: p["digest"] for p in _list(results.get("push_driver_image"))}
    failed_images = {
        str(r["item"]): f"{step.split('_')[0]} FAILED"
        for step in ("push_driver_image", "build_driver_image")
        for r in failure_records(failures, step)
        if r.get("item")
    }
    if candidates:
        out += [""]
        rows = []
        for c in candidates:
            outcome, digest = _image_outcome(c["image"], pushed, published, failed_images)
            rows.append((c["image"], c.get("kernel_module_type", "-"), outcome, digest[:19]))
            copies = results.get("publish_os_tags") or {}
            rows += [
                (f"  also {alias.rsplit(':', 1)[1]}", "", "copied" if copies.get(alias) else "missing", "")
                for alias in c.get("aliases", ())
            ]
        out += _table(("image", "kernel modules", "outcome", "digest"), rows)
    out += signing.report_lines(results)
    return out


NVIDIA_DRIVER_MODE = "NVIDIADriver"  # nvidia_driver.NVIDIA_DRIVER: plan_rollout's plan "mode"
NVD_STEP = "roll_out_nvidia_drivers"
STAGE_OUTCOMES = {
    "verified": "verified (stays on the new driver)",
    "restored": "FAILED, restored exactly as it was",
    "restore_failed": "FAILED, RESTORE FAILED: check it by hand",
    "not_applied": "FAILED before any change (nothing changed)",
    "not_started": "not started",
}


def nvidia_driver_lines(
    plan: Mapping[str, Any], results: Mapping[str, Any], states: Mapping[str, str]
) -> list[str]:
    """NVIDIADriver mode: the pools, then per stage (canary first) what roll_out_nvidia_drivers did."""
    result = results.get(NVD_STEP) or {}
    done = {s.get("driver"): s for s in result.get("stages") or [] if isinstance(s, Mapping)}
    state = states.get(NVD_STEP)
    if result.get("dry_run"):
        headline = "NOT applied: dry run"
    elif result.get("verified"):
        headline = "every stage verified"
    elif state == "failed":
        headline = "FAILED: see the stages"
    elif approval.was_rejected(results.get(approval.TASK_ID)):
        headline = "NOT applied: the rollout was not approved"
    else:
        headline = "NOT applied: the step did not run"
    out = ["", f"NVIDIADriver rollout ({headline}): {plan.get('mode_note', '')}"]
    out += [f"  {line}" for line in plan.get("pools") or []]
    rows, why = [], []
    for number, stage in enumerate(plan.get("stages") or [], 1):
        outcome = done.get(stage.get("driver")) or {}
        shown = STAGE_OUTCOMES.get(str(outcome.get("outcome")), "-") if outcome else "-"
        rows.append((str(number), stage.get("driver", ""), stage.get("action", ""), shown))
        reason = str(outcome.get("reason") or "")
        if reason and outcome.get("outcome") != "not_started":
            why.append(f"  stage {number} ({stage.get('driver', '')}): {reason}")
    out += ["", "Stages (canary first, one at a time):"]
    out += [f"  {row}".rstrip() for row in _table(("stage", "NVIDIADriver", "action", "outcome"), rows)]
    out += ["", *why] if why else []
    out += ["", "Planned stages:"] + [f"  {line}" for line in plan.get("stage_lines") or []]
    verified = [d for d, s in done.items() if s.get("outcome") == "verified"]
    failed = [d for d, s in done.items() if s.get("outcome") not in ("verified", "not_started")]
    if failed:
        kept = (
            f"Stages already verified stay on the new driver: {', '.join(verified)}."
            if verified
            else "No stage had been verified before it: no NVIDIADriver runs the new driver."
        )
        out += ["", f"The rollout stopped at NVIDIADriver {failed[0]}; later stages were not started. {kept}"]
    return out


GPU_CHECK = "check_gpu_workload"


def gpu_check_lines(
    results: Mapping[str, Any], states: Mapping[str, str], failures: Mapping[str, Any] | None = None
) -> list[str]:
    """Per kernel, the node that ran the GPU workload check and the line it printed (check_gpu_workload).

    The script writes its result before it fails, and KubernetesPodOperator.cleanup pushes it before it
    fails the task; a try that left none (its pod lost) is described by its reason, which names each
    failed kernel.
    """
    state = states.get(GPU_CHECK)
    result = results.get(GPU_CHECK) or {}
    kernels = result.get("kernels") or {}
    if kernels:
        rows = [
            (kernel, k.get("node", "-"), k.get("status", "-"), k.get("output", ""))
            for kernel, k in kernels.items()
        ]
        head = f"GPU workload check ({result.get('image', '-')}):"
        return ["", head, *_table(("kernel", "node", "result", "output"), rows)]
    if state == "failed":
        return ["", f"GPU workload check FAILED: {_reason(failure_records(failures, GPU_CHECK))}"]
    if state == "skipped" and states.get("verify_rollout") == "success":
        return [
            "",
            "GPU workload check: not run (turned off by PRECOMPILED_DRIVERS_GPU_CHECK, or a dry run).",
        ]
    return []


def readiness_lines(results: Mapping[str, Any]) -> list[str]:
    """Per planned release: can the cluster move to it (plan_rollout's ``readiness``), where it is kept."""
    document = results.get("readiness") or {}
    if not document.get("releases"):
        return []
    out = ["", f"Upgrade readiness (driver {document.get('driver_version')}):"]
    out += [f"  {line}" for line in readiness.lines(document)]
    recorded = (results.get("record_readiness") or {}).get("configmap")
    out.append(f"  recorded in ConfigMap {recorded}" if recorded else "  not recorded (see record_readiness)")
    return out
