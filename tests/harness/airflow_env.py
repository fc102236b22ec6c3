"""Point Airflow at a throw-away home before anything imports it (imported first by tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def configure(home: Path | None = None) -> Path:
    """Point Airflow (tests, demo) at SQLite in ``home`` and at this repo's DAGs and plugins."""
    home = home or Path(tempfile.mkdtemp(prefix="precompiled-drivers-airflow-"))
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
    os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home}/airflow.db"
    os.environ["AIRFLOW__LOGGING__BASE_LOG_FOLDER"] = str(home / "logs")
    # Never reach the real update graph from tests or the demo.
    os.environ.setdefault("AIRFLOW_VAR_PRECOMPILED_DRIVERS_LOOKAHEAD", "false")
    return home


def migrate() -> None:
    """Create the metadata database (``airflow db migrate``) in a child process."""
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'plugins'}:{os.environ.get('PYTHONPATH', '')}"},
    )
