"""Runs and reruns on a Dagster instance that stores everything in PostgreSQL.

Each test session creates its own database on the PostgreSQL server at
127.0.0.1:5432 and drops it at the end (see tests/postgres_support.py). The
dagster.yaml of each test's DAGSTER_HOME is deploy/dagster.postgres.yaml. The
tests fail, with the connection error, when the server is not reachable.

The tests from test_daemon_run_retry_resumes_from_failure on share one
dagster-webserver and one dagster-daemon on the same database. Their runs are
separate run worker processes, so they can run at the same time. Each job has
its own copy of the sample project and its own DuckDB file, because DuckDB
allows one writer per file.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from dbt_rerun_dagster import RERUN_MODE_TAG, RESUMED_FROM_STEP_TAG
from dbt_rerun_dagster.graphql import launch_reexecution
from dbt_rerun_dagster.orchestration.retry_sensor import decide_auto_retry
from dbt_rerun_dagster.tags import AUTO_RETRY_TAG, RETRY_ATTEMPT_TAG
from tests.postgres_support import (
    ARTIFACTS_DIRNAME,
    DAEMON_RETRIED_JOB,
    DEPLOY_CONFIG,
    DOUBLE_RERUN_JOB,
    FLAKY_MARKER_ENV,
    LOCATION,
    LOCK_CONFLICT_JOB,
    PARALLEL_JOBS,
    RENDEZVOUS_MODEL,
    REPO_ROOT,
    SERVER_PROJECTS_ENV,
    Servers,
    add_flaky_model,
    create_test_database,
    drop_test_database,
    instance_environment,
    invocation_records,
    launch_together,
    prepare_server_projects,
    stored_run_ids,
    write_instance_config,
)
from tests.servers import free_port, running_daemon, running_webserver
from tests.support import (
    FCT_ORDERS_DESCENDANTS,
    MODEL_NAMES,
    SEED_NAMES,
    JobRunner,
    SampleProject,
    built_nodes,
    run_log_text,
    step_metadata,
    tree_digest,
)

NIGHTLY_STEPS = ["dbt seed", "dbt run", "dbt test"]
SEED, RUN, TEST = "step_1_dbt_seed", "step_2_dbt_run", "step_3_dbt_test"
# What a rerun from failure rebuilds after fct_orders failed in `dbt run`.
RETRIED_NODES = FCT_ORDERS_DESCENDANTS | {"fct_orders"}


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """Create a fresh database for the session and point DAGSTER_PG_* at it."""
    database = create_test_database()
    try:
        with pytest.MonkeyPatch.context() as session_env:
            for key, value in instance_environment(database).items():
                session_env.setenv(key, value)
            yield database
    finally:
        drop_test_database(database)


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_database: str) -> Path:
    """Create a DAGSTER_HOME that stores in PostgreSQL, in place of conftest's SQLite one."""
    home = tmp_path / "dagster_home"
    write_instance_config(home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    return home


def test_deploy_config_loads_postgres_storage(tmp_path: Path, postgres_database: str) -> None:
    home = tmp_path / "deploy_home"
    home.mkdir()
    shutil.copy(DEPLOY_CONFIG, home / "dagster.yaml")

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert instance.run_storage.postgres_url.endswith(f"/{postgres_database}")
        assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
        assert instance.run_retries_enabled
        assert not instance.telemetry_enabled


def test_deploy_config_names_missing_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_database: str
) -> None:
    home = tmp_path / "deploy_home"
    home.mkdir()
    shutil.copy(DEPLOY_CONFIG, home / "dagster.yaml")
    monkeypatch.delenv("DAGSTER_PG_DB")

    with pytest.raises(dg.DagsterInvalidConfigError, match='"DAGSTER_PG_DB" which is not set'):
        dg.DagsterInstance.from_config(str(home))


