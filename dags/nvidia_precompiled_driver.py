"""
### NVIDIA precompiled GPU drivers for OpenShift

NVIDIA's documented procedure, automated: for each OpenShift release, find its Driver Toolkit
image, read its kernel, build the driver image with NVIDIA's Makefile, push it, then switch the GPU
Operator's ClusterPolicy to `usePrecompiled` and check that the new driver pods run. The policy is
patched only when every GPU-node kernel has an image, and restored exactly if verification or the
GPU workload check fails.

Runs when a new release appears in the followed update channels, or by hand from the form.
Steps run as pods (KubernetesPodOperator) with static scripts. One task per step of
``procedure.STEPS``, in its order; each pod step's ``task`` comes from its module in ``steps/``.
The UI shows ``dag_docs.dag_doc_md``: this text, the step and form tables, and a link to the README.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

# The dag-processor imports the airflow.* modules a DAG file names, once, in its own process before it
# forks a parser for the file ([dag_processor] parsing_pre_import_modules). Naming the pod operator's,
# @task's and task.short_circuit's modules here keeps their imports (seconds for the Kubernetes clients)
# out of every re-parse; so does naming what building the DAG imports lazily: the provider's Secret
# (steps/base.py), EmptyOperator and BaseSensorOperator (Airflow's mapped-operator expansion). The test in
# tests/dags/test_dag_integrity.py on the import budget fails when a parse imports an airflow.* module.
import airflow.providers.cncf.kubernetes.operators.pod
import airflow.providers.cncf.kubernetes.secret
import airflow.providers.standard.decorators.short_circuit
import airflow.providers.standard.operators.empty
import airflow.providers.standard.operators.hitl
import airflow.sdk.bases.sensor
import airflow.sdk.definitions.decorators  # noqa: F401
from airflow.sdk import DAG, TaskGroup, task

from precompiled_drivers import failures, fleet_tasks, procedure, tasks
from precompiled_drivers.dag_docs import dag_doc_md
from precompiled_drivers.fleet import is_default, waves
from precompiled_drivers.form import form_params
from precompiled_drivers.notifier import callbacks
from precompiled_drivers.releases.schedule import release_asset_ref, release_schedule
from precompiled_drivers.settings import installation
from precompiled_drivers.steps import (
    approve_rollout,
    build_driver_image,
    check_gpu_workload,
    check_published_images,
    inspect_cluster,
    inspect_driver_toolkit,
    patch_cluster_policy,
    publish_os_tags,
    push_driver_image,
    record_readiness,
    resolve_driver_toolkit,
    roll_out_nvidia_drivers,
    rollback_cluster_policy,
    verify_rollout,
)
from precompiled_drivers.steps.base import retry_delay

# The one settings object: these operators and the Python steps' pod environments both read it.
settings = installation()
notify = callbacks(settings)  # e-mail on failure, rollback, pending approval (none without recipients)
# The clusters to keep covered (PRECOMPILED_DRIVERS_CLUSTERS): one, unless a fleet is configured. A fleet
# puts each cluster's steps in a group named after it (dev.inspect_cluster, dev.plan_rollout...).
fleet = settings.fleet()
single = is_default(fleet)

with DAG(
    dag_id="nvidia_precompiled_driver",
    description="Build, publish and roll out NVIDIA precompiled GPU driver images for OpenShift",
    doc_md=dag_doc_md(settings),
    schedule=release_schedule(settings.cron),
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,  # two runs must never patch the ClusterPolicy at the same time
    tags=["nvidia", "gpu", "openshift", "precompiled-drivers"],
    default_args={
        "owner": "platform-gpu",
        "retries": 2,
        "retry_delay": retry_delay(settings),
        "retry_exponential_backoff": True,
    },
) as dag:
    # Every Python step records why it failed, as the pod steps do, for the report's first line.
    step = failures.recorded

    # Short-circuit: a cron run that finds no new release skips every step (no pod starts); only the
    # report still runs. It skips its direct downstream only: the others skip by their trigger rules.
    config = task.short_circuit(
        step(tasks.validate_inputs),
        inlets=[release_asset_ref()],
        ignore_downstream_trigger_rules=False,
    )()
    if single:
        inspections = [inspect_cluster.task(settings)]
        releases = task(step(tasks.plan_releases))(config, inspections[0].output)
    else:
        # A fleet: each cluster inspected in its group, over its own connection, in parallel; one that
        # cannot be inspected is left out by plan_releases (all_done) and the others go on.
        groups = {m.name: TaskGroup(m.name, tooltip=f"cluster {m.name} (wave {m.wave})") for m in fleet}
        inspections = []
        for member in fleet:
            with groups[member.name]:
                inspections.append(inspect_cluster.task(settings, kubernetes_conn_id=member.conn_id))
        releases = task(step(fleet_tasks.plan_releases), trigger_rule="all_done")(config)
        inspections >> releases
    config >> inspections  # nothing, not even the cluster inspection, starts before the inputs are valid
    state = releases[tasks.CLUSTER_KEY]  # the cluster as plan_releases read and validated it, once

    resolved = resolve_driver_toolkit.task(settings, releases)  # one pod per release
    toolkits = inspect_driver_toolkit.task(settings, resolved.output)  # one per resolved release

    if single:
        builds = task(step(tasks.plan_builds), multiple_outputs=True)(config, state, toolkits.output)
    else:  # each image once for the whole fleet, published under every reference a cluster needs
        builds = task(step(fleet_tasks.plan_builds), multiple_outputs=True)(config, toolkits.output)
    published = check_published_images.task(settings, builds["check_env"])
    selected = task(step(tasks.select_builds))(config, builds["candidates"], published.output, state)
    built = build_driver_image.task(settings, selected)  # one pod per image
    pushed = push_driver_image.task(settings, built.output)  # every image that built, even if one did not

    # The operator takes one OS tag for the whole cluster: each image also goes under the other tags.
    tagged = publish_os_tags.task(settings, builds["alias_env"], trigger_rule="none_failed_min_one_success")
    pushed >> tagged
    images = (builds, published.output, pushed.output, tagged.output)

    def roll_out(plan: Any, conn: dict[str, str]) -> tuple[list[Any], Any]:
        """One cluster's rollout after its plan, over its connection: (its final tasks, record_readiness)."""
        # Which planned releases the cluster can move to: a ConfigMap, written even when the gate refuses.
        readiness = record_readiness.task(settings, plan["readiness_env"], **conn)
        # Passes at once unless the run requires approval; reject skips the patch.
        approved = approve_rollout.operator(settings, notifiers=notify.approval)
        patched = patch_cluster_policy.task(settings, plan["patch_env"], **conn)
        # NVIDIADriver mode (the patch then skips: no input): one NVIDIADriver at a time, canary first; a
        # failed stage is restored by the step itself, so no ClusterPolicy rollback follows it.
        staged = roll_out_nvidia_drivers.task(settings, plan["nvd_env"], **conn)
        verified = verify_rollout.task(settings, plan["verify_env"], **conn)
        # A CUDA workload on one GPU per kernel; skipped when the installation turns it off (or a dry run).
        gpu_checked = check_gpu_workload.task(settings, plan["gpu_check_env"], **conn)
        # Decides after patch and verify whatever their outcome; skips only the rollback (never the report).
        rollback_needed = task.short_circuit(
            step(tasks.needs_rollback),
            trigger_rule="all_done",
            retries=0,
            ignore_downstream_trigger_rules=False,
        )()
        rolled_back = rollback_cluster_policy.task(
            settings, plan["rollback_env"], on_success_callback=notify.rollback, **conn
        )
        plan >> approved >> [patched, staged]
        patched >> verified >> gpu_checked >> rollback_needed >> rolled_back
        patched >> rollback_needed
        return [rolled_back, gpu_checked, staged, verified], readiness

    if single:
        finals, readiness = roll_out(
            task(step(tasks.plan_rollout), multiple_outputs=True, trigger_rule="none_failed")(
                config, state, *images
            ),
            {},
        )
        finals.append(readiness)
    else:
        # Wave after wave: a wave's clusters in parallel, each after every cluster of the wave before
        # finished; a failure there stops this wave (none_failed), a wave that verified none skips it.
        finals, before = [], []
        for wave in waves(fleet):
            done = []
            for member in wave.clusters:
                with groups[member.name]:  # the group its inspection is in
                    plan = task(
                        step(fleet_tasks.plan_rollout), multiple_outputs=True, trigger_rule="none_failed"
                    )(config, *images)
                    ended, readiness = roll_out(plan, {"kubernetes_conn_id": member.conn_id})
                before >> plan
                done += ended
                finals.append(readiness)  # the report waits for it; the next wave does not
            finals += done
            before = done
    # The only leaf: it always runs, and fails the run when any step failed or could not run; so its
    # failure is the run's, and the failure notification hangs on it (with the report in hand).
    summary = task(
        tasks.report_run if single else fleet_tasks.report_run,
        task_id="report",
        trigger_rule="all_done",
        retries=0,
        on_failure_callback=notify.failure,
    )()
    [*finals, *inspections, tagged, toolkits] >> summary

# One task per registered step, in procedure order (a step added here but not to procedure.STEPS, or the
# other way round, is an import error naming it).
procedure.check_order(dag.task_ids)

# The trigger form is attached once every task exists. Airflow copies a DAG's params into each task made
# inside it, and the dag-processor validates every copied field twice per task each time it serializes the
# DAG (13 fields x 16 tasks x 2, every re-parse). A task needs no copy: a run's tasks get the DAG's params
# merged with the run's conf (`process_params`). Assigning runs the DAG's own converter and validator, as
# the constructor would. tests/dags/test_params_attachment.py pins these Airflow behaviours.
dag.params = form_params(settings)
