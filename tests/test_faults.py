"""Faults: a locked warehouse, and a run terminated from the webserver while dbt runs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from dbt_rerun_dagster import fail_dead_runs
from tests.servers import (
    LAUNCH_REEXECUTION,
    LAUNCH_RUN,
    graphql,
    launched_run_id,
    running_webserver,
)
from tests.support import (
    JobRunner,
    RunOutcome,
    SampleProject,
    built_nodes,
    outcome_of,
    step_metadata,
)

HOLD_LOCK = """
import sys, time, duckdb
connection = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""
# About 5 s of DuckDB work on 2 cores: long enough to terminate the run mid-model.
SLOW_MODEL = """
select count(*) as n from range(0, 6000000000) as t(x) where x % 7 = 3
"""
TERMINATE_RUN = """
mutation Terminate($runId: String!) {
  terminateRun(runId: $runId) { __typename ... on PythonError { message } }
}
"""


def test_locked_warehouse_is_transient(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    runner = JobRunner(instance, "nightly", project, ["dbt seed", "dbt run"])
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(project.database)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        failed = runner.run()
    finally:
        holder.kill()
        holder.wait(timeout=30)
    failure = step_metadata(instance, failed.run_id, "step_1_dbt_seed")

    rerun = runner.rerun_from_failure(failed.run_id)

    assert failed.status == dg.DagsterRunStatus.FAILURE
    assert "lock" in failure["description"].lower()
    assert failed.tags["dbt_rerun/failure_kind"] == "transient"
    assert failed.tags["dagster/retry_on_asset_or_op_failure"] == "true"
    assert rerun.success


def test_terminated_run_resumes_from_failure(
    instance: dg.DagsterInstance, project: SampleProject, tmp_path: Path
) -> None:
    project.write("models/marts/slow_report.sql", SLOW_MODEL)
    env = {**os.environ, "DBT_RERUN_PROJECT_DIR": str(project.path)}
    with running_webserver(env, tmp_path / "webserver.log") as url:
        run_id = _launch_slow_run(instance, url)
        worker_pid = _run_worker_pid(instance, run_id)
        terminated = graphql(url, TERMINATE_RUN, {"runId": run_id})["terminateRun"]
        canceled = _wait_until_finished(instance, run_id)
        # dbt-duckdb 1.11 cannot interrupt a running statement, so the worker
        # exits (releasing the DuckDB lock) only when the statement ends.
        _wait_for_exit(worker_pid)
        interrupted = step_metadata(instance, run_id, "step_2_dbt_run")
        project.new_builds()
        rerun = _rerun_from_failure(instance, url, run_id)
        rebuilt = built_nodes(project.new_builds())

    assert terminated["__typename"] == "TerminateRunSuccess"
    assert canceled.status == dg.DagsterRunStatus.CANCELED
    assert "dbt was interrupted" in interrupted["description"]
    assert "before running any node" not in interrupted["description"]
    # A termination is no failure to classify for automatic retries.
    assert "dbt_rerun/failure_kind" not in canceled.tags
    assert rerun.success
    assert rerun.rerun_tags()["dbt_rerun/rerun_mode"] == "from_failure"
    assert rerun.rerun_tags()["dbt_rerun/resumed_from_step"] == "step_2_dbt_run"
    assert "slow_report" in rebuilt
    assert "raw_orders" not in rebuilt


def test_killed_worker_run_resumes(
    instance: dg.DagsterInstance, project: SampleProject, tmp_path: Path
) -> None:
    project.write("models/marts/slow_report.sql", SLOW_MODEL)
    env = {**os.environ, "DBT_RERUN_PROJECT_DIR": str(project.path)}
    with running_webserver(env, tmp_path / "webserver.log") as url:
        run_id = _launch_slow_run(instance, url)
        worker_pid = int(instance.get_run_by_id(run_id).tags["dbt_rerun/worker_pid"])
        os.kill(worker_pid, signal.SIGKILL)
        _wait_for_exit(worker_pid)
        status_after_kill = instance.get_run_by_id(run_id).status

        reported = fail_dead_runs(instance)
        killed = outcome_of(instance, run_id)
        project.new_builds()
        rerun = _rerun_from_failure(instance, url, run_id)
        rebuilt = built_nodes(project.new_builds())
        resumed = step_metadata(instance, rerun.run_id, "step_2_dbt_run")

    # The code server that launched the worker sometimes notices the exit and
    # fails the run itself; otherwise the run stays STARTED until reported.
    expected_reports = [run_id] if status_after_kill == dg.DagsterRunStatus.STARTED else []
    assert status_after_kill in (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.FAILURE)
    assert reported == expected_reports
    assert killed.status == dg.DagsterRunStatus.FAILURE
    assert rerun.success
    # dbt died before writing run_results.json, so the step runs in full.
    assert resumed["mode"] == "full command"
    assert "no readable run_results.json" in resumed["mode reason"]
    assert "slow_report" in rebuilt
    assert "raw_orders" not in rebuilt


def _launch_slow_run(instance: dg.DagsterInstance, url: str) -> str:
    """Launch jaffle_nightly and return its run id once dbt is inside the slow run step."""
    selector = {
        "repositoryLocationName": "dbt_rerun_sample",
        "repositoryName": "__repository__",
        "jobName": "jaffle_nightly",
    }
    launch = graphql(
        url, LAUNCH_RUN, {"executionParams": {"selector": selector, "runConfigData": {}}}
    )
    run_id = launched_run_id(launch["launchRun"])
    _wait_for_step_start(instance, run_id, "step_2_dbt_run")
    time.sleep(3)  # dbt is now inside the run step, building slow_report

    return run_id


def _rerun_from_failure(instance: dg.DagsterInstance, url: str, run_id: str) -> RunOutcome:
    params = {"params": {"parentRunId": run_id, "strategy": "FROM_FAILURE"}}
    reexecution = graphql(url, LAUNCH_REEXECUTION, params)["launchRunReexecution"]

    return _wait_until_finished(instance, launched_run_id(reexecution))


def _run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int:
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        message = record.dagster_event.message if record.dagster_event else ""
        match = re.search(r"Executing steps in process \(pid: (\d+)\)", message or "")
        if match:
            return int(match.group(1))
    raise AssertionError(f"run {run_id} logged no run worker pid")


def _wait_for_exit(pid: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise TimeoutError(f"run worker {pid} still runs {timeout} s after termination")


def _wait_for_step_start(instance: dg.DagsterInstance, run_id: str, step_key: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        starts = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
        if any(record.step_key == step_key for record in starts):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{step_key} of run {run_id} did not start within 120 s")


def _wait_until_finished(instance: dg.DagsterInstance, run_id: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.is_finished:
            return outcome_of(instance, run_id)
        time.sleep(0.5)
    raise TimeoutError(f"run {run_id} did not finish within 180 s")
