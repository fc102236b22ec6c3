"""Step: in NVIDIADriver mode, roll out the NVIDIADriver resources stage by stage, canary first.

plan_rollout computes the stages (``nvidia_driver.plan_stages``: a guarded patch of a precompiled CR, or
the replacement of a compiled one when the run allows a driver restart); the script applies each, verifies
its pools' driver pods and the CR's status, and on the first failure restores that stage exactly and
stops. Stages already verified stay. In ClusterPolicy mode plan_rollout leaves it no input: it skips.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from precompiled_drivers import procedure
from precompiled_drivers.settings import Settings
from precompiled_drivers.steps.base import StepPodOperator, pod_task, step_env, step_kwargs

if TYPE_CHECKING:
    from precompiled_drivers.nvidia_driver import Stage

STEP = procedure.step("roll_out_nvidia_drivers")


def pod(settings: Settings) -> dict[str, Any]:
    """The rollout pod: get/patch/create/delete NVIDIADrivers, list driver DaemonSets and pods; creates,
    reads and deletes the GPU check pods in the pipeline namespace.

    Like the ClusterPolicy patch, a script that ran and failed is final (it has already restored the
    failed stage); the one retry serves a try that never finished, and finds applied stages applied.
    """
    return step_kwargs(
        settings,
        task_id=STEP.task_id,
        service_account="roll-out-nvidia-drivers",
        script_name="roll_out_nvidia_drivers.sh",
        image=settings.cli_image,
        api_access=True,
        retries=1,
        retry_only_lost_tries=True,
        skip_without_env=True,
    )


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def stage_env(number: int, stage: Stage, settings: Settings | None = None) -> dict[str, str]:
    """One stage's variables (``STAGE_<number>_*``): what to apply, its undo, its guards, what to expect.

    With ``settings`` (the GPU check on), ``CHECKS``: one CUDA check pod per pool (check_gpu_workload's
    pod, held to the NVIDIADriver's nodes by its nodeSelector), run once the stage verifies.
    """
    from precompiled_drivers import nvidia_driver
    from precompiled_drivers.steps import check_gpu_workload

    replace = stage.action == "replace"
    expected = "\n".join(
        f"{t.image} {t.digest} {t.daemonset or '-'} {','.join(t.nodes)}" for t in stage.targets
    )
    prefix = f"STAGE_{number}_"
    values = {
        prefix + "APPLY": _compact(stage.replacement if replace else stage.patch),
        prefix + "UNDO": _compact(stage.original if replace else stage.undo),
        prefix + "GUARD": _compact(nvidia_driver.guard(stage)),
        prefix + "TARGET": _compact(
            [{"op": "test", "path": nvidia_driver.SPEC_PATH, "value": nvidia_driver.target_spec(stage)}]
        ),
        prefix + "EXPECTED": expected,
    }
    if settings is not None:
        values[prefix + "CHECKS"] = "\n".join(
            f"{t.kernel} {_compact(check_gpu_workload.check_pod(settings, t.kernel, stage.selector))}"
            for t in stage.targets
        )
    return values


def env(
    settings: Settings, stages: Sequence[Stage], timeout_seconds: int, dry_run: bool
) -> dict[str, str] | None:
    """The whole pod environment; None (the step skips) when there is no stage (ClusterPolicy mode)."""
    if not stages:
        return None
    values = {
        "OPERATOR_NAMESPACE": settings.operator_namespace,
        "STAGES": "\n".join(f"{s.driver} {s.action}" for s in stages),
        "TIMEOUT_SECONDS": str(timeout_seconds),
        "POLL_SECONDS": str(max(settings.poll_seconds, 1)),
        "DRY_RUN": "true" if dry_run else "false",
    }
    # The GPU workload check, per pool after its stage verifies (off: the installation turns it off).
    check = settings.gpu_check is True and not dry_run
    if check:
        values.update(
            NAMESPACE=settings.namespace,
            CHECK_TIMEOUT_SECONDS=str(settings.gpu_check_timeout_seconds),
        )
    for number, stage in enumerate(stages, 1):
        values.update(stage_env(number, stage, settings if check else None))
    return step_env(STEP.task_id, (), values)


def task(settings: Settings, env_vars: Any, **task_args: Any) -> StepPodOperator:
    """The task; ``env_vars`` is ``env``'s result (plan_rollout's ``nvd_env``)."""
    return pod_task(STEP, pod(settings), env_vars, **task_args)
