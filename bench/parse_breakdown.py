"""Where a steady-state parse of ``dags/`` goes: CPU time per parse, with and without the trigger form.

Imitates the dag-processor's parser without its bookkeeping, so parts can be switched off: the parent
process loads ``DagBag``, imports the ``airflow.*`` modules the DAG files name (as the processor does:
``_pre_import_airflow_modules`` in airflow/dag_processing/processor.py) and, with ``--layout plugins``,
runs Airflow's own plugins loader on ``plugins/`` (as every component does at start: each ``.py`` file
imported under its file stem; ``precompiled_drivers/parse_path.py`` imports the DAG's modules by name).
Then, for each sample, it forks
a child that parses one file (``DagBag``) and serializes its DAGs the way the processor's parser does
(Airflow's own ``_serialize_dags``), and reports the child's CPU time. Variants, alternated round by round:

- ``dags/``: the DAG as committed;
- ``dags/, form in 2020-12``: the form's fields in JSON Schema 2020-12, the dialect a schema without
  ``$schema`` gets (how the form was before it declared draft 7);
- ``dags/ without the form``: ``form_params`` returns no field (what the DAG's own tasks cost);
- ``one-task KPO``: the one-task KubernetesPodOperator DAG of ``parse_cost.py``.

CPU time rather than wall time: the machine may be shared, and CPU time moves less with other work.

    PYTHONPATH=tests:plugins .venv/bin/python bench/parse_breakdown.py \\
        [--rounds 12] [--layout plugins|pythonpath]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import emit
from parse_cost import DAG_FILE, ONE_TASK_KPO

VARIANTS = ("dags/", "dags/, form in 2020-12", "dags/ without the form", "one-task KPO")


def child(path: Path, variant: str) -> dict[str, Any]:
    """In the forked child: parse and serialize ``path``, return CPU and wall times (seconds)."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.dag_processing.processor import _serialize_dags

    import precompiled_drivers.form as form

    if variant == "dags/, form in 2020-12":
        form.SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
    elif variant == "dags/ without the form":
        form.form_params = lambda settings: {}
    cpu, wall = time.process_time(), time.perf_counter()
    bag = DagBag(str(path))
    parsed = time.perf_counter()
    _serialize_dags(bag, _NullLog())
    return {
        "cpu": time.process_time() - cpu,
        "build": parsed - wall,
        "serialize": time.perf_counter() - parsed,
        "errors": len(bag.import_errors),
    }


class _NullLog:
    """The logger ``_serialize_dags`` expects; serialization errors surface as import errors anyway."""

    def error(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"serialization failed: {args} {kwargs}")

    exception = error


def sample(path: Path, variant: str) -> dict[str, Any]:
    """Fork, run ``child`` there, return its result."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running the parent's clean-up
        os.close(read)
        try:
            os.write(write, json.dumps(child(path, variant)).encode())
        finally:
            os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.close(read)
    os.waitpid(pid, 0)
    result = json.loads(data)
    assert result["errors"] == 0, f"{variant}: import errors"
    return result


def main(argv: list[str] | None = None) -> int:
    """Measure every variant ``--rounds`` times (first round dropped), print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--layout", choices=("plugins", "pythonpath"), default="plugins")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="parse-breakdown-") as tmp:
        # tests/harness/: a throw-away AIRFLOW_HOME, set before Airflow is imported
        from harness import airflow_env

        airflow_env.configure(Path(tmp))
        if args.layout == "pythonpath":
            os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(Path(tmp) / "plugins")
        from airflow.dag_processing.dagbag import DagBag  # noqa: F401 - the processor has it loaded
        from airflow.utils.file import iter_airflow_imports

        kpo = Path(tmp) / "one_task_kpo.py"
        kpo.write_text(ONE_TASK_KPO)
        for path in (DAG_FILE, kpo):
            for module in iter_airflow_imports(str(path)):
                importlib.import_module(module)
        if args.layout == "plugins":
            from airflow import plugins_manager

            plugins_manager.ensure_plugins_loaded()
        files = {variant: kpo if variant == "one-task KPO" else DAG_FILE for variant in VARIANTS}
        samples: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
        for round_ in range(args.rounds + 1):
            for variant, path in files.items():
                result = sample(path, variant)
                if round_:  # the first round warms caches
                    samples[variant].append(result)

    base = statistics.median(s["cpu"] for s in samples["one-task KPO"])
    print(f"CPU time per parse (fork to serialized DAG), {args.layout} layout, median of {args.rounds}:")
    medians = {}
    for variant in VARIANTS:
        cpu = statistics.median(s["cpu"] for s in samples[variant])
        build = statistics.median(s["build"] for s in samples[variant])
        serialize = statistics.median(s["serialize"] for s in samples[variant])
        medians[variant] = cpu
        print(
            f"  {variant:<26} {cpu * 1000:6.1f} ms  {cpu / base:.2f}x  "
            f"(build {build * 1000:.1f} ms, serialize {serialize * 1000:.1f} ms wall)"
        )
    emit(
        "parse_breakdown",
        layout=args.layout,
        rounds=args.rounds,
        **{variant: round(value * 1000, 1) for variant, value in medians.items()},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
