"""The sample code location loads in Dagster's own tooling, and the demo works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import SampleProject

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_workspace_validates(project: SampleProject, dagster_home: Path) -> None:
    env = {**os.environ, "DBT_RERUN_PROJECT_DIR": str(project.path)}
    dagster = Path(sys.executable).with_name("dagster")

    completed = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "dbt_rerun_sample" in completed.stdout + completed.stderr


def test_demo_fails_then_resumes(project: SampleProject, tmp_path: Path) -> None:
    env = {**os.environ, "DBT_RERUN_PROJECT_DIR": str(project.path)}

    completed = subprocess.run(
        [sys.executable, "-m", "dbt_rerun_dagster.demo", "--dagster-home", str(tmp_path / "home")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    summary = completed.stdout.split("===== Summary =====", 1)[-1]

    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "step_2_dbt_run     FAILURE" in summary
    assert "step_2_dbt_run     SUCCESS (dbt retry)" in summary
    assert "built 6 models: " in summary
    assert "rerun mode: from_failure, resumed from step_2_dbt_run" in summary
