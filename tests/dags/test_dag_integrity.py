"""Every DAG imports cleanly, fast, without touching the network, and carries the metadata operators need."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((ROOT / "dags").glob("*.py"))
PARSE_BUDGET_SECONDS = 60  # generous: a cold import of Airflow + the provider on a loaded 2-core box

# Parses dags/ in a fresh interpreter with sockets disabled, then prints what the tests check.
PARSE_SCRIPT = r"""
import json, socket, sys, time

def no_network(*args, **kwargs):
    raise RuntimeError(f"network call at DAG parse time: {args!r}")

socket.socket.connect = no_network
socket.socket.connect_ex = no_network
socket.create_connection = no_network
socket.getaddrinfo = no_network

start = time.monotonic()
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(sys.argv[1])
elapsed = time.monotonic() - start

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk.definitions.xcom_arg import XComArg

# cmds/arguments (the script) are never rendered, on purpose: a script's own braces are not templates.
POD_FIELDS = sorted({*KubernetesPodOperator.template_fields, "extra_env"} - {"cmds", "arguments"})

# True when rendering could change the value: it holds an XComArg or a Jinja template.
def dynamic(value):
    if isinstance(value, XComArg):
        return True
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(dynamic(k) or dynamic(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set)):
        return any(dynamic(v) for v in value)
    if hasattr(value, "openapi_types"):  # a Kubernetes client model
        return any(dynamic(getattr(value, name)) for name in value.openapi_types)
    return False

# The pod operator fields a pod task fills from a result or a template (of a mapped task: its partial).
def dynamic_fields(task):
    values = getattr(task, "partial_kwargs", None)
    if values is not None and "pod_models" in values:  # a mapped step's client models (steps/base.PodModels)
        values = {**values, **values["pod_models"].models}
    if values is None:
        values = {name: getattr(task, name, None) for name in POD_FIELDS}
    return sorted(name for name in POD_FIELDS if dynamic(values.get(name)))
dags = {}
for dag_id, dag in bag.dags.items():
    dags[dag_id] = {
        "owners": sorted({t.owner for t in dag.tasks}),
        "tags": sorted(dag.tags),
        "retries": {t.task_id: t.retries for t in dag.tasks},
        "doc": bool(dag.doc_md),
        "max_active_runs": dag.max_active_runs,
        "tasks": [t.task_id for t in dag.tasks],
        "params": {k: dag.params.get_param(k).schema for k in dag.params},
        "descriptions": {k: dag.params.get_param(k).description for k in dag.params},
        "graph": {
            t.task_id: {
                "trigger_rule": str(getattr(t.trigger_rule, "value", t.trigger_rule)),
                "downstream": sorted(t.downstream_task_ids),
                "all_downstream": sorted(t.get_flat_relative_ids(upstream=False)),
                "all_upstream": sorted(t.get_flat_relative_ids(upstream=True)),
                "skips_others": bool(getattr(t, "inherits_from_skipmixin", False)),
                "skips_all_downstream": getattr(t, "ignore_downstream_trigger_rules", True),
                "mapped": type(t).__name__ == "MappedOperator",
                "pod": t.task_type == "StepPodOperator",
                "dynamic_fields": dynamic_fields(t) if t.task_type == "StepPodOperator" else [],
            }
            for t in dag.tasks
        },
    }
errors = {k: str(v) for k, v in bag.import_errors.items()}
print(json.dumps({"errors": errors, "elapsed": elapsed, "dags": dags}))
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins")}
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", PARSE_SCRIPT, str(ROOT / "dags")],
        capture_output=True,
        text=True,
        env=env,
        timeout=PARSE_BUDGET_SECONDS * 2,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall"] = time.monotonic() - start
    return result


def test_dags_folder_has_the_pipeline() -> None:
    assert [p.name for p in DAG_FILES] == ["nvidia_precompiled_driver.py"]