def test_from_failure_rebuilds_failed_and_skipped(
    instance: dg.DagsterInstance,
    project: SampleProject,
    dagster_home: Path,
    postgres_database: str,
) -> None:
    runner = JobRunner(instance, "nightly", project, NIGHTLY_STEPS)
    project.break_models("fct_orders")

    failed = runner.run()
    first_builds = built_nodes(project.new_builds())

    assert failed.status == dg.DagsterRunStatus.FAILURE
    assert failed.step_status == {SEED: "SUCCESS", RUN: "FAILURE"}
    assert set(first_builds) == SEED_NAMES | (MODEL_NAMES - RETRIED_NODES)
    assert failed.rerun_tags() == {}
    assert step_metadata(instance, failed.run_id, SEED)["mode reason"] == "fresh run"

    parent_run_dir = dagster_home / ARTIFACTS_DIRNAME / "nightly" / failed.run_id
    parent_digest = tree_digest(parent_run_dir)
    project.fix_models()
    rerun = runner.rerun_from_failure(failed.run_id)
    rebuilt = built_nodes(project.new_builds())

    assert rerun.success
    assert rerun.step_status == {RUN: "SUCCESS", TEST: "SUCCESS"}
    assert rebuilt == {name: 1 for name in RETRIED_NODES}
    assert rerun.rerun_tags() == {RERUN_MODE_TAG: "from_failure", RESUMED_FROM_STEP_TAG: RUN}
    assert rerun.parent_run_id == failed.run_id
    assert step_metadata(instance, rerun.run_id, RUN)["mode"] == "dbt retry"
    assert tree_digest(parent_run_dir) == parent_digest
    assert {failed.run_id, rerun.run_id} <= stored_run_ids(postgres_database)


