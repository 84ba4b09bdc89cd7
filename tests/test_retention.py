"""Artifact retention: old artifacts go, open failures keep what a retry needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from dbt_rerun_dagster import ArtifactRetention, prune_artifacts
from tests.support import (
    FCT_ORDERS_DESCENDANTS,
    JobRunner,
    SampleProject,
    built_nodes,
    step_metadata,
)

STEPS = ["dbt seed", "dbt run"]


def run_dirs(dagster_home: Path, job: str) -> set[str]:
    root = dagster_home / "dbt_rerun_artifacts" / job
    return {path.name for path in root.iterdir() if path.name != "partial_parse"}


def files_below(path: Path) -> set[str]:
    return {item.name for item in path.rglob("*") if item.is_file()}


def test_keep_last_runs_setting(
    instance: dg.DagsterInstance, project: SampleProject, dagster_home: Path
) -> None:
    retention = {"keep_last_runs": 1}  # rebuilt as ArtifactRetention by tests/jobs.py
    runner = JobRunner(instance, "nightly", project, STEPS, artifact_retention=retention)

    runs = [runner.run() for _ in range(3)]

    assert all(run.success for run in runs)
    assert run_dirs(dagster_home, "nightly") == {runs[-1].run_id}


def test_unresolved_failure_keeps_retry_files(
    instance: dg.DagsterInstance, project: SampleProject, dagster_home: Path
) -> None:
    runner = JobRunner(instance, "nightly", project, STEPS)
    project.break_models("fct_orders")
    failed = runner.run()
    project.fix_models()
    newer = runner.run()

    report = prune_artifacts(
        instance,
        dagster_home / "dbt_rerun_artifacts" / "nightly",
        ArtifactRetention(max_age_days=1),
        now=time.time() + 2 * 86400,
    )
    failed_dir = dagster_home / "dbt_rerun_artifacts" / "nightly" / failed.run_id
    project.new_builds()
    rerun = runner.rerun_from_failure(failed.run_id)

    assert report.slimmed == [failed.run_id]
    assert report.deleted == [newer.run_id]
    assert files_below(failed_dir) == {"run_results.json", "dbt_rerun_invocation.json"}
    assert step_metadata(instance, rerun.run_id, "step_2_dbt_run")["mode"] == "dbt retry"
    assert set(built_nodes(project.new_builds())) == FCT_ORDERS_DESCENDANTS | {"fct_orders"}


def test_resolved_failure_is_deleted(
    instance: dg.DagsterInstance, project: SampleProject, dagster_home: Path
) -> None:
    runner = JobRunner(instance, "nightly", project, STEPS)
    project.break_models("fct_orders")
    failed = runner.run()
    project.fix_models()
    rerun = runner.rerun_from_failure(failed.run_id)

    report = prune_artifacts(
        instance,
        dagster_home / "dbt_rerun_artifacts" / "nightly",
        ArtifactRetention(keep_last_runs=1),
    )

    assert report.deleted == [failed.run_id]
    assert report.kept == [rerun.run_id]


def test_prune_command(
    instance: dg.DagsterInstance, project: SampleProject, dagster_home: Path
) -> None:
    runner = JobRunner(instance, "nightly", project, STEPS)
    first, second = runner.run(), runner.run()
    cli = str(Path(sys.executable).with_name("dbt-rerun"))

    completed = subprocess.run(
        [cli, "--json", "prune-artifacts", "nightly", "--keep-last", "1"],
        capture_output=True,
        text=True,
        env={**os.environ, "DAGSTER_HOME": str(dagster_home)},
        timeout=120,
    )

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["deleted"] == [first.run_id]
    assert run_dirs(dagster_home, "nightly") == {second.run_id}


def test_prune_command_needs_a_limit(dagster_home: Path) -> None:
    cli = str(Path(sys.executable).with_name("dbt-rerun"))

    completed = subprocess.run(
        [cli, "prune-artifacts", "nightly"], capture_output=True, text=True, timeout=120
    )

    assert completed.returncode == 2
    assert "ArtifactRetention needs max_age_days, keep_last_runs or both" in completed.stderr