def test_every_dag_file_imports_without_errors_or_network(parsed: dict) -> None:
    assert parsed["errors"] == {}
    assert set(parsed["dags"]) == {"nvidia_precompiled_driver"}


def test_parse_stays_within_budget(parsed: dict) -> None:
    assert parsed["elapsed"] < PARSE_BUDGET_SECONDS, parsed["elapsed"]


def test_dag_metadata(parsed: dict) -> None:
    dag = parsed["dags"]["nvidia_precompiled_driver"]
    assert dag["owners"] == ["platform-gpu"]
    assert {"nvidia", "openshift"} <= set(dag["tags"])
    assert dag["doc"]
    assert dag["max_active_runs"] == 1
    pod_steps = [t for t in dag["tasks"] if t not in ("report", "needs_rollback", "patch_cluster_policy")]
    # These wait themselves (a retry would double the wait) or must not repeat.
    pod_steps = [t for t in pod_steps if t not in ("verify_rollout", "check_gpu_workload", "approve_rollout")]
    assert all(dag["retries"][t] >= 1 for t in pod_steps), dag["retries"]
    # A retried approval would post a second request; a timeout is an answer of its own.
    assert dag["retries"]["approve_rollout"] == 0


def test_dag_reads_like_the_procedure(parsed: dict) -> None:
    from precompiled_drivers import procedure

    tasks = parsed["dags"]["nvidia_precompiled_driver"]["tasks"]
    assert tasks == list(procedure.TASK_IDS)
    # The procedure itself, as NVIDIA's documentation orders it (a reordered registry must be a decision).
    assert tasks == [
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
        "record_readiness",
        "approve_rollout",
        "patch_cluster_policy",
        "roll_out_nvidia_drivers",
        "verify_rollout",
        "check_gpu_workload",
        "needs_rollback",
        "rollback_cluster_policy",
        "report",
    ]


def test_the_registry_matches_the_step_modules_and_the_graph(parsed: dict) -> None:
    """Each pod step has its module and script; mapped steps are the DAG's mapped tasks; no other."""
    from precompiled_drivers import procedure

    graph = parsed["dags"]["nvidia_precompiled_driver"]["graph"]
    steps_dir = ROOT / "plugins" / "precompiled_drivers" / "steps"
    scripts_dir = ROOT / "plugins" / "precompiled_drivers" / "scripts"
    pods = {s.task_id for s in procedure.pod_steps()}
    approvals = {s.task_id for s in procedure.STEPS if s.kind == "approval"}  # its operator's module
    assert pods | approvals == {p.stem for p in steps_dir.glob("*.py")} - {"__init__", "base"}
    assert pods == {p.stem for p in scripts_dir.glob("*.sh")} - {"lib"}
    assert {t for t, node in graph.items() if node["mapped"]} == {s.task_id for s in procedure.STEPS if s.per}
    assert {t for t, node in graph.items() if node["pod"]} == pods


def test_every_form_field_has_a_type_and_a_description(parsed: dict) -> None:
    dag = parsed["dags"]["nvidia_precompiled_driver"]
    assert dag["params"], "the manual trigger form has no fields"
    for name, schema in dag["params"].items():
        assert "type" in schema, name
        # The help text is description_md, in the schema (the UI renders it; refusals quote it).
        assert (dag["descriptions"][name] or schema.get("description_md")) and schema.get("title"), name


def test_no_task_can_skip_the_report(parsed: dict) -> None:
    """The report is the run's only leaf, always runs and so decides the run's state (#21).

    A DagRun's state comes from its leaf tasks: with the report skipped, a run whose steps failed
    ended green. So: the report is the only leaf, its trigger rule runs it whatever its upstream
    states are, and no short-circuit or branch can skip it (a skipping task may skip only its
    direct downstream, and the report is nobody's direct downstream among them).
    """
    graph = parsed["dags"]["nvidia_precompiled_driver"]["graph"]
    leaves = [t for t, node in graph.items() if not node["downstream"]]
    assert leaves == ["report"], leaves
    assert graph["report"]["trigger_rule"] == "all_done"
    assert set(graph["report"]["all_upstream"]) == set(graph) - {"report"}, "every step is reported"
    skippers = {t: node for t, node in graph.items() if node["skips_others"]}
    assert set(skippers) == {"validate_inputs", "needs_rollback", "approve_rollout"}, (
        "a new skipping task needs a look"
    )
    for task_id, node in skippers.items():
        can_skip = node["all_downstream"] if node["skips_all_downstream"] else node["downstream"]
        assert "report" not in can_skip, f"{task_id} can skip the report"
        assert node["skips_all_downstream"] is False, f"{task_id} skips past its direct downstream"


