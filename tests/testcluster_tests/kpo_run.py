"""Run one real KubernetesPodOperator against the test cluster (executed in a subprocess).

Usage: python kpo_run.py TASK_ID DO_XCOM_PUSH(0|1); prints ``RESULT=<json>`` on success.
Airflow is configured through env vars by the caller before this process imports it, the
cluster through ``AIRFLOW_CONN_KUBERNETES_DEFAULT`` (extra ``kube_config_path``), as the e2e tests do.
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace


class _TI(SimpleNamespace):
    def xcom_push(self, key: str, value: object, **_: object) -> None:
        self.pushed[key] = value


def main() -> None:
    task_id, push = sys.argv[1], sys.argv[2] == "1"
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    op = KubernetesPodOperator(
        task_id=task_id,
        name=f"{task_id}-pod",
        namespace="default",
        image="registry.example/tool:1",
        cmds=["bash", "-c", "echo hi"],
        kubernetes_conn_id="kubernetes_default",
        do_xcom_push=push,
        get_logs=True,
        startup_timeout_seconds=30,
        poll_interval=0.2,
        startup_check_interval_seconds=0.2,
    )
    ti = _TI(dag_id="testcluster_dag", task_id=task_id, map_index=-1, try_number=1, pushed={})
    context = {
        "ti": ti,
        "task_instance": ti,
        "run_id": "manual__2025-01-01",
        "dag": SimpleNamespace(),
        "params": {},
    }
    result = op.execute(context)
    print("RESULT=" + json.dumps(result))
    print("PUSHED=" + json.dumps(ti.pushed))


if __name__ == "__main__":
    main()
