"""The pipeline's Python steps: thin Airflow-facing wrappers around the pure planning rules.

Each function takes XCom values and returns plain JSON; the DAG wraps them with ``@task``. The
decisions live in ``config``, ``plan``, ``rollout`` and ``cluster_policy``; the pod specs in ``steps``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from precompiled_drivers.config import RunConfig
    from precompiled_drivers.settings import Settings

# The DAG file imports this module to wrap its functions with @task, in every re-parse, and a parse needs
# only the function objects. What they run (the planning rules, the report, the step modules' env/item
# makers) is imported inside each function, so the dag-processor does not import it per parse (#20;
# tests/dags/test_dag_integrity.py keeps the budget).

log = logging.getLogger(__name__)


def _load(config: Mapping[str, Any]) -> tuple[RunConfig, Settings]:
    """The run's choices from XCom and the installation's settings (the object the DAG's operators use)."""
    from precompiled_drivers.config import RunConfig
    from precompiled_drivers.settings import installation

    return RunConfig.from_dict(config), installation()


def validate_inputs(
    params: Mapping[str, Any],
    triggering_asset_events: Any = None,
    dag_run: Any = None,
    asset_state_store: Any = None,
) -> dict[str, Any] | None:
    """Check every input of the run before any pod starts; release events become targets.

    A cron-fallback run (no events) polls the update graph itself, sharing the trigger's state; when
    nothing is new it returns None, and the DAG's short-circuit skips every step: no pod starts.

    A rejected input fails the task at once (``AirflowFailException``, no retry: the inputs would not
    change) with one line naming the field, the bad value and the expected form; the validation error
    is not chained, so the log shows no traceback from our code. Other errors, such as an unreachable
    metadata database, keep the task's retries.
    """
    from precompiled_drivers.config import run_config
    from precompiled_drivers.releases import schedule, variables
    from precompiled_drivers.settings import installation
    from precompiled_drivers.validation import ValidationError

    try:
        events = schedule.targets_from_events(triggering_asset_events) if triggering_asset_events else []
        if not events and _is_cron_run(dag_run) and asset_state_store is not None:
            events = _poll_for_cron_run(asset_state_store)
            if not events:
                return None
        # Checked now so a bad Variable starts no pod; plan_releases reads them for the look-ahead.
        variables.load_settings()
        cfg = run_config(params, installation(), [r.to_dict() for r in events])
    except (ValidationError, variables.SettingsError) as exc:
        from airflow.sdk.exceptions import AirflowFailException

        rejected = f"input rejected, no pod was started: {exc}"
        log.error("%s", rejected)
        # from None: the message is the whole story; the validator's frames would only bury it.
        raise AirflowFailException(rejected) from None
    log.info("targets: %s", ", ".join(f"{t.version}-{t.arch} ({t.source})" for t in cfg.targets) or "none")
    return cfg.to_dict()


def _is_cron_run(dag_run: Any) -> bool:
    # "scheduled" for timetable (cron) runs, "asset_triggered" for events. The task SDK's DagRunType is
    # a str enum whose str() is "DagRunType.SCHEDULED", so compare its value.
    run_type = getattr(dag_run, "run_type", None)
    return getattr(run_type, "value", run_type) == "scheduled"


def _poll_for_cron_run(store: Any) -> list[Any]:
    """New releases for a cron run (what the trigger would have fired); [] when nothing is new."""
    from precompiled_drivers.releases import schedule

    new, errors = schedule.poll_from_task(store)
    for exc in errors:
        log.warning("update graph unavailable, the next scheduled run retries: %s", exc)
    if not new:
        log.info("scheduled run: no new release in the followed channels; nothing to do, no pod started")
    return new


CLUSTER_KEY = "cluster"  # plan_releases' XCom with the cluster state the later planning steps read


def plan_releases(
    config: Mapping[str, Any], cluster: Mapping[str, Any], ti: Any = None
) -> list[dict[str, Any]]:
    """The releases to resolve (the run's targets, the cluster's release and its upgrade targets),
    as resolve_driver_toolkit's per-release kwargs.

    The first reader of inspect_cluster's XCom: it parses and validates it (an unusable cluster fails
    here) and pushes the ``ClusterState`` under ``CLUSTER_KEY`` for plan_builds and plan_rollout.
    """
    from precompiled_drivers import plan
    from precompiled_drivers.cluster import parse_cluster
    from precompiled_drivers.releases import schedule, variables
    from precompiled_drivers.steps import resolve_driver_toolkit

    cfg, settings = _load(config)
    state = parse_cluster(cluster, cfg.operator_version)
    if ti is not None:
        ti.xcom_push(key=CLUSTER_KEY, value=state.to_dict())
    upgrades: list[str] = []
    if state.cluster_version:
        # Off, or a limit of 0, in the discovery Variables: no request, no upgrade target.
        found = schedule.lookahead_releases(
            state.cluster_version,
            arch=cfg.arches[0],
            settings=variables.load_settings(),
            channel=str(cluster.get("cluster_channel") or "") or None,
        )
        upgrades = [release.version for release, _conditional in found]
        for release, conditional in found:
            if conditional:
                log.warning(
                    "upgrade to %s is conditional (known risks apply); building for it anyway", release
                )
    targets = plan.release_targets(cfg, state.cluster_version, upgrades)
    log.info("releases: %s", ", ".join(f"{t.version}-{t.arch} ({t.source})" for t in targets))
    return [resolve_driver_toolkit.item(settings, t) for t in targets]


def plan_builds(
    config: Mapping[str, Any], cluster: Mapping[str, Any], toolkits: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """One build per driver version x kernel, the OS tags to publish each under, and the registry look-up.

    A release whose toolkit data is malformed is left out (``rejected``, logged as an error, and the
    report fails the run for it); the other releases' builds go on. ``cluster`` is the ``ClusterState``
    plan_releases pushed (``CLUSTER_KEY``).
    """
    from precompiled_drivers import kernel_module, os_tag, plan, rollout
    from precompiled_drivers.cluster import ClusterState
    from precompiled_drivers.steps import check_published_images, publish_os_tags

    cfg, settings = _load(config)
    state = ClusterState.from_dict(cluster)
    parsed, rejected = plan.parse_toolkits(toolkits)
    for bad in rejected:
        log.error(
            "release %s-%s left out, its driver toolkit is unusable: %s", bad.version, bad.arch, bad.error
        )
    cluster_tags = os_tag.cluster_os_tags(
        os_tag.servable(state.nodes, state.operator_version), state.operator_version
    )
    requested = kernel_module.requested(state.policy)
    builds = plan.plan_builds(
        cfg,
        settings,
        parsed,
        state.operator_version,
        cluster_os_tags=cluster_tags,
        kernel_module_type=requested,
        gpu_kernels=state.kernels,
    )
    log.info("%s", os_tag.describe(cluster_tags, state.operator_version))
    for build in builds:
        log.info(
            "plan %s for %s (%s kernel modules, kernelModuleType %s)%s",
            build.image,
            ", ".join(build.releases),
            build.kernel_module_type,
            requested,
            "".join(f"\n  also as {alias}" for alias in build.aliases),
        )
        if build.warning:
            log.warning("%s", build.warning)
    # RT GPU nodes and the like are refused by the gate later; here they must not stop other kernels' builds.
    wanted = rollout.wanted_images(state, cfg.repository, cfg.image_name, cfg.rollout_driver_version)
    rollout_type = kernel_module.resolve(requested, cfg.rollout_driver_version)
    module_types = {image: rollout_type for image in wanted} | {b.image: b.kernel_module_type for b in builds}
    images = sorted({b.image for b in builds} | set(wanted))
    return {
        "candidates": [b.to_dict() for b in builds],
        "check_env": check_published_images.env(settings, images, module_types),
        "alias_env": publish_os_tags.env(settings, plan.alias_lines(builds)),
        "rejected": [r.to_dict() for r in rejected],
    }


def select_builds(
    config: Mapping[str, Any],
    candidates: Sequence[Mapping[str, Any]],
    published: Mapping[str, str],
    cluster: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Build kwargs for the images still missing (all of them when forced).

    When something must be built, the signing keys the installation requires must be in place
    (``cluster`` is the ``ClusterState``; its ``signing_keys`` come from inspect_cluster): otherwise the
    run fails here, before any build pod, naming the Secret to create.
    """
    from precompiled_drivers import plan, signing
    from precompiled_drivers.steps import build_driver_image

    cfg, settings = _load(config)
    builds = [plan.BuildSpec.from_dict(c) for c in candidates]
    todo = plan.builds_to_run(builds, published, cfg.force_rebuild)
    for build in builds:
        if build not in todo:
            log.info("skip %s: already published as %s", build.image, published[build.image])
    if todo:
        try:
            keys = signing.check_keys(
                (cluster or {}).get("signing_keys"),
                namespace=settings.namespace,
                module_secret=settings.module_signing_secret,
                require_module_signing=settings.require_module_signing,
                image_secret=settings.image_signing_secret,
                sign_images=settings.sign_images,
            )
        except signing.SigningKeyMissing as exc:
            from airflow.sdk.exceptions import AirflowFailException

            # A missing Secret does not appear by retrying: fail at once, nothing built.
            raise AirflowFailException(str(exc)) from exc
        log.info(
            "module signing key (sha256 of public_key.der): %s; image signing: %s",
            keys["module"] or signing.THROWAWAY_KEY,
            f"cosign.pub sha256 {keys['image']}" if settings.sign_images else "off",
        )
    return [build_driver_image.item(settings, cfg, b) for b in todo]


def plan_rollout(
    config: Mapping[str, Any],
    cluster: Mapping[str, Any],
    builds: Mapping[str, Any],
    published: Mapping[str, str],
    pushed: Sequence[Mapping[str, Any]] | None,
    aliased: Mapping[str, str] | None,
    ti: Any = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Upgrade readiness, refusals, coverage gate, guarded patch, its exact undo, and what verification
    must see. Readiness comes first and is kept (XCom ``readiness``) even when the gate refuses.
    ``cluster`` is the ``ClusterState`` plan_releases pushed (``CLUSTER_KEY``)."""
    from precompiled_drivers import nvidia_driver, readiness, rollout
    from precompiled_drivers.cluster import ClusterState
    from precompiled_drivers.cluster_policy import PolicyError
    from precompiled_drivers.steps import (
        check_gpu_workload,
        patch_cluster_policy,
        roll_out_nvidia_drivers,
        rollback_cluster_policy,
        verify_rollout,
    )

    cfg, settings = _load(config)
    state = ClusterState.from_dict(cluster)
    available = {image: digest for image, digest in published.items() if digest}
    available.update({p["image"]: p["digest"] for p in pushed or [] if p})
    available.update({image: digest for image, digest in (aliased or {}).items() if digest})
    ready = upgrade_readiness(cfg, settings, state.cluster_version, builds, available, run_id or "")
    for line in readiness.lines(ready["readiness"]):
        log.info("readiness: %s", line)
    nvd_mode = nvidia_driver.driver_mode(state) == nvidia_driver.NVIDIA_DRIVER
    try:
        if nvd_mode:
            # The operator ignores the ClusterPolicy's driver section: the NVIDIADriver resources, staged.
            staged = rollout.plan_nvidia_drivers(
                state,
                repository=cfg.repository,
                image=cfg.image_name,
                version=cfg.rollout_driver_version,
                available=available,
                allow_driver_restart=cfg.allow_driver_restart,
                canary=cfg.canary_pool,
            )
        else:
            planned = rollout.plan_rollout(
                state,
                repository=cfg.repository,
                image=cfg.image_name,
                version=cfg.rollout_driver_version,
                available=available,
            )
    except (rollout.RolloutBlocked, PolicyError) as exc:
        from airflow.sdk.exceptions import AirflowFailException

        if ti is not None:  # what record_readiness and the report read, as a successful plan returns it
            for key, value in ready.items():
                ti.xcom_push(key=key, value=value)
        # The same inputs give the same refusal: fail at once instead of retrying it.
        raise AirflowFailException(str(exc)) from exc
    if nvd_mode:
        log.info("%s", staged.mode_note)
        for line in (*staged.pools, *staged.stage_lines):
            log.info("%s", line)
        log.info("the stages as commands (guarded patches, exact undos):\n%s", "\n".join(staged.commands))
        # The ClusterPolicy steps get no input and skip; the rollout's own per-stage restore is its undo.
        return {
            "plan": staged.to_dict(),
            "patch_env": None,
            "verify_env": None,
            "gpu_check_env": None,
            "rollback_env": None,
            "nvd_env": roll_out_nvidia_drivers.env(
                settings, staged.stages, cfg.verify_timeout_seconds, cfg.dry_run
            ),
            **ready,
        }
    log.info("%s", planned.os_tag_note)
    log.info("%s", planned.upgrade_note)
    log.info("ClusterPolicy patch:\n%s", planned.summary)
    return {
        "plan": planned.to_dict(),
        "patch_env": patch_cluster_policy.env(settings, planned.patch, cfg.dry_run),
        "verify_env": verify_rollout.env(
            settings, planned.expected_lines, cfg.verify_timeout_seconds, cfg.dry_run
        ),
        # None (the check skips) when the installation turns it off or on a dry run.
        "gpu_check_env": check_gpu_workload.env(settings, [k.kernel for k in planned.kernels], cfg.dry_run),
        "rollback_env": rollback_cluster_policy.env(settings, planned.rollback, planned.previous_driver),
        "nvd_env": None,  # ClusterPolicy mode: roll_out_nvidia_drivers skips
        **ready,
    }


def upgrade_readiness(
    cfg: RunConfig,
    settings: Settings,
    cluster_version: str,
    builds: Mapping[str, Any],
    available: Mapping[str, str],
    run_id: str,
) -> dict[str, Any]:
    """``readiness`` (the document) and ``readiness_env`` (record_readiness' pod environment)."""
    from precompiled_drivers import plan, readiness
    from precompiled_drivers.steps import record_readiness

    document = readiness.summary(
        readiness.release_readiness(
            [plan.BuildSpec.from_dict(c) for c in builds.get("candidates") or []],
            builds.get("rejected") or [],
            available,
            driver_version=cfg.rollout_driver_version,
            cluster_version=cluster_version,
            requested=[t.version for t in cfg.targets],
        ),
        cfg.rollout_driver_version,
    )
    manifest = readiness.configmap(document, namespace=settings.namespace, run_id=run_id)
    return {"readiness": document, "readiness_env": record_readiness.env(settings, manifest)}


def report(
    results: Mapping[str, Any],
    states: Mapping[str, str],
    failures: Mapping[str, Any] | None = None,
    upstream: Mapping[str, Sequence[str]] | None = None,
    *,
    builds: bool = True,
) -> str:
    """Print the run's summary; fail the run, with the first failure's reason, when any step failed.

    A step that could not run because an earlier one failed (upstream_failed) fails the run too.
    ``builds=False``: without the releases and images (a fleet's report prints them once).
    """
    from precompiled_drivers.report import rejected_releases, render_report

    text = render_report(results, states, failures, upstream, builds=builds)
    log.info("\n%s", text)
    # A release whose driver toolkit was rejected got no image: the run did not do all it was asked.
    if failed_steps(states) or rejected_releases(results):
        raise RunFailed(text)
    return text


class RunFailed(RuntimeError):
    """The report task's error when a step failed: names the first failure; ``report`` is the whole text."""

    def __init__(self, report: str) -> None:
        super().__init__(f"the run did not complete: {report.splitlines()[0]} (see the report above)")
        self.report = report


def failed_steps(states: Mapping[str, str]) -> list[str]:
    """Steps that failed or could not run because of a failure, in procedure order."""
    from precompiled_drivers.report import STEPS

    bad = ("failed", "upstream_failed")
    return [s for s in STEPS if states.get(s) in bad] + sorted(
        s for s, state in states.items() if s not in STEPS and state in bad
    )


# What must succeed after the patch for it to stand: a failure of any restores the previous driver spec.
CHECKS_AFTER_PATCH = ("verify_rollout", "check_gpu_workload")


def needs_rollback(ti: Any, dag_run: Any) -> bool:
    """True when the ClusterPolicy may hold our patch and the patch, its verification or the GPU check failed.

    Runs after them, whatever their outcome. Nothing to restore when the patch never ran (a failed
    plan or gate), or when it failed and says it changed nothing (its guard refused: someone else's
    edit is left alone, not fought by a rollback that its own guard would refuse).
    """
    from precompiled_drivers.procedure import sibling, step_of

    # A fleet's cluster: the patch and checks of the same cluster (its group).
    ids = {sibling(ti.task_id, step): step for step in ("patch_cluster_policy", *CHECKS_AFTER_PATCH)}
    raw = ti.get_task_states(dag_id=dag_run.dag_id, run_ids=[dag_run.run_id], task_ids=list(ids))
    states = step_states({step_of(k): v for k, v in raw.get(dag_run.run_id, {}).items()})
    patch = ti.xcom_pull(task_ids=sibling(ti.task_id, "patch_cluster_policy"))
    needed, why = rollback_decision(states, patch if isinstance(patch, Mapping) else None)
    log.info("patch/checks states: %s; rollback %s: %s", states, "needed" if needed else "not needed", why)
    return needed


def rollback_decision(states: Mapping[str, str], patch: Mapping[str, Any] | None) -> tuple[bool, str]:
    """(rollback needed, why) from the states of the patch and the checks after it, and the patch's result."""
    patch_state = states.get("patch_cluster_policy")
    if patch_state == "failed":
        if patch is not None and patch.get("patched") is False:
            return False, "the patch failed and changed nothing"
        return True, "the patch failed and may have been applied"
    failed = [step for step in CHECKS_AFTER_PATCH if states.get(step) == "failed"]
    if patch_state == "success" and failed:
        if patch is not None and patch.get("patched") is False:
            return False, "the patch was not applied (dry run)"
        if failed[0] == "verify_rollout":
            return True, "the patched policy did not verify"
        return True, "the GPU workload check failed on the patched policy"
    return False, "the patch was not applied" if patch_state != "success" else "the rollout verified"


def step_states(task_states: Mapping[str, Any]) -> dict[str, str]:
    """Collapse mapped task states (``build_driver_image_3``) into one state per step, worst first."""
    from precompiled_drivers.report import STEPS

    order = ("failed", "upstream_failed", "up_for_retry", "running", "skipped", "success")

    def rank(state: str) -> float:
        # Any other state (queued, deferred, removed, none...) means "not done": it must not hide
        # behind a sibling's success or skip, so it ranks just after running.
        return order.index(state) if state in order else order.index("running") + 0.5

    collapsed: dict[str, str] = {}
    for key, state in task_states.items():
        step = next(
            (s for s in STEPS if key == s or (key.startswith(s + "_") and key[len(s) + 1 :].isdigit())), key
        )
        state = str(state or "none")
        known = collapsed.get(step)
        if known is None or rank(state) < rank(known):
            collapsed[step] = state
    return collapsed


def report_run(ti: Any, dag_run: Any) -> str:
    """Gather every step's result, state and recorded failure for ``report``.

    The text is also pushed when the run failed (``report`` then raises), so it is in XCom either way.
    """
    from precompiled_drivers.failures import FAILURE_KEY
    from precompiled_drivers.report import STEPS

    results = {step: ti.xcom_pull(task_ids=step) for step in STEPS}
    results["readiness"] = ti.xcom_pull(task_ids="plan_rollout", key="readiness")
    recorded = {step: ti.xcom_pull(task_ids=step, key=FAILURE_KEY) for step in STEPS}
    raw = ti.get_task_states(dag_id=dag_run.dag_id, run_ids=[dag_run.run_id]).get(dag_run.run_id, {})
    states = step_states(raw)
    try:
        return report(results, states, recorded, _upstream(ti, STEPS))
    except RunFailed as exc:
        ti.xcom_push(key="return_value", value=exc.report)
        raise


def _upstream(ti: Any, steps: Sequence[str]) -> dict[str, list[str]]:
    """Each step's ancestors in the DAG, to tell which failure kept an upstream_failed step from running."""
    dag = getattr(getattr(ti, "task", None), "dag", None)
    if dag is None:
        return {}
    return {
        step: sorted(dag.get_task(step).get_flat_relative_ids(upstream=True))
        for step in steps
        if dag.has_task(step)
    }
