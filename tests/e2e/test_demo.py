"""``make demo``'s entry point, run as a user would: every step succeeds and every kernel gets its image."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from precompiled_drivers.procedure import TASK_IDS
from testcluster.fleet import DEMO_NODES

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def test_demo_runs_the_pipeline_and_reports_every_kernel(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT / 'plugins'}",
        "DEMO_HOME": str(tmp_path / "demo"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "harness.demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-4000:]
    report = out.split("=== Report (from the report task) ===", 1)[1]
    states = dict(re.findall(r"^(\w+)\s+(success|skipped|failed|upstream_failed)\s*$", report, re.M))
    assert set(states) == set(TASK_IDS) - {"report"}
    # The NVIDIADriver-mode rollout skips in ClusterPolicy mode (test_nvidiadriver_mode.py runs it).
    skipped_when_all_goes_well = {"needs_rollback", "rollback_cluster_policy", "roll_out_nvidia_drivers"}
    assert all(states[s] == "success" for s in set(states) - skipped_when_all_goes_well), states
    table = report.split("driver pods Ready", 1)[1]
    for _name, kernel, _os_id, _version in DEMO_NODES:
        # kernel, the OS tag the operator uses (one for the whole mixed fleet), every tag published, digest.
        row = re.search(
            rf"^{re.escape(kernel)}\s+(\S+)\s+(\S+)\s+sha256:[0-9a-f]{{64}}\s+yes\s*$", table, re.M
        )
        assert row, kernel
        assert row[2].split(",") == ["rhcos4.18", "rhel9"]
        assert row[1] in row[2].split(",")
    assert "uses ONE OS tag for every kernel" in report
    # The GPU workload check ran vectorAdd on a GPU node of every kernel (testcluster/gpuworkload.py).
    checks = report.split(
        "GPU workload check (nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-ubi8):", 1
    )[1]
    checks = checks.split("\n\n", 1)[0]
    for kernel in {kernel for _name, kernel, _os_id, _version in DEMO_NODES}:
        ran = rf"^{re.escape(kernel)}\s+gpu-worker-[0-2]\s+ok\s+Test PASSED\s*$"
        assert re.search(ran, checks, re.M), checks
    assert "Task logs:" in out
    # It reads like a tool: a line per step as it finishes, then the report; Airflow's own logs in a file.
    progress = out.split("=== Steps (as they finish) ===", 1)[1].split("=== Report", 1)[0]
    finished = {line.split()[0].split("[")[0] for line in progress.splitlines() if line.strip()}
    assert finished == set(TASK_IDS), progress
    assert "[info" not in out and "DagBag" not in out, out[:2000]
    log = Path(re.search(r"Airflow's own output goes to (\S+) ", out)[1])
    assert "[DAG TEST] end task task_id=report" in log.read_text()
    # The registry (and any host-run step) was started with paths under DEMO_HOME: none may survive.
    left = subprocess.run(["pgrep", "-af", str(tmp_path)], capture_output=True, text=True).stdout
    assert left == "", f"the demo left processes behind:\n{left}"
