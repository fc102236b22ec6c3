"""Growth: planning time and task instances for 10, 100 and 1000 target images, in-process.

Planning is what the ``plan_builds`` and ``select_builds`` tasks do between pods: ``plan.release_toolkits``
for every release, ``plan.plan_builds``, ``plan.builds_to_run`` and the per-image pod kwargs
(``build_driver_image.item`` and ``push_driver_image.item``). N images = N/10
releases, each with its own kernel, x 10 driver versions (the form's maximum). Task instances are counted
from the real DAG's tasks: one per unmapped task, one per release for the per-release steps, one per image
for build and push. Median of ``--runs`` timings.

    PYTHONPATH=tests:plugins .venv/bin/python bench/growth.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from common import emit

from precompiled_drivers import procedure

DRIVERS = [f"{570 + i}.{100 + i}.{10 + i:02d}" for i in range(10)]
PER_RELEASE = tuple(s.task_id for s in procedure.STEPS if s.per == "release")
PER_IMAGE = tuple(s.task_id for s in procedure.STEPS if s.per == "image")


def toolkits(releases: int) -> list[dict]:
    """inspect_driver_toolkit results for ``releases`` releases with distinct kernels."""
    return [
        {
            "version": f"4.18.{i}",
            "arch": "x86_64",
            "dtk_image": f"quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:{i:064x}",
            "toolkit": {
                "KERNEL_VERSION": f"5.14.0-{400 + i}.1.1.el9_4.x86_64",
                "RT_KERNEL_VERSION": "",
                "RHEL_VERSION": "9.4",
            },
        }
        for i in range(releases)
    ]


def plan_once(images: int) -> tuple[float, int]:
    """Seconds to plan ``images`` images and make their pod kwargs; returns (seconds, images planned)."""
    from precompiled_drivers import plan
    from precompiled_drivers.config import run_config
    from precompiled_drivers.settings import Settings
    from precompiled_drivers.steps import build_driver_image, push_driver_image

    settings = Settings(target_repository="registry.example.com/nvidia")
    from precompiled_drivers.form import DEFAULT_CUDA_VERSION, DEFAULT_DRIVER_REPO_REF

    params = {
        "driver_versions": DRIVERS,
        "cuda_version": DEFAULT_CUDA_VERSION,
        "driver_repo_ref": DEFAULT_DRIVER_REPO_REF,
    }
    cfg = run_config(params, settings)
    raw = toolkits(images // len(DRIVERS))
    start = time.perf_counter()
    builds = plan.plan_builds(cfg, settings, [tk for t in raw for tk in plan.release_toolkits(t)], "v26.7.0")
    todo = plan.builds_to_run(builds, {}, force=False)
    build_items = [build_driver_image.item(settings, cfg, b) for b in todo]
    digest = "sha256:" + "0" * 64
    built = [
        {"tag": b.tag, "image": b.image, "staging_image": b.staging_image, "digest": digest} for b in todo
    ]
    pushed = [push_driver_image.item(settings, result) for result in built]
    seconds = time.perf_counter() - start
    assert len(build_items) == len(pushed) == images, (len(build_items), images)
    return seconds, len(todo)


def task_instances(images: int) -> int:
    """Task instances of one run with ``images`` images (N/10 releases), from the real DAG's tasks."""
    from harness.dag_runner import load_dag

    dag = load_dag()
    releases = images // len(DRIVERS)
    count = 0
    for task in dag.tasks:
        if task.task_id in PER_RELEASE:
            count += releases
        elif task.task_id in PER_IMAGE:
            count += images
        else:
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    """Print planning time and task instances per size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    from harness import airflow_env

    airflow_env.configure()
    rows = []
    for images in (10, 100, 1000):
        plan_once(images)  # warm-up (imports, regex caches)
        seconds = statistics.median(plan_once(images)[0] for _ in range(args.runs))
        tis = task_instances(images)
        rows.append({"images": images, "seconds": round(seconds, 4), "task_instances": tis})
        print(
            f"{images:5} images: plan {seconds * 1000:8.1f} ms "
            f"({seconds / images * 1e6:6.0f} us/image), {tis} task instances"
        )
    per_image = [r["seconds"] / r["images"] for r in rows]
    linear = max(per_image) / min(per_image)
    print(f"per-image time spread across sizes: {linear:.2f}x (1.0 = perfectly linear)")
    emit("growth", rows=rows, linearity=round(linear, 2), under_a_second=rows[-1]["seconds"] < 1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