def test_rollback_is_decided_after_patch_and_verify_whatever_they_did(parsed: dict) -> None:
    graph = parsed["dags"]["nvidia_precompiled_driver"]["graph"]
    decide = graph["needs_rollback"]
    assert decide["trigger_rule"] == "all_done"
    assert {"patch_cluster_policy", "verify_rollout", "check_gpu_workload"} <= set(decide["all_upstream"])
    # The GPU check runs only after a verified rollout.
    assert "check_gpu_workload" in graph["verify_rollout"]["downstream"]
    assert decide["downstream"] == ["rollback_cluster_policy"], "it may skip the rollback, nothing else"


def test_the_patch_waits_for_the_approval_which_may_skip_only_the_patch(parsed: dict) -> None:
    graph = parsed["dags"]["nvidia_precompiled_driver"]["graph"]
    approve = graph["approve_rollout"]
    # After the images are pushed and the plan is known; before the patch.
    assert {"plan_rollout", "push_driver_image", "publish_os_tags"} <= set(approve["all_upstream"])
    assert "approve_rollout" in graph["patch_cluster_policy"]["all_upstream"]
    # A reject skips its direct downstream (the patch, or in NVIDIADriver mode the staged rollout);
    # verification follows by its trigger rule, the rollback decision and the report still run (all_done).
    assert approve["downstream"] == ["patch_cluster_policy", "roll_out_nvidia_drivers"]
    # The staged rollout restores its own failed stage: the ClusterPolicy rollback does not follow it.
    assert "roll_out_nvidia_drivers" not in graph["needs_rollback"]["all_upstream"]
    assert "roll_out_nvidia_drivers" in graph["report"]["all_upstream"]
    assert approve["skips_all_downstream"] is False


def test_one_failed_build_does_not_hold_back_the_others(parsed: dict) -> None:
    graph = parsed["dags"]["nvidia_precompiled_driver"]["graph"]
    assert graph["push_driver_image"]["trigger_rule"] == "all_done_min_one_success"
    # The patch still waits for every push, through the coverage gate.
    assert graph["plan_rollout"]["trigger_rule"] == "none_failed"
    assert "push_driver_image" in graph["plan_rollout"]["all_upstream"]
    # OS-tag copies run when there was something to plan (also with nothing to build), never on a no-op
    # cron run whose every upstream step was skipped.
    assert graph["publish_os_tags"]["trigger_rule"] == "none_failed_min_one_success"
    assert {"plan_builds", "push_driver_image"} <= set(graph["publish_os_tags"]["all_upstream"])
    # Readiness is recorded also when the gate refuses (plan_rollout failed), not on a no-op run.
    assert graph["record_readiness"]["trigger_rule"] == "none_skipped"
    assert "plan_rollout" in graph["record_readiness"]["all_upstream"]
    assert "record_readiness" in graph["plan_rollout"]["downstream"]


