"""The run's human summary: what was planned, built, skipped, pushed, patched and verified.

Pure: it reads the steps' results (XCom values) and task states, and returns text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

STEPS = (
    "validate_inputs",
    "inspect_cluster",
    "plan_releases",
    "resolve_driver_toolkit",
    "inspect_driver_toolkit",
    "plan_builds",
    "check_published_images",
    "select_builds",
    "build_driver_image",
    "push_driver_image",
    "publish_os_tags",
    "plan_rollout",
    "patch_cluster_policy",
    "verify_rollout",
    "needs_rollback",
    "rollback_cluster_policy",
)


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
        status = next(
            (
                s
                for name, s in verified.items()
                if kernel["daemonset"].startswith(f"nvidia-driver-daemonset-{name}-")
            ),
            None,
        )
        ready = "yes" if status and status.get("status") == "ok" else ("-" if status is None else "NO")
        by_image = {image: tag for tag, image in kernel["images"].items()}
        in_use = by_image.get((status or {}).get("image", ""), "-")
        digests = sorted(set(kernel["digests"].values()))
        rows.append((kernel["kernel"], in_use, ",".join(sorted(kernel["images"])), ",".join(digests), ready))
    return rows


def render_report(results: Mapping[str, Any], states: Mapping[str, str]) -> str:
    """The summary printed by the report task and by ``make demo``."""
    out = ["NVIDIA precompiled driver pipeline: report", ""]
    out += _table(("step", "state"), [(step, states.get(step, "-")) for step in STEPS])
    releases = _list(results.get("resolve_driver_toolkit"))
    if releases:
        out += ["", "Releases:"] + [
            f"  {r['version']}-{r['arch']}: driver toolkit {r['dtk_image']}"
            + (f", driver-toolkit-10 {r['dtk_image_10']}" if r.get("dtk_image_10") else "")
            for r in releases
        ]
    rejected = (results.get("plan_builds") or {}).get("rejected") or []
    if rejected:
        out += ["", "Releases left out (driver toolkit unusable, no image planned):"] + [
            f"  {r['version']}-{r['arch']}: {r['error']}" for r in rejected
        ]
    candidates = (results.get("plan_builds") or {}).get("candidates") or []
    published = results.get("check_published_images") or {}
    pushed = {p["image"]: p["digest"] for p in _list(results.get("push_driver_image"))}
    if candidates:
        out += [""]
        rows = []
        for c in candidates:
            if c["image"] in pushed:
                outcome, digest = "built+pushed", pushed[c["image"]]
            elif published.get(c["image"]):
                outcome, digest = "exists, skipped", published[c["image"]]
            else:
                outcome, digest = "not built", ""
            rows.append((c["image"], c.get("kernel_module_type", "-"), outcome, digest[:19]))
            copies = results.get("publish_os_tags") or {}
            rows += [
                (f"  also {alias.rsplit(':', 1)[1]}", "", "copied" if copies.get(alias) else "missing", "")
                for alias in c.get("aliases", ())
            ]
        out += _table(("image", "kernel modules", "outcome", "digest"), rows)
    patch = results.get("patch_cluster_policy") or {}
    plan = (results.get("plan_rollout") or {}).get("plan") or {}
    if plan:
        applied = "applied" if patch.get("patched") else "NOT applied (dry run or failed)"
        out += ["", f"ClusterPolicy patch ({applied}):", plan.get("summary", "")]
    if states.get("rollback_cluster_policy") == "success":
        out += ["", "ROLLED BACK: the previous spec.driver was restored."]
    if plan.get("os_tag_note"):
        out += ["", plan["os_tag_note"] + "."]
    rows = kernel_rows(results)
    if rows:
        header = ("kernel", "OS tag in use", "OS tags published", "digest", "driver pods Ready")
        out += ["", *_table(header, rows)]
    return "\n".join(out)
