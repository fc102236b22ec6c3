"""DAG parse cost: ``dags/`` vs a trivial one-task DAG with the same Airflow imports, fresh processes.

Each sample is a new Python process that first loads what the dag-processor already has loaded
(``DagBag``), then times ``DagBag(<file>)``: importing the file (and what it imports), building the DAG.
The trivial DAG imports the same Airflow, provider and Kubernetes-client modules the package imports at
module level, and defines one KubernetesPodOperator task, so the ratio is the cost of this project's own
code. Samples alternate between the two files; the median of ``--runs`` each is reported. Also printed:
the same trivial DAG importing only ``airflow.sdk`` (what a DAG without the Kubernetes provider pays).

    .venv/bin/python bench/parse_cost.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, emit

SAME_IMPORTS = """\
from datetime import datetime

from airflow.providers.cncf.kubernetes.backcompat.backwards_compat_converters import convert_env_vars
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.secret import Secret
from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, AssetWatcher, CronTriggerTimetable, Param, task
from airflow.sdk.definitions.mappedoperator import OperatorPartial
from airflow.triggers.base import BaseEventTrigger, TriggerEvent
from kubernetes.client import models as k8s
import requests

with DAG("trivial", schedule=None, start_date=datetime(2025, 1, 1), catchup=False):
    KubernetesPodOperator(task_id="one", image="busybox", cmds=["true"])
"""

SDK_ONLY = """\
from datetime import datetime

from airflow.sdk import DAG, task

with DAG("trivial_sdk", schedule=None, start_date=datetime(2025, 1, 1), catchup=False):
    task(lambda: None, task_id="one")()
"""

# Runs in the child: DagBag loaded first (the dag-processor has it), then the timed parse.
PROBE = """
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
start = time.perf_counter()
bag = DagBag(sys.argv[1])
seconds = time.perf_counter() - start
assert not bag.import_errors, bag.import_errors
tasks = sum(len(d.tasks) for d in bag.dags.values())
print(json.dumps({"seconds": seconds, "dags": len(bag.dags), "tasks": tasks}))
"""


def sample(path: Path, env: dict[str, str]) -> dict:
    """One fresh process parsing ``path``."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Measure and print the medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="parse-cost-") as tmp:
        home = Path(tmp)
        trivial, sdk_only = home / "trivial.py", home / "trivial_sdk.py"
        trivial.write_text(SAME_IMPORTS)
        sdk_only.write_text(SDK_ONLY)
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "PYTHONPATH": str(ROOT / "plugins"),
        }
        files = {
            "dags/": ROOT / "dags",
            "trivial (same imports)": trivial,
            "trivial (airflow.sdk only)": sdk_only,
        }
        samples: dict[str, list[float]] = {name: [] for name in files}
        tasks: dict[str, int] = {}
        sample(trivial, env)  # warm the OS file cache and __pycache__ once, unmeasured
        sample(ROOT / "dags", env)
        for _ in range(args.runs):
            for name, path in files.items():
                result = sample(path, env)
                samples[name].append(result["seconds"])
                tasks[name] = result["tasks"]
    medians = {name: statistics.median(values) for name, values in samples.items()}
    for name, value in medians.items():
        spread = f"{min(samples[name]):.3f}-{max(samples[name]):.3f}"
        print(f"{name:<28} median {value:.3f}s  (range {spread}s, {tasks[name]} tasks)")
    ratio = medians["dags/"] / medians["trivial (same imports)"]
    print(f"ratio dags/ : trivial (same imports) = {ratio:.2f}x (target <= 1.3x)")
    print(
        "ratio dags/ : trivial (airflow.sdk only) = "
        f"{medians['dags/'] / medians['trivial (airflow.sdk only)']:.2f}x"
    )
    emit(
        "parse",
        runs=args.runs,
        dags=round(medians["dags/"], 3),
        trivial=round(medians["trivial (same imports)"], 3),
        trivial_sdk=round(medians["trivial (airflow.sdk only)"], 3),
        ratio=round(ratio, 3),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