def test_pod_steps_template_only_the_fields_that_take_a_template_or_a_result(parsed: dict) -> None:
    """StepPodOperator renders a short list of fields (each one is serialized at every re-parse, #20):
    a step that puts a Jinja template or another task's result anywhere else would not get it rendered.
    A mapped step's per-item keys are checked in tests/precompiled_drivers/steps/test_base.py."""
    from precompiled_drivers.steps.base import StepPodOperator

    graph = parsed["dags"]["nvidia_precompiled_driver"]["graph"]
    dynamic = {t: node["dynamic_fields"] for t, node in graph.items() if node["dynamic_fields"]}
    # The walk sees both kinds: a planning task's XCom (env_vars) and a template (verify's PATCHED_AT).
    assert dynamic["check_published_images"] == ["env_vars"]
    assert "extra_env" in dynamic["verify_rollout"]
    for task_id, fields in dynamic.items():
        assert set(fields) <= set(StepPodOperator.template_fields), (task_id, fields)


# --- import budget: what parsing the DAG loads and reads ------------------------------------------------

# The one-task KubernetesPodOperator DAG the parse cost is compared with (bench/parse_cost.py).
ONE_TASK_KPO_DAG = """\
from datetime import datetime

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import DAG

with DAG("one_task_kpo", schedule=None, start_date=datetime(2025, 1, 1), catchup=False):
    KubernetesPodOperator(task_id="one", image="busybox", cmds=["true"])
"""

# Modules our code (the DAG file and precompiled_drivers) must not import while the DAG is parsed: the
# tasks, the triggerer or the tests need them, building the DAG does not. Airflow or the provider may load
# some of them on their own; this list is about our imports.
NOT_ON_PARSE_PATH = (
    "jsonschema",  # CRD checks, tests only (tests/harness/crd_schema.py)
    "yaml",
    "requests",  # the update-graph client: triggerer and the cron poll task
    "urllib3",
    "kubernetes_asyncio",
    "jsonpatch",  # applying/describing policy patches: tasks
    "jsonpointer",
)

# Our modules that only tasks run (planning, rollout, report...): a parse, which only builds the DAG, must
# not import them; each costs every re-parse when the package is not the plugins folder (#20).
RUN_TIME_ONLY = tuple(
    f"precompiled_drivers.{name}"
    for name in (
        "cluster",
        "cluster_policy",
        "kernel_module",
        "naming",
        "os_tag",
        "plan",
        "readiness",
        "report",
        "rollout",
    )
)

# Runs in a fresh interpreter. Loads what the dag-processor has before it forks a parser for our file:
# DagBag, what a one-task KPO DAG loads, and the airflow.* modules our DAG file names (upstream
# airflow/dag_processing/processor.py `_pre_import_airflow_modules`, which imports what
# airflow/utils/file.py `iter_airflow_imports` finds, before the fork). Then parses the DAG with two spies:
# one on every import statement our code executes, one on the files opened (a Python audit hook).
IMPORT_BUDGET_SCRIPT = r"""
import builtins, importlib, json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.utils.file import iter_airflow_imports

kpo_file, dag_file, forbidden = sys.argv[1], sys.argv[2], set(json.loads(sys.argv[3]))
assert not DagBag(kpo_file).import_errors
for module in iter_airflow_imports(dag_file):
    importlib.import_module(module)
baseline = set(sys.modules)

ours = ("precompiled_drivers", "unusual_prefix_")  # our package; DagBag's name for a DAG file's module
hits = []
real_import = builtins.__import__

def spy(name, globals=None, locals=None, fromlist=(), level=0):
    importer = (globals or {}).get("__name__") or ""
    if level == 0 and importer.startswith(ours) and name.partition(".")[0] in forbidden:
        hits.append([importer, name])
    return real_import(name, globals, locals, fromlist, level)

builtins.__import__ = spy
exec("import yaml", {"__name__": "precompiled_drivers._probe"})  # the spy must see this one
probe, hits[:] = list(hits), []

opened, recording = [], [True]

def on_event(event, args):
    if event == "open" and recording[0]:
        opened.append(str(args[0]))

sys.addaudithook(on_event)
bag = DagBag(dag_file)
recording[0] = False
builtins.__import__ = real_import
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "probe": probe,
    "hits": hits,
    "new_modules": sorted(set(sys.modules) - baseline),
    "opened": opened,
}))
"""


