"""Real Airflow components as child processes, for end-to-end tests and ``bench/``.

``dag.test()`` runs tasks one at a time in the test process; this runs what a deployment runs: the
scheduler with the LocalExecutor (tasks in parallel), the triggerer (the release watcher), the
dag-processor and the api-server (the Execution API the tasks talk to, and the REST API used here to
trigger runs), against a throw-away ``AIRFLOW_HOME`` with SQLite. The test cluster (``World``) stays in
the calling process; the components reach it through the kubeconfig in their environment.

    with AirflowStandalone(env=world.env()) as airflow:
        run_id = airflow.trigger(DAG_ID, conf=world.params())
        run = airflow.wait_run(DAG_ID, run_id)
        tis = airflow.task_instances(DAG_ID, run_id)

Every component runs in its own process group; ``stop()`` ends each group (TERM, then KILL), so no task
supervisor or worker is left behind. Failure tests use ``kill(name)`` (SIGKILL to a component's whole
group, as a container or pod dying does, or to its main process only), ``restart(name)``, and
``kill_task(...)`` (SIGKILL to the process running one task instance).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).parent / "airflow")
# The scheduler and triggerer would also start a log server on every interface (serve_logs binds
# host=""); the api-server reads the task logs from the shared local folder, so they are not needed.
COMPONENTS = {
    "api-server": ["api-server"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}
DONE_STATES = frozenset({"success", "failed"})


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; raise TimeoutError naming ``what``.

    A request to the api-server that times out or is refused counts as "not yet".
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except urllib.error.HTTPError:
            raise
        except (TimeoutError, ConnectionError, urllib.error.URLError):
            value = None  # a busy api-server on a loaded machine: ask again
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class AirflowStandalone:
    """Scheduler (LocalExecutor), triggerer, dag-processor and api-server on a temp SQLite home.

    ``env`` is added to every component's environment (World.env(), ``AIRFLOW_VAR_*``, tuning knobs)
    and wins over the defaults set here. ``parallelism`` bounds concurrent task instances (executor and
    per DAG); the LocalExecutor forks that many workers at start. ``port`` is the api-server's (a free
    one by default). With ``login`` the simple auth manager asks for a password (user ``admin``, the
    password generated into ``password_file``) as a deployment does; without, everyone is admin.
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        home: Path | None = None,
        dags_folder: Path = ROOT / "dags",
        parallelism: int = 16,
        port: int | None = None,
        login: bool = False,
    ) -> None:
        self.home = Path(home or tempfile.mkdtemp(prefix="precompiled-drivers-standalone-"))
        self.port = port or free_port()
        self.login = login
        self.password_file = self.home / "simple_auth_manager_passwords.json.generated"
        self._token: str | None = None
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_path = self.home / "airflow.db"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        # Killed components whose process group may still hold children (stop() ends those too).
        self._killed: list[subprocess.Popen[bytes]] = []
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(parallelism),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": str(not login),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db_path}",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "PYTHONPATH": f"{ROOT / 'plugins'}:{os.environ.get('PYTHONPATH', '')}",
            **(env or {}),
        }

    # -- life cycle ---------------------------------------------------------------------------------
    def start(
        self, dag_id: str | None = "nvidia_precompiled_driver", timeout: float = 180
    ) -> AirflowStandalone:
        """Migrate the DB, start the components, wait until healthy (and ``dag_id`` parsed)."""
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [AIRFLOW, "db", "migrate"],
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=self._log("db-migrate"),
            timeout=timeout,
        )
        try:
            for name in COMPONENTS:
                self._spawn(name)
            wait_for(self.healthy, timeout, "Airflow components to report healthy", interval=1)
            if dag_id:
                wait_for(lambda: self.dag_exists(dag_id), timeout, f"DAG {dag_id} to be parsed", interval=1)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str) -> subprocess.Popen[bytes]:
        self.procs[name] = subprocess.Popen(
            [AIRFLOW, *COMPONENTS[name]],
            env=self.env,
            stdout=self._log(name),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches task supervisors too
        )
        return self.procs[name]

    def kill(self, name: str, *, group: bool = True) -> int:
        """``kill -9`` one component; returns the pid killed.

        ``group``: the component and every process under it (the scheduler's LocalExecutor workers,
        their task supervisors and the task runners, which run in process groups of their own), as when
        its container or pod dies; else the main process only (its children live on as orphans until
        ``stop()``).
        """
        proc = self.procs.pop(name)
        if group:
            for pid in [proc.pid, *_descendants(proc.pid)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _signal_group(proc, signal.SIGKILL)
        else:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        self._killed.append(proc)
        return proc.pid

    def restart(self, name: str, timeout: float = 120) -> None:
        """Start a killed (or stopped) component again and wait until every component is healthy."""
        if name in self.procs:
            raise RuntimeError(f"airflow {name} is running; kill() it first")
        self._spawn(name)
        wait_for(self.healthy, timeout, f"Airflow components healthy after restarting {name}", interval=1)

    def stop(self, timeout: float = 30) -> None:
        """TERM every component's process group, then KILL what is left; idempotent."""
        for proc in self._killed:
            _signal_group(proc, signal.SIGKILL)  # orphans of a component killed alone
        self._killed.clear()
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            # Children (task supervisors, gunicorn/uvicorn workers) may outlive their parent.
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
        self.procs.clear()

    def __enter__(self) -> AirflowStandalone:
        return self.start() if not self.procs else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _log(self, name: str) -> Any:
        return (self.home / "logs" / f"{name}.log").open("ab")

    def log_tail(self, name: str, lines: int = 40) -> str:
        """The last lines a component printed (for assertion messages)."""
        path = self.home / "logs" / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def wait_executor_event(self, dag_id: str, run_id: str, task_id: str, timeout: float = 120) -> None:
        """Wait until the scheduler has processed the executor's event for the task's latest worker exit.

        A task that defers (or awaits input) exits its worker; the scheduler reads that exit from the
        executor's event buffer on a later loop (scheduler_job_runner.py ``process_executor_events``, which
        logs "TaskInstance Finished"). A resume that lands before that read can be taken for a task killed
        externally and fail the resumed try (apache/airflow#72716, not fixed in 3.3.2). A person answers
        minutes after a request, never within that loop; a test that answers at once waits for this first.
        """
        line = f"TaskInstance Finished: dag_id={dag_id}, task_id={task_id}, run_id={run_id},"
        wait_for(
            lambda: line in self.log_tail("scheduler", 2000), timeout, f"the scheduler to see {task_id} exit"
        )

    # -- REST API -----------------------------------------------------------------------------------
    def password(self) -> str:
        """The admin password the simple auth manager generated (``login`` mode)."""
        return str(json.loads(self.password_file.read_text())["admin"])

    def token(self) -> str:
        """A JWT for the REST API, from ``POST /auth/token`` with the admin password (``login`` mode)."""
        if self._token is None:
            body = json.dumps({"username": "admin", "password": self.password()}).encode()
            request = urllib.request.Request(
                f"{self.url}/auth/token",
                data=body,
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as resp:
                self._token = str(json.loads(resp.read())["access_token"])
        return self._token

    def api(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        """Call the REST API (``/api/v2/...``); returns the decoded JSON (a token in ``login`` mode)."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.login:
            headers["Authorization"] = f"Bearer {self.token()}"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def healthy(self) -> bool:
        """api-server up, and scheduler, triggerer and dag-processor heart-beating."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}:\n{self.log_tail(name)}")
        try:
            health = self.api("GET", "/api/v2/monitor/health", timeout=10)
        except (OSError, urllib.error.URLError, ValueError):
            return False
        parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        return all((health.get(p) or {}).get("status") == "healthy" for p in parts)

    def dag_exists(self, dag_id: str) -> bool:
        """True once the dag-processor has serialised ``dag_id``."""
        try:
            self.api("GET", f"/api/v2/dags/{dag_id}", timeout=10)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return False
            raise
        except OSError:
            return False  # a busy api-server (timeout, reset): ask again
        return True

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Trigger a manual run (as the UI form does); returns its run_id."""
        run = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return str(run["dag_run_id"])

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Every run of ``dag_id``, oldest first (REST shape: dag_run_id, state, run_type, ...)."""
        found = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns?order_by=run_after&limit=100")
        return list(found["dag_runs"])

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """One run (REST shape), with ``start``/``end`` datetimes and ``seconds`` = end - start."""
        run = dict(self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"))
        start, end = _parse_time(run.get("start_date")), _parse_time(run.get("end_date"))
        run["start"], run["end"] = start, end
        run["seconds"] = (end - start).total_seconds() if start and end else None
        return run

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 600) -> dict[str, Any]:
        """Wait until the run is success/failed; returns it (see :meth:`run`)."""

        def finished() -> dict[str, Any] | None:
            run = self.run(dag_id, run_id)
            return run if run["state"] in DONE_STATES else None

        return wait_for(finished, timeout, f"run {run_id} to finish", interval=0.5)

    # -- metadata DB (read-only) --------------------------------------------------------------------
    def _query(self, sql: str, args: tuple[Any, ...]) -> list[sqlite3.Row]:
        # Read-only and short: the components hold the write locks.
        with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30) as db:
            db.row_factory = sqlite3.Row
            return db.execute(sql, args).fetchall()

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's task instances from the DB: task_id, map_index, state, try_number, start, end,
        seconds (None until finished)."""
        rows = self._query(
            "SELECT task_id, map_index, state, try_number, start_date, end_date FROM task_instance"
            " WHERE dag_id = ? AND run_id = ? ORDER BY start_date, task_id, map_index",
            (dag_id, run_id),
        )
        out = []
        for row in rows:
            item = dict(row)
            start, end = _parse_time(item["start_date"]), _parse_time(item["end_date"])
            item["start_date"], item["end_date"] = start, end
            item["seconds"] = (end - start).total_seconds() if start and end else None
            out.append(item)
        return out

    def ti_row(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any] | None:
        """One task instance's DB row (id, state, try_number, ...), or None before it exists."""
        rows = self._query(
            "SELECT * FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = ? AND map_index = ?",
            (dag_id, run_id, task_id, map_index),
        )
        return dict(rows[0]) if rows else None

    def task_pids(self, ti_id: str) -> list[int]:
        """Pids of the process running task instance ``ti_id`` (the task runner the supervisor forked).

        The task runner names itself ``airflow worker -- <ti id>`` (airflow.sdk task_runner.main,
        setproctitle); its parent, the supervisor, is the LocalExecutor worker process.
        """
        title = f"airflow worker -- {ti_id}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip() == title:
                    found.append(int(entry.name))
        return found

    def kill_task(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, timeout: float = 60
    ) -> int:
        """``kill -9`` the task runner of a running task instance (waits until it runs); returns its pid."""

        def pids() -> list[int]:
            row = self.ti_row(dag_id, run_id, task_id, map_index)
            # SQLite keeps the UUID as 32 hex digits; the task runner names itself with the dashed form.
            return self.task_pids(str(uuid.UUID(str(row["id"])))) if row and row["state"] == "running" else []

        pid = wait_for(pids, timeout, f"the process running {task_id}", interval=0.2)[0]
        os.kill(pid, signal.SIGKILL)
        return int(pid)

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        """The events a task instance's try logged (one JSON object a line in the file), as text lines."""
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            folder /= f"map_index={map_index}"
        path = folder / f"attempt={try_number}.log"
        lines = []
        for raw in path.read_text(errors="replace").splitlines() if path.exists() else []:
            try:
                lines.append(str(json.loads(raw).get("event", "")))
            except ValueError:
                lines.append(raw)
        return "\n".join(lines)

    def failures(self, dag_id: str, run_id: str, log_lines: int = 60) -> str:
        """Every task instance that did not succeed or skip, with the tail of its last try's log: the
        message an end-to-end assertion shows, so a failure on CI names the task and its cause."""
        parts = []
        for ti in self.task_instances(dag_id, run_id):
            if ti["state"] in ("success", "skipped"):
                continue
            where = ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else "")
            parts.append(f"--- {where}: {ti['state']} (try {ti['try_number']})")
            if ti["try_number"]:
                log = self.task_log(dag_id, run_id, ti["task_id"], ti["try_number"], ti["map_index"])
                parts.append("\n".join(log.splitlines()[-log_lines:]))
        return "\n".join(parts) or "every task succeeded or was skipped"

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        """A task's return value (decoded), or None."""
        rows = self._query(
            "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? AND map_index = ?"
            " AND key = 'return_value'",
            (dag_id, run_id, task_id, map_index),
        )
        if not rows or rows[0]["value"] is None:
            return None
        value = rows[0]["value"]
        return plain(json.loads(value) if isinstance(value, str | bytes) else value)


def plain(value: Any) -> Any:
    """Undo Airflow's serde wrapping (``{"__classname__": "builtins.tuple", "__data__": [...]}``)."""
    if isinstance(value, dict):
        if "__classname__" in value and "__data__" in value:
            return plain(value["__data__"])
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (children, grandchildren...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                # /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after ")".
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
