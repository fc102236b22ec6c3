"""DAG parse cost: ``dags/`` vs a one-task KubernetesPodOperator DAG, fresh processes and steady state.

**Fresh process** (``--runs``): each sample is a new Python process that first loads what the
dag-processor already has loaded (``DagBag``), then times ``DagBag(<file>)``: importing the file (and what
it imports), building the DAG. The trivial DAG imports the same Airflow, provider and Kubernetes-client
modules the package imports at module level, and defines one KubernetesPodOperator task. Samples
alternate between the files; the median of ``--runs`` each is reported. Also printed: the same trivial DAG
importing only ``airflow.sdk``.

**Steady state** (``--parses``): what a running deployment pays every ``min_file_process_interval``. The
real ``airflow dag-processor`` runs on a temporary ``AIRFLOW_HOME`` (SQLite) with this DAG and a one-task
KPO DAG in its DAGs folder, re-parsing each every ``--interval`` seconds, one file at a time
(``parsing_processes`` 1, so the two never share the CPU). Before it forks the parser for a file, it
imports in its own process the ``airflow.*`` modules the file names (``parsing_pre_import_modules``); the
"Last Duration" it reports runs from the fork to the parse result (imports the parent did not do,
building the DAG, serializing it). The numbers come from its own "DAG File Processing Stats" table
(printed every second, 10 ms resolution): one sample per parse, the first parse of each file dropped.
Printed: the medians, their ratio, and the median of the per-cycle ratios (both files are parsed back to
back in each cycle, so that one is less sensitive to other work on the machine). Two layouts, one
processor each: the package as the plugins folder (how docker-compose.yaml deploys it; every Airflow
component imports the plugins folder when it starts) and the package on PYTHONPATH only (nothing
imports it before the first parse); then, PYTHONPATH only, this DAG alone in the folder (as deployed: then
the processor pre-imports only what this DAG file itself names).

**Bytecode.** A deployment imports modules from bytecode (pip compiles ``.pyc`` files when it installs a
package, the Airflow image ships them). This machine sets ``PYTHONDONTWRITEBYTECODE=1`` and its virtualenv
has no ``__pycache__``, so there every module a parse imports is compiled from source, each parse again:
that inflates both files' parses (the one-task KPO DAG's too: serializing any DAG imports Airflow's
trigger-dagrun operator) and this DAG's more (its own package in the PYTHONPATH layout). By default the
processes here get bytecode as a deployment has it: ``PYTHONDONTWRITEBYTECODE`` unset and
``PYTHONPYCACHEPREFIX`` in the temporary directory (written by the first, dropped, parse; nothing is
written into the virtualenv or the repository). ``--no-bytecode`` keeps this machine's setting.

    PYTHONPATH=tests:plugins .venv/bin/python bench/parse_cost.py \\
        [--runs 7] [--parses 12] [--interval 5] [--only fresh|steady] [--no-bytecode]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
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


def bytecode_env(tmp: Path, bytecode: bool) -> dict[str, str]:
    """``os.environ`` with bytecode on (cached under ``tmp``) or as inherited (see the module docstring)."""
    env = dict(os.environ)
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    return env


def sample(path: Path, env: dict[str, str]) -> dict:
    """One fresh process parsing ``path``."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


ONE_TASK_KPO = """\
from datetime import datetime

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import DAG

with DAG("one_task_kpo", schedule=None, start_date=datetime(2025, 1, 1), catchup=False):
    KubernetesPodOperator(task_id="one", image="busybox", cmds=["true"])
"""
DAG_FILE = ROOT / "dags" / "nvidia_precompiled_driver.py"
AIRFLOW = str(Path(sys.executable).parent / "airflow")
# A row of the processor's "DAG File Processing Stats" table: bundle, file, ..., Last Duration, Last Run At.
STATS_ROW = re.compile(
    r"^\S+\s+(?P<file>\S+\.py)\s.*?(?P<seconds>\d+\.\d+)s\s+(?P<at>\d{4}-\d\d-\d\dT[\d:]+)\s*$"
)
# Where the package lives: its folder as Airflow's plugins folder (docker-compose.yaml), or only on sys.path.
LAYOUTS = ("plugins folder", "PYTHONPATH only")


def read_parses(log: Path) -> dict[str, list[float]]:
    """Seconds of each parse per file, in order, from the stats tables in the processor's log."""
    seen: dict[tuple[str, str], float] = {}
    for line in log.read_text(errors="replace").splitlines():
        if match := STATS_ROW.match(line):
            seen[(match["file"], match["at"])] = float(match["seconds"])
    parses: dict[str, list[float]] = {}
    for (name, _at), seconds in sorted(seen.items(), key=lambda item: item[0][1]):
        parses.setdefault(name, []).append(seconds)
    return parses