def test_from_start_rebuilds_everything(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    runner = JobRunner(instance, "nightly", project, NIGHTLY_STEPS)
    project.break_models("fct_orders")
    failed = runner.run()
    project.new_builds()
    project.fix_models()

    rerun = runner.rerun_all_steps(failed.run_id)
    rebuilt = built_nodes(project.new_builds())

    assert rerun.success
    assert rerun.step_status == {SEED: "SUCCESS", RUN: "SUCCESS", TEST: "SUCCESS"}
    assert rebuilt == {name: 1 for name in SEED_NAMES | MODEL_NAMES}
    assert rerun.rerun_tags() == {RERUN_MODE_TAG: "from_start", RESUMED_FROM_STEP_TAG: SEED}
    assert step_metadata(instance, rerun.run_id, RUN)["mode"] == "full command"


def test_retry_policy_retries_only_failed_nodes(
    instance: dg.DagsterInstance,
    project: SampleProject,
    dagster_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(FLAKY_MARKER_ENV, str(tmp_path / "flaky_marker.csv"))
    add_flaky_model(project)
    runner = JobRunner(
        instance, "flaky", project, ["dbt seed", "dbt run"], retry_policy={"max_retries": 2}
    )

    outcome = runner.run()
    builds = built_nodes(project.new_builds())
    retried = step_metadata(instance, outcome.run_id, RUN)
    step_dir = dagster_home / ARTIFACTS_DIRNAME / "flaky" / outcome.run_id / RUN

    assert outcome.success
    assert builds == {name: 1 for name in SEED_NAMES | MODEL_NAMES | {"flaky_report"}}
    assert sorted(path.name for path in step_dir.iterdir()) == ["attempt-0", "attempt-1"]
    assert retried["mode"] == "dbt retry"
    assert retried["node counts"] == {"success": 3}  # flaky_report and the two project hooks


@pytest.fixture(scope="module")
def servers(postgres_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    root = tmp_path_factory.mktemp("postgres_servers")
    home = root / "dagster_home"
    write_instance_config(home)
    projects_root = root / "projects"
    projects = prepare_server_projects(projects_root)
    workspace = root / "workspace.yaml"
    workspace.write_text(
        "load_from:\n"
        "  - python_module:\n"
        "      module_name: tests.postgres_support\n"
        f"      attribute: {LOCATION}\n"
        f"      location_name: {LOCATION}\n"
        f"      working_directory: {REPO_ROOT}\n",
        encoding="utf-8",
    )
    unset = {"DBT_DEMO_BROKEN_MODELS", "DBT_DUCKDB_PATH", "DBT_PROFILES_DIR", "DAGSTER_HOME"}
    env = {
        **{key: value for key, value in os.environ.items() if key not in unset},
        "DAGSTER_HOME": str(home),
        SERVER_PROJECTS_ENV: str(projects_root),
        FLAKY_MARKER_ENV: str(root / "flaky_marker.csv"),
        "PYTHONPATH": str(REPO_ROOT),
    }
    port = free_port()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        with running_webserver(env, root / "webserver.log", workspace=workspace, port=port) as url:
            with running_daemon(env, root / "daemon.log", workspace):
                yield Servers(url, instance, home, projects, root)


def test_daemon_run_retry_resumes_from_failure(servers: Servers) -> None:
    failed = servers.wait(servers.launch(DAEMON_RETRIED_JOB))

    rerun = servers.wait_for_child(failed.run_id)
    first_builds = built_nodes(servers.builds_of_run(DAEMON_RETRIED_JOB, failed.run_id))
    rebuilt = built_nodes(servers.builds_of_run(DAEMON_RETRIED_JOB, rerun.run_id))
    failed_tags = servers.instance.get_run_by_id(failed.run_id).tags

    assert failed.status == dg.DagsterRunStatus.FAILURE
    assert failed_tags["dbt_rerun/failure_kind"] == "transient"
    assert failed_tags["dagster/will_retry"] == "true"
    assert set(first_builds) == SEED_NAMES | MODEL_NAMES
    assert rerun.success
    assert rerun.parent_run_id == failed.run_id
    assert rerun.rerun_tags() == {RERUN_MODE_TAG: "from_failure", RESUMED_FROM_STEP_TAG: RUN}
    assert step_metadata(servers.instance, rerun.run_id, RUN)["mode"] == "dbt retry"
    assert rebuilt == {"flaky_report": 1}
    assert len(servers.children(failed.run_id)) == 1


def test_parallel_runs_keep_separate_artifacts(servers: Servers) -> None:
    for job_name in PARALLEL_JOBS:
        servers.projects[job_name].break_models("fct_orders")

    failed_ids = launch_together([lambda job=job: servers.launch(job) for job in PARALLEL_JOBS])
    failed = dict(zip(PARALLEL_JOBS, [servers.wait(run_id) for run_id in failed_ids], strict=True))
    spans = [servers.time_span(outcome.run_id) for outcome in failed.values()]

    # Every run started before any of them ended, because the rendezvous model waits.
    assert max(start for start, _ in spans) < min(end for _, end in spans)
    for job_name, outcome in failed.items():
        assert outcome.step_status == {SEED: "SUCCESS", RUN: "FAILURE"}, job_name
        assert sorted(os.listdir(servers.artifacts_root / job_name)) == sorted(
            ["partial_parse", outcome.run_id]
        )
        records = invocation_records(servers.run_dir(job_name, outcome.run_id))
        assert [record["run_id"] for record in records] == [outcome.run_id] * 2
        first_builds = built_nodes(servers.builds_of_run(job_name, outcome.run_id))
        expected = SEED_NAMES | {RENDEZVOUS_MODEL} | (MODEL_NAMES - RETRIED_NODES)
        assert set(first_builds) == expected, job_name

    parent_digests = {
        job_name: tree_digest(servers.run_dir(job_name, outcome.run_id))
        for job_name, outcome in failed.items()
    }
    for job_name in PARALLEL_JOBS:
        servers.projects[job_name].fix_models()

    # The reruns are launched together too, but each one runs for a few
    # seconds only, so how much they overlap depends on the machine's load.
    rerun_ids = launch_together(
        [lambda job=job: servers.rerun_from_failure(failed[job].run_id) for job in PARALLEL_JOBS]
    )
    reruns = dict(zip(PARALLEL_JOBS, [servers.wait(run_id) for run_id in rerun_ids], strict=True))

    for job_name, rerun in reruns.items():
        parent_run_id = failed[job_name].run_id
        assert rerun.success, job_name
        assert rerun.parent_run_id == parent_run_id
        assert rerun.rerun_tags()[RERUN_MODE_TAG] == "from_failure", job_name
        assert step_metadata(servers.instance, rerun.run_id, RUN)["mode"] == "dbt retry", job_name
        rebuilt = built_nodes(servers.builds_of_run(job_name, rerun.run_id))
        assert rebuilt == {name: 1 for name in RETRIED_NODES}, job_name
        parent_digest = tree_digest(servers.run_dir(job_name, parent_run_id))
        assert parent_digest == parent_digests[job_name], job_name
        assert sorted(os.listdir(servers.artifacts_root / job_name)) == sorted(
            ["partial_parse", parent_run_id, rerun.run_id]
        )


def test_simultaneous_reruns_of_one_failure(servers: Servers) -> None:
    project = servers.projects[DOUBLE_RERUN_JOB]
    project.break_models("fct_orders")
    failed = servers.wait(servers.launch(DOUBLE_RERUN_JOB))
    parent_dir = servers.run_dir(DOUBLE_RERUN_JOB, failed.run_id)
    parent_digest = tree_digest(parent_dir)
    project.fix_models()

    # The retry sensor launches through launch_reexecution with its tags, and a
    # person clicks "Re-execute → From failure" at the same moment. The
    # sensor's check for an existing rerun cannot see a rerun that does not
    # exist yet, so nothing stops the second request.
    sensor_tags = {AUTO_RETRY_TAG: "true", RETRY_ATTEMPT_TAG: "1"}
    rerun_ids = launch_together(
        [
            lambda: launch_reexecution(servers.url, failed.run_id, "FROM_FAILURE", sensor_tags),
            lambda: servers.rerun_from_failure(failed.run_id),
        ]
    )
    reruns = [servers.wait(run_id) for run_id in rerun_ids]
    retried = [
        rerun
        for rerun in reruns
        if rerun.success
        and step_metadata(servers.instance, rerun.run_id, RUN)["mode"] == "dbt retry"
    ]
    sensor_decision = decide_auto_retry(
        servers.instance,
        servers.instance.get_run_by_id(failed.run_id),
        failed_at=servers.time_span(failed.run_id)[1],
        now=time.time(),
        max_attempts=3,
        delay_seconds=0,
    )

    # Dagster launched both reruns; the one created later stopped before
    # running dbt, because the other was still under way.
    assert {run.run_id for run in servers.children(failed.run_id)} == set(rerun_ids)
    assert tree_digest(parent_dir) == parent_digest
    assert len(retried) == 1
    stopped = [rerun for rerun in reruns if not rerun.success]
    assert len(stopped) == 1
    assert stopped[0].step_status == {}
    assert "is already rerunning run" in run_log_text(servers.instance, stopped[0].run_id)
    rebuilt = built_nodes(servers.builds_of_run(DOUBLE_RERUN_JOB, retried[0].run_id))
    assert rebuilt == {name: 1 for name in RETRIED_NODES}
    assert sensor_decision.action == "ignore"
    assert sensor_decision.reason == "it has been rerun already"


def test_lock_conflict_keeps_dbt_retry(servers: Servers) -> None:
    project = servers.projects[LOCK_CONFLICT_JOB]
    project.break_models("fct_orders")
    failed = servers.wait(servers.launch(LOCK_CONFLICT_JOB))
    project.fix_models()

    # This test process takes the DuckDB file's write lock before the rerun's
    # `dbt retry` starts, and releases it as soon as that invocation ends.
    with project.locked_database():
        rerun_id = servers.rerun_from_failure(failed.run_id)
        first_invocation = servers.wait_for_invocation_end(LOCK_CONFLICT_JOB, rerun_id, RUN)
    rerun = servers.wait(rerun_id)
    rebuilt = built_nodes(servers.builds_of_run(LOCK_CONFLICT_JOB, rerun.run_id))
    step = step_metadata(servers.instance, rerun.run_id, RUN)

    # A lock is transient: the step fails and stays a dbt retry, to be rerun
    # later, instead of rebuilding succeeded nodes with the full command.
    assert first_invocation["mode"] == "dbt retry"
    assert first_invocation["exit_code"] == 2
    assert set(rebuilt) <= RETRIED_NODES
    assert step["mode"] == "dbt retry"
    assert not rerun.success
    assert rerun.tags["dbt_rerun/failure_kind"] == "transient"
