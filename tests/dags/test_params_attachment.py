"""The trigger form lives on the DAG only, and still reaches every task of a run.

``dags/nvidia_precompiled_driver.py`` assigns ``dag.params`` after its tasks exist, so no task carries a
copy of the form (Airflow validates each copied field twice per task every time the dag-processor
serializes the DAG: 13 fields x 16 tasks x 2 per re-parse). That relies on Airflow behaviours these tests
pin, each failing if Airflow changes it:

- a task copies its DAG's params when it is created, never later (``airflow/sdk/bases/operator.py``,
  ``_get_parent_defaults`` called by ``BaseOperatorMeta``'s ``apply_defaults``): params assigned after the
  tasks leave the tasks without a copy;
- assigning ``DAG.params`` runs the field's converter and validator as the constructor does
  (``airflow/sdk/definitions/dag.py``: the attrs field ``params`` with ``_convert_params`` and
  ``_validate_params``);
- what a task gets as ``params`` is the DAG's params, then the task's own, then the run's conf
  (``airflow/sdk/definitions/param.py`` ``process_params``, called by
  ``airflow/sdk/execution_time/task_runner.py`` ``RuntimeTaskInstance.get_template_context`` and, for a
  mapped task, ``airflow/sdk/execution_time/context.py`` ``context_update_for_unmapped``);
- the serialized DAG (what the scheduler and the UI's trigger form read) keeps the DAG's params with
  their schemas (``airflow/serialization/serialized_objects.py`` ``DagSerialization.serialize_dag``).

``tests/e2e/test_pipeline.py`` checks the end-to-end outcome: a run's form values reach ``validate_inputs``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from airflow.sdk import DAG, Param, task
from airflow.sdk.definitions.param import ParamsDict, process_params
from airflow.serialization.serialized_objects import DagSerialization

from harness.dag_runner import load_dag
from precompiled_drivers.form import form_params
from precompiled_drivers.settings import Settings


@pytest.fixture(scope="module")
def dag() -> Any:
    return load_dag()


def _form_defaults() -> dict[str, Any]:
    return ParamsDict(form_params(Settings.from_env())).validate()


def test_the_dag_carries_the_whole_form_and_no_task_carries_a_copy(dag: Any) -> None:
    form = form_params(Settings.from_env())
    assert isinstance(dag.params, ParamsDict)
    assert list(dag.params) == list(form)
    for name, param in form.items():
        assert dag.params.get_param(name).schema == param.schema, name
        assert dag.params.get_param(name).value == param.value, name
    from precompiled_drivers import procedure

    assert [t.task_id for t in dag.tasks] == list(procedure.TASK_IDS)
    assert {t.task_id: dict(t.params) for t in dag.tasks if t.params} == {}


def test_every_task_of_a_run_gets_the_form_defaults_and_the_runs_values() -> None:
    dag = load_dag()  # its own: merging a run's conf writes the values into the DAG's Params (see below)
    conf = {"driver_versions": ["580.65.06"], "force_rebuild": True}
    # Mapped tasks too: context_update_for_unmapped calls the same function.
    assert {t.task_id: process_params(dag, t, None, suppress_exception=False) for t in dag.tasks} == {
        t.task_id: _form_defaults() for t in dag.tasks
    }
    assert {t.task_id: process_params(dag, t, conf, suppress_exception=False) for t in dag.tasks} == {
        t.task_id: {**_form_defaults(), **conf} for t in dag.tasks
    }


def test_merging_a_runs_conf_writes_into_the_params_it_merged() -> None:
    """Airflow's process_params sets the run's values on the Param objects it merged (ParamsDict.__setitem__
    -> Param.resolve sets ``value``): with copies per task those were the task's copies, now they are the
    DAG's. Either way a process that reused one parsed DAG for two runs would see the first run's values
    for keys the second run's conf leaves out. None does: a task process parses the DAG afresh for its one
    task (airflow/sdk/execution_time/task_runner.py ``parse``), and ``dag.test()`` runs one DagRun.
    """
    dag = load_dag()
    report = dag.get_task("report")
    process_params(dag, report, {"force_rebuild": True}, suppress_exception=False)
    assert dag.params.get_param("force_rebuild").value is True
    assert process_params(dag, report, None, suppress_exception=False)["force_rebuild"] is True


def test_a_run_value_the_form_refuses_still_fails_the_task(dag: Any) -> None:
    """The form's schema is enforced on a run's conf through the DAG's params, as with copies per task."""
    validate_inputs = dag.get_task("validate_inputs")
    with pytest.raises(Exception, match="image_name"):
        process_params(dag, validate_inputs, {"image_name": "Bad/Name"}, suppress_exception=False)


def test_the_serialized_dag_keeps_the_form_and_no_task_repeats_it(dag: Any) -> None:
    serialized = DagSerialization.to_dict(dag)["dag"]
    assert [name for name, _ in serialized["params"]] == list(dag.params)
    schemas = {name: value["schema"]["__var"] for name, value in serialized["params"]}
    assert schemas["image_name"] == dag.params.get_param("image_name").schema
    assert [t["__var"]["task_id"] for t in serialized["tasks"] if "params" in t["__var"]] == []
    restored = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert restored.params.get_param("arches").schema == dag.params.get_param("arches").schema


def test_airflow_copies_dag_params_into_a_task_only_when_the_task_is_created() -> None:
    """The pinned mechanism, on a DAG of its own: before vs after the assignment."""
    with DAG("pin_params", schedule=None, start_date=datetime(2025, 1, 1)) as pin:
        pin.params = {"early": Param(1, type="integer")}
        before = task(lambda: None, task_id="before")()
    pin.params = {"late": Param(2, type="integer")}
    with pin:
        after = task(lambda: None, task_id="after")()
    assert dict(before.operator.params) == {"early": 1}  # copied at creation
    assert dict(after.operator.params) == {"late": 2}
    # ...and the task made before the assignment does not follow it: no task-level copy appears later.
    assert "late" not in before.operator.params
    assert process_params(pin, before.operator, None, suppress_exception=False) == {"early": 1, "late": 2}


def test_assigning_dag_params_converts_and_validates_like_the_constructor() -> None:
    with DAG("pin_validate", schedule="@daily", start_date=datetime(2025, 1, 1)) as pin:
        pass
    pin.params = {"n": Param(1, type="integer")}
    assert isinstance(pin.params, ParamsDict)
    # A scheduled DAG refuses a default its own schema refuses, whether given to DAG() or assigned.
    with pytest.raises(ValueError, match="not allowed to define a Schedule"):
        pin.params = {"n": Param("x", type="integer")}
    with pytest.raises(ValueError, match="not allowed to define a Schedule"):
        DAG(
            "pin_validate_ctor",
            schedule="@daily",
            start_date=datetime(2025, 1, 1),
            params={"n": Param("x", type="integer")},
        )