def steady_state(
    layout: str, parses: int, interval: int, *, alone: bool = False, bytecode: bool = True
) -> dict[str, list[float]]:
    """Run ``airflow dag-processor`` until each file was parsed ``parses`` + 1 times; per-file durations.

    ``alone``: only this DAG in the DAGs folder (as deployed), so nothing another file names is pre-imported.
    """
    with tempfile.TemporaryDirectory(prefix="parse-steady-") as tmp:
        home = Path(tmp)
        dags = home / "dags"
        dags.mkdir()
        shutil.copy(DAG_FILE, dags / DAG_FILE.name)
        if not alone:
            (dags / "one_task_kpo.py").write_text(ONE_TASK_KPO)
        plugins = ROOT / "plugins" if layout == "plugins folder" else home / "plugins"
        env = {
            **bytecode_env(home, bytecode),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(interval),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": str(interval),
            "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "1",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "PYTHONPATH": str(ROOT / "plugins"),
        }
        subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
        log = home / "dag-processor.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [AIRFLOW, "dag-processor"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: the forked parsers end with it
            )
        try:
            deadline = time.monotonic() + 120 + (parses + 1) * interval * 4
            while True:
                found = read_parses(log)
                if len(found) == (1 if alone else 2) and all(len(v) > parses for v in found.values()):
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                    raise RuntimeError(f"dag-processor ({layout}) gave {found} parses:\n{tail}")
                time.sleep(1)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    # The first parse of each file is dropped (cold caches); the next `parses` are kept.
    return {name: values[1 : parses + 1] for name, values in found.items()}


def run_fresh(runs: int, bytecode: bool = True) -> dict[str, float]:
    """Fresh-process medians (see the module docstring); prints them and returns the numbers."""
    with tempfile.TemporaryDirectory(prefix="parse-cost-") as tmp:
        home = Path(tmp)
        trivial, sdk_only = home / "trivial.py", home / "trivial_sdk.py"
        trivial.write_text(SAME_IMPORTS)
        sdk_only.write_text(SDK_ONLY)
        env = {
            **bytecode_env(home, bytecode),
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
        for _ in range(runs):
            for name, path in files.items():
                result = sample(path, env)
                samples[name].append(result["seconds"])
                tasks[name] = result["tasks"]
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print("fresh process (DagBag(<file>) in a new interpreter):")
    for name, value in medians.items():
        spread = f"{min(samples[name]):.3f}-{max(samples[name]):.3f}"
        print(f"  {name:<28} median {value:.3f}s  (range {spread}s, {tasks[name]} tasks)")
    ratio = medians["dags/"] / medians["trivial (same imports)"]
    print(f"  ratio dags/ : trivial (same imports) = {ratio:.2f}x (target <= 1.3x)")
    sdk_ratio = medians["dags/"] / medians["trivial (airflow.sdk only)"]
    print(f"  ratio dags/ : trivial (airflow.sdk only) = {sdk_ratio:.2f}x")
    return {
        "dags": round(medians["dags/"], 3),
        "trivial": round(medians["trivial (same imports)"], 3),
        "trivial_sdk": round(medians["trivial (airflow.sdk only)"], 3),
        "ratio": round(ratio, 3),
    }


def run_steady(parses: int, interval: int, bytecode: bool = True) -> dict[str, dict[str, float]]:
    """Steady-state medians per layout, then this DAG alone (see the module docstring)."""
    results = {}
    modules = "from bytecode" if bytecode else "compiled from source in every parse (--no-bytecode)"
    for layout in LAYOUTS:
        found = steady_state(layout, parses, interval, bytecode=bytecode)
        ours, kpo = found[DAG_FILE.name], found["one_task_kpo.py"]
        ratio = statistics.median(ours) / statistics.median(kpo)
        # Both files are parsed one after the other in each cycle: the i-th parses of the two saw the same
        # machine load, so the median of their ratios is less sensitive to other work on the machine.
        paired = statistics.median(a / b for a, b in zip(ours, kpo, strict=True))
        print(f"steady state, real dag-processor, {layout}, every {interval} s, median of {parses}:")
        print(f"  (modules {modules})")
        print(f"  {DAG_FILE.name:<30} median {statistics.median(ours):.3f}s  {ours}")
        print(f"  {'one_task_kpo.py':<30} median {statistics.median(kpo):.3f}s  {kpo}")
        print(
            f"  ratio of medians = {ratio:.2f}x (target <= 1.5x); median of per-cycle ratios = {paired:.2f}x"
        )
        key = "plugins_folder" if layout == "plugins folder" else "pythonpath"
        results[key] = {
            "dags": statistics.median(ours),
            "kpo": statistics.median(kpo),
            "ratio": round(ratio, 3),
            "paired_ratio": round(paired, 3),
        }
    # As deployed, the DAG is alone in its folder: only what its own file names is pre-imported.
    alone = steady_state("PYTHONPATH only", parses, interval, alone=True, bytecode=bytecode)[DAG_FILE.name]
    print(f"steady state, PYTHONPATH only, {DAG_FILE.name} alone in the DAGs folder, median of {parses}:")
    print(f"  median {statistics.median(alone):.3f}s  {alone}")
    results["pythonpath_alone"] = {"dags": statistics.median(alone)}
    return results


def main(argv: list[str] | None = None) -> int:
    """Measure and print the medians and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh-process samples per file")
    parser.add_argument("--parses", type=int, default=12, help="steady-state parses per file and layout")
    parser.add_argument("--interval", type=int, default=5, help="min_file_process_interval, seconds")
    parser.add_argument("--only", choices=("fresh", "steady"))
    parser.add_argument(
        "--no-bytecode",
        dest="bytecode",
        action="store_false",
        help="keep the inherited PYTHONDONTWRITEBYTECODE: modules compiled from source in every parse",
    )
    args = parser.parse_args(argv)

    if args.only != "steady":
        emit("parse", runs=args.runs, bytecode=args.bytecode, **run_fresh(args.runs, args.bytecode))
    if args.only != "fresh":
        emit(
            "parse_steady",
            parses=args.parses,
            interval=args.interval,
            bytecode=args.bytecode,
            **run_steady(args.parses, args.interval, args.bytecode),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
