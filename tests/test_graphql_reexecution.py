"""Re-execution through GraphQL on a real dagster-webserver matches the Python path."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg
import pytest

from dbt_rerun_dagster import RERUN_MODE_TAG, RESUMED_FROM_STEP_TAG
from tests.servers import (
    LAUNCH_REEXECUTION,
    LAUNCH_RUN,
    graphql,
    launched_run_id,
    running_webserver,
)
from tests.support import JobRunner, RunOutcome, SampleProject, built_nodes, outcome_of

BROKEN_FCT_ORDERS = "select no_such_column from {{ ref('stg_orders') }}\n"
NIGHTLY = ["dbt seed", "dbt run", "dbt test"]


def wait_for_run(instance: dg.DagsterInstance, run_id: str, timeout: float = 180.0) -> RunOutcome:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.is_finished:
            return outcome_of(instance, run_id)
        time.sleep(0.5)
    raise TimeoutError(f"run {run_id} did not finish within {timeout} s")


def python_path_rerun(
    instance: dg.DagsterInstance, project: SampleProject
) -> tuple[RunOutcome, set[str]]:
    """The same failure and fix, re-executed with `ReexecutionOptions.from_failure`."""
    model = project.path / "models/marts/fct_orders.sql"
    original = model.read_text()
    runner = JobRunner(instance, "jaffle_nightly", project, NIGHTLY)
    model.write_text(BROKEN_FCT_ORDERS)
    failed = runner.run()
    project.new_builds()
    model.write_text(original)
    rerun = runner.rerun_from_failure(failed.run_id)
    return rerun, set(built_nodes(project.new_builds()))


def test_graphql_from_failure_matches_python(
    instance: dg.DagsterInstance,
    project: SampleProject,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    python_project = SampleProject.copy_of(project.path, tmp_path / "python_copy", monkeypatch)
    monkeypatch.setenv("DBT_DUCKDB_PATH", str(python_project.database))
    python_rerun, python_rebuilt = python_path_rerun(instance, python_project)
    monkeypatch.setenv("DBT_DUCKDB_PATH", str(project.database))

    model = project.path / "models/marts/fct_orders.sql"
    original = model.read_text()
    env = {**os.environ, "DBT_RERUN_PROJECT_DIR": str(project.path)}
    selector = {
        "repositoryLocationName": "dbt_rerun_sample",
        "repositoryName": "__repository__",
        "jobName": "jaffle_nightly",
    }
    with running_webserver(env, tmp_path / "webserver.log") as url:
        model.write_text(BROKEN_FCT_ORDERS)
        launch = graphql(
            url, LAUNCH_RUN, {"executionParams": {"selector": selector, "runConfigData": {}}}
        )
        failed = wait_for_run(instance, launched_run_id(launch["launchRun"]))
        project.new_builds()

        model.write_text(original)
        reexecution = graphql(
            url,
            LAUNCH_REEXECUTION,
            {"params": {"parentRunId": failed.run_id, "strategy": "FROM_FAILURE"}},
        )
        rerun = wait_for_run(instance, launched_run_id(reexecution["launchRunReexecution"]))
        rebuilt = set(built_nodes(project.new_builds()))

    assert failed.status == dg.DagsterRunStatus.FAILURE
    assert rerun.success
    assert rerun.tags["dagster/is_resume_retry"] == "true"
    # The rerun copied its parent's failure tags, and blanked them when it started.
    assert failed.tags["dbt_rerun/failure_kind"] == "permanent"
    assert rerun.tags["dbt_rerun/failure_kind"] == ""
    assert rerun.tags["dagster/retry_on_asset_or_op_failure"] == "true"
    assert rerun.rerun_tags() == {
        RERUN_MODE_TAG: "from_failure",
        RESUMED_FROM_STEP_TAG: "step_2_dbt_run",
    }
    assert rerun.rerun_tags() == python_rerun.rerun_tags()
    assert rerun.step_status == python_rerun.step_status
    assert rebuilt == python_rebuilt
    assert "fct_orders" in rebuilt
    assert "stg_orders" not in rebuilt