@pytest.fixture(scope="module")
def import_budget(tmp_path_factory: pytest.TempPathFactory) -> dict:
    kpo_file = tmp_path_factory.mktemp("kpo") / "one_task_kpo.py"
    kpo_file.write_text(ONE_TASK_KPO_DAG)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            IMPORT_BUDGET_SCRIPT,
            str(kpo_file),
            str(ROOT / "dags" / "nvidia_precompiled_driver.py"),
            json.dumps(NOT_ON_PARSE_PATH),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "plugins")},
        timeout=PARSE_BUDGET_SECONDS * 2,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_parsing_imports_and_reads_only_what_building_the_dag_needs(import_budget: dict) -> None:
    budget = import_budget
    assert budget["errors"] == {}
    assert budget["probe"] == [["precompiled_drivers._probe", "yaml"]], "the import spy saw nothing"
    # None of our modules imports a module of NOT_ON_PARSE_PATH while the DAG is parsed...
    assert budget["hits"] == []
    new = budget["new_modules"]
    assert "precompiled_drivers.tasks" in new  # (the spy watched our code being imported)
    # ...and parsing loads nothing beyond what a one-task KPO DAG loads but our package and the DAG file's
    # module: the Airflow modules building the DAG needs (operators, decorators, what Airflow imports
    # lazily for them) are named in the DAG file, so the dag-processor has imported them before it forks
    # the parser, once, not in every parse.
    assert [m for m in new if not m.startswith(("precompiled_drivers", "unusual_prefix_"))] == []
    assert not set(NOT_ON_PARSE_PATH) & {m.partition(".")[0] for m in new}
    # Our run-time modules stay out of the parse: the task functions and the steps' env/item makers
    # import them where they run (a module-level import there would put them back on the parse path).
    assert sorted(set(RUN_TIME_ONLY) & set(new)) == []
    # Files read: Python modules, and the step scripts (each pod's `arguments` is its script's text).
    scripts = ROOT / "plugins" / "precompiled_drivers" / "scripts"
    others = {p for p in budget["opened"] if not p.endswith((".py", ".pyc"))}
    assert {Path(p).parent for p in others} <= {scripts}, others


# Runs in a fresh interpreter whose sys.path does not hold plugins/: Airflow's own plugins loader imports the
# plugins folder (every .py file, under its file stem) as each component does at start, then the airflow.*
# modules the DAG file names are imported (the dag-processor's pre-import), then the DAG is parsed.
PLUGINS_LOADER_SCRIPT = r"""
import importlib, json, sys
from airflow import plugins_manager
from airflow.dag_processing.dagbag import DagBag
from airflow.utils.file import iter_airflow_imports

dag_file = sys.argv[1]
plugins_manager.ensure_plugins_loaded()
for module in iter_airflow_imports(dag_file):
    importlib.import_module(module)
baseline = set(sys.modules)
bag = DagBag(dag_file)
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "plugin_errors": plugins_manager.get_import_errors(),
    "loaded_at_start": sorted(m for m in baseline if m.startswith("precompiled_drivers")),
    "parse_imported": sorted(m for m in set(sys.modules) - baseline if m.startswith("precompiled_drivers")),
}))
"""


def test_with_the_package_as_plugins_folder_a_parse_imports_none_of_our_modules(tmp_path: Path) -> None:
    # The plugins loader imports our files under their stems; precompiled_drivers/parse_path.py imports what
    # the DAG file needs under the package names, so a parse forked from the dag-processor imports none (#20).
    env = {
        **os.environ,
        "PYTHONPATH": "",
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/airflow.db",
    }
    out = subprocess.run(
        [sys.executable, "-c", PLUGINS_LOADER_SCRIPT, str(ROOT / "dags" / "nvidia_precompiled_driver.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=PARSE_BUDGET_SECONDS * 2,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    assert result["plugin_errors"] == {}
    assert "precompiled_drivers.tasks" in result["loaded_at_start"]  # (the loader did load the package)
    assert result["parse_imported"] == []
