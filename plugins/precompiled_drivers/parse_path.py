"""Imports, by their package names, the modules of this package that building the DAG imports.

When ``plugins/`` is Airflow's plugins folder (docker-compose.yaml), every Airflow component imports each
``.py`` file of it at start, but under the file's stem (``tasks``, ``dag_docs``, ``build_driver_image``...),
not under its package name (``airflow/_shared/plugins_manager/plugins_manager.py``,
``_load_plugins_from_plugin_directory``). The DAG file imports ``precompiled_drivers.<module>``: the
modules no other module of the package imports by name (``tasks``, ``dag_docs``, ``notifier``, the
releases schedule, the step modules) were imported again in every parse the dag-processor forks, 16
modules each time (#20). The plugins loader imports this file too, in the dag-processor's own process
before it forks a parser, so the parse finds them imported. Without the plugins folder nothing imports
this module and nothing changes. ``tests/dags/test_dag_integrity.py`` checks, with Airflow's real plugins
loader, that a parse imports none of our modules.
"""

from __future__ import annotations

import importlib

from precompiled_drivers import dag_docs, failures, form, notifier, procedure, settings, tasks  # noqa: F401
from precompiled_drivers.releases import schedule  # noqa: F401
from precompiled_drivers.steps import base  # noqa: F401

# Every step with a module of its own in steps/ (pod steps and the approval), as the DAG file imports them.
STEP_MODULES = tuple(
    importlib.import_module(f"precompiled_drivers.steps.{step.task_id}")
    for step in procedure.STEPS
    if step.kind != "python"
)
# A fleet's Python steps and its configuration (the DAG file reads the fleet while it builds the DAG).
FLEET_MODULES = tuple(
    importlib.import_module(f"precompiled_drivers.{name}") for name in ("fleet", "fleet_tasks")
)
