"""Run the real pipeline DAG in-process with ``dag.test()`` and read back what each task did."""

from __future__ import annotations

from typing import Any

from harness.airflow_env import ROOT

DAG_ID = "nvidia_precompiled_driver"


def load_dag() -> Any:
    """Parse ``dags/`` afresh (settings come from the environment at parse time)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[DAG_ID]


def run_pipeline(params: dict[str, Any]) -> Any:
    """One run with the given form values; returns the DagRun (its state tells the outcome)."""
    return load_dag().test(run_conf=params)


def task_states(dag_run: Any) -> dict[str, str]:
    """task_id (with map index for mapped tasks) -> state."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        return {
            (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): str(ti.state) for ti in tis
        }


def xcom(dag_run: Any, task_id: str, map_index: int = -1) -> Any:
    """The return value a task pushed in this run."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, map_index=map_index)
            .filter_by(key="return_value")
            .one_or_none()
        )
        return None if row is None else XComModel.deserialize_value(row)
