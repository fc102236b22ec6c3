"""The Airflow UI plugin: a "Pipeline report" tab on each run's page, showing that run's report.

A task cannot set its own run's note through the execution API (Airflow 3.3 only accepts a note when
it *triggers* another run), so the report is served by the api-server itself: a FastAPI app under
``/precompiled-drivers`` reads the ``report`` task's XCom from the metadata database and renders it
(``report_page``); an external view with destination ``dag_run`` embeds it as a tab (an iframe) on
the run's page. The route asks Airflow's own auth manager, as the UI's API does: the caller must be
allowed to read this DAG's runs (the UI's session cookie or a bearer token).

Airflow's plugin manager imports every ``.py`` file of the plugins folder and registers the
``AirflowPlugin`` subclasses it finds (``airflow/_shared/plugins_manager/plugins_manager.py``,
``_load_plugins_from_plugin_directory``).
"""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import urlsplit

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse

from precompiled_drivers.report_page import render_page

PREFIX = "/precompiled-drivers"
REPORT_TASK = "report"


def _requires_run_access() -> Any:
    # Imported when the app is built, in the api-server: other components never build it.
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    return Depends(requires_access_dag("GET", DagAccessEntity.RUN))


def _ui_root() -> str:
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="/") or "/"
    path = urlsplit(base).path or "/"
    return path if path.endswith("/") else path + "/"


def read_report(dag_id: str, run_id: str) -> tuple[str | None, str | None]:
    """(the report text or None, the run's state or None when there is no such run), from the DB."""
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        state = session.scalar(select(DagRun.state).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        if state is None:
            return None, None
        row = session.scalars(
            XComModel.get_many(
                run_id=run_id, key="return_value", dag_ids=dag_id, task_ids=REPORT_TASK, map_indexes=-1
            )
        ).first()
        value = XComModel.deserialize_value(row) if row is not None else None
    return (value if isinstance(value, str) else None), str(state)


@functools.cache
def _app() -> FastAPI:
    return create_app()


def create_app() -> FastAPI:
    """The report app: one page per run, behind Airflow's authorization."""
    from precompiled_drivers.report import STEPS

    app = FastAPI(title="NVIDIA precompiled drivers", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get(
        "/runs/{dag_id}/{run_id}/report",
        response_class=HTMLResponse,
        dependencies=[_requires_run_access()],
    )
    def report(dag_id: str, run_id: str) -> HTMLResponse:
        text, state = read_report(dag_id, run_id)
        if state is None:
            return HTMLResponse(f"<p>No run {run_id!r} of {dag_id!r}.</p>", status_code=404)
        page = render_page(
            text, dag_id=dag_id, run_id=run_id, run_state=state, steps=(*STEPS, "report"), ui_root=_ui_root()
        )
        return HTMLResponse(page)

    return app


class PrecompiledDriversPlugin(AirflowPlugin):
    """Registers the report app and its tab on the run page."""

    name = "precompiled_drivers"

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """Built on first use, i.e. in the api-server only. Every component (and each task process) loads
        the plugins folder, and the auth dependency alone imports Airflow's core API (over a second)."""
        return [{"app": _app(), "url_prefix": PREFIX, "name": "Pipeline report"}]

    external_views = [  # noqa: RUF012
        {
            "name": "Pipeline report",
            # Relative (no leading slash): the UI resolves it against its own base URL.
            "href": PREFIX.lstrip("/") + "/runs/{DAG_ID}/{RUN_ID}/report",
            "destination": "dag_run",
            "url_route": "pipeline-report",
        }
    ]
