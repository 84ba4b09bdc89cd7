"""Helpers for the PostgreSQL storage tests: test databases, instance config, servers.

The tests need the PostgreSQL server at 127.0.0.1:5432 with trust
authentication for the role `postgres` and an existing database `test`. They
only create and drop their own databases, named `dbt_rerun_test_<hex>`.

`postgres_location` is also the code location that the tests' webserver and
daemon load (workspace attribute `tests.postgres_support:postgres_location`).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import psycopg2
import pytest
import yaml

from dbt_rerun_dagster import build_dbt_definitions, build_dbt_job
from dbt_rerun_dagster.artifacts import RECORD_FILE
from tests.servers import LAUNCH_REEXECUTION, LAUNCH_RUN, graphql, launched_run_id
from tests.support import REPO_ROOT_PROJECT, Build, RunOutcome, SampleProject, outcome_of

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOY_CONFIG = REPO_ROOT / "deploy" / "dagster.postgres.yaml"
ARTIFACTS_DIRNAME = "dbt_rerun_artifacts"

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
# Existing database to connect to while creating and dropping test databases.
PG_MAINTENANCE_DB = "test"

# Environment variables that the code location reads in the webserver, the
# daemon and the run workers.
SERVER_PROJECTS_ENV = "DBT_RERUN_PG_PROJECTS"
FLAKY_MARKER_ENV = "DBT_RERUN_PG_FLAKY_MARKER"

LOCATION = "postgres_location"
PARALLEL_JOBS = ("parallel_1", "parallel_2", "parallel_3", "parallel_4")
DOUBLE_RERUN_JOB = "double_rerun"
LOCK_CONFLICT_JOB = "lock_conflict"
DAEMON_RETRIED_JOB = "daemon_retried"
SERVER_JOB_STEPS = ["dbt seed", "dbt run"]

BROKEN_MODEL_SQL = "select no_such_column from {{ ref('stg_orders') }}\n"

# Fails until the file named by $DBT_RERUN_PG_FLAKY_MARKER exists, with a
# message that the default failure classifier calls transient. The project's
# on-run-end hook creates that file, so the next `dbt run` or `dbt retry`
# builds the model.
FLAKY_MODEL_SQL = """
select case
    when (select count(*) from glob('{{ env_var("DBT_RERUN_PG_FLAKY_MARKER") }}')) = 0
    then error('transient: connection to the warehouse was lost')
    else 1
end as ok
"""
CREATE_FLAKY_MARKER = (
    "{% if flags.WHICH == 'run' %}"
    "copy (select 1 as done) to '{{ env_var(\"DBT_RERUN_PG_FLAKY_MARKER\") }}' (format csv)"
    "{% endif %}"
)


# A Python model for the parallel jobs. `dbt run` waits in it until the runs
# of all parallel jobs have reached it, so those runs overlap in time, and it
# fails after the timeout otherwise. It does not depend on fct_orders, so a
# rerun from failure does not build it.
RENDEZVOUS_MODEL = "rendezvous"
RENDEZVOUS_MODEL_PY = """
import time
from pathlib import Path


def model(dbt, session):
    arrivals = Path({arrivals!r})
    (arrivals / {job!r}).touch()
    deadline = time.monotonic() + {timeout}
    while len(list(arrivals.iterdir())) < {parties}:
        if time.monotonic() > deadline:
            arrived = sorted(path.name for path in arrivals.iterdir())
            raise RuntimeError("only these runs arrived within {timeout} s: " + str(arrived))
        time.sleep(0.2)
    return session.sql("select 1 as ok")
"""


def _connect_maintenance_db() -> Any:
    try:
        connection = psycopg2.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=PG_MAINTENANCE_DB, connect_timeout=10
        )
    except psycopg2.OperationalError as error:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT} as user {PG_USER!r} "
            f"(database {PG_MAINTENANCE_DB!r}). The PostgreSQL storage tests need this "
            "server with trust authentication. Start it and run them again.\n"
            f"psycopg2 error: {str(error).strip()}",
            pytrace=False,
        )
    connection.autocommit = True  # CREATE and DROP DATABASE cannot run in a transaction
    return connection


def create_test_database() -> str:
    """Create an empty database with a new random name and return the name."""
    name = f"dbt_rerun_test_{uuid.uuid4().hex[:12]}"
    connection = _connect_maintenance_db()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()

    return name


def drop_test_database(name: str) -> None:
    """Drop a test database, closing the connections that Dagster processes left open."""
    connection = _connect_maintenance_db()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        connection.close()


def instance_environment(database: str) -> dict[str, str]:
    """Return the environment variables that deploy/dagster.postgres.yaml reads."""
    return {
        "DAGSTER_PG_HOST": PG_HOST,
        "DAGSTER_PG_PORT": str(PG_PORT),
        "DAGSTER_PG_USERNAME": PG_USER,
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": database,
    }


def write_instance_config(home: Path) -> Path:
    """Write deploy/dagster.postgres.yaml as `home`/dagster.yaml, with a faster run queue.

    The daemon checks the run queue every second instead of Dagster's default
    5 s, so that queued test runs start sooner. Everything else is the
    deployment file unchanged.
    """
    config = yaml.safe_load(DEPLOY_CONFIG.read_text(encoding="utf-8"))
    config["run_coordinator"]["config"]["dequeue_interval_seconds"] = 1
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dagster.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    return path


def stored_run_ids(database: str) -> set[str]:
    """Return the ids of the runs in the `runs` table of a Dagster database."""
    connection = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=database)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT run_id FROM runs")
            return {row[0] for row in cursor.fetchall()}
    finally:
        connection.close()


def add_flaky_model(project: SampleProject) -> None:
    """Add the model `flaky_report`, which fails in the first `dbt run` only."""
    project.write("models/marts/flaky_report.sql", FLAKY_MODEL_SQL)
    project.update_project_yml(**{"on-run-end": [CREATE_FLAKY_MARKER]})


class ServerProject(SampleProject):
    """A copy of the sample project for runs started by the webserver or the daemon.

    Run workers inherit the daemon's environment, so the test cannot switch
    failures or the DuckDB file through environment variables: profiles.yml
    names this copy's own DuckDB file, and `break_models` rewrites model files.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path, pytest.MonkeyPatch())
        self._original_sql: dict[str, str] = {}

    @classmethod
    def create(cls, destination: Path) -> ServerProject:
        copied = SampleProject.copy_of(REPO_ROOT_PROJECT, destination, pytest.MonkeyPatch())
        project = cls(copied.path)
        profiles_path = project.path / "profiles.yml"
        profiles = yaml.safe_load(profiles_path.read_text(encoding="utf-8"))
        for output in profiles["jaffle_rerun"]["outputs"].values():
            output["path"] = str(project.database)
        profiles_path.write_text(yaml.safe_dump(profiles, sort_keys=False), encoding="utf-8")

        return project

    def break_models(self, *names: str) -> None:
        """Replace each model's SQL with a query that fails in DuckDB."""
        for name in names:
            path = self._model_path(name)
            self._original_sql.setdefault(name, path.read_text(encoding="utf-8"))
            path.write_text(BROKEN_MODEL_SQL, encoding="utf-8")

    def fix_models(self) -> None:
        for name, sql in self._original_sql.items():
            self._model_path(name).write_text(sql, encoding="utf-8")
        self._original_sql.clear()

    def _model_path(self, name: str) -> Path:
        matches = list((self.path / "models").rglob(f"{name}.sql"))
        assert len(matches) == 1, f"expected one model file {name}.sql in {self.path}"
        return matches[0]

    def all_builds_after_exit(self, timeout: float = 60.0) -> list[Build]:
        """Return every build, once no run worker has the DuckDB file locked."""
        with self.locked_database(timeout):
            pass
        return self.all_builds()

    @contextmanager
    def locked_database(self, timeout: float = 60.0) -> Iterator[None]:
        """Take DuckDB's write lock on the project's database file in this process.

        Waits until no other process has the file locked. A run worker can
        keep it locked until its process exits, a moment after its run is
        reported finished.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                connection = duckdb.connect(str(self.database))
                break
            except duckdb.IOException as error:
                if "lock" not in str(error).lower() or time.monotonic() > deadline:
                    raise
            time.sleep(0.5)
        try:
            yield
        finally:
            connection.close()


def prepare_server_projects(root: Path) -> dict[str, ServerProject]:
    """Create one project copy per job of `postgres_location` below `root`."""
    names = (*PARALLEL_JOBS, DOUBLE_RERUN_JOB, LOCK_CONFLICT_JOB, DAEMON_RETRIED_JOB)
    projects = {name: ServerProject.create(root / name) for name in names}
    add_flaky_model(projects[DAEMON_RETRIED_JOB])
    arrivals = root / "rendezvous_arrivals"
    arrivals.mkdir()
    for job_name in PARALLEL_JOBS:
        model = RENDEZVOUS_MODEL_PY.format(
            arrivals=str(arrivals), job=job_name, timeout=180, parties=len(PARALLEL_JOBS)
        )
        projects[job_name].write(f"models/marts/{RENDEZVOUS_MODEL}.py", model)

    return projects


def postgres_location() -> dg.Definitions:
    """Build the code location of the server tests: one job per project copy.

    Reads the directory of the project copies from $DBT_RERUN_PG_PROJECTS.
    """
    root = Path(os.environ[SERVER_PROJECTS_ENV])
    names = (*PARALLEL_JOBS, DOUBLE_RERUN_JOB, LOCK_CONFLICT_JOB)
    jobs = [build_dbt_job(name, root / name, SERVER_JOB_STEPS) for name in names]
    jobs.append(
        build_dbt_job(
            DAEMON_RETRIED_JOB, root / DAEMON_RETRIED_JOB, SERVER_JOB_STEPS, run_retries=1
        )
    )

    return build_dbt_definitions(*jobs)


def invocation_records(run_dir: Path) -> list[dict[str, Any]]:
    """Return the plugin's record of every dbt invocation below one run's artifact directory."""
    return [
        json.loads(path.read_text(encoding="utf-8")) for path in sorted(run_dir.rglob(RECORD_FILE))
    ]


@dataclass
class Servers:
    """A dagster-webserver and a dagster-daemon on the session's PostgreSQL database."""

    url: str
    instance: dg.DagsterInstance
    home: Path
    projects: dict[str, ServerProject]
    logs: Path

    @property
    def artifacts_root(self) -> Path:
        return self.home / ARTIFACTS_DIRNAME

    def launch(self, job_name: str) -> str:
        params = {
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": "__repository__",
                "jobName": job_name,
            },
            "runConfigData": {},
        }
        return launched_run_id(
            graphql(self.url, LAUNCH_RUN, {"executionParams": params})["launchRun"]
        )

    def rerun_from_failure(self, parent_run_id: str) -> str:
        """Launch a rerun the way the UI's "Re-execute → From failure" does."""
        params = {"parentRunId": parent_run_id, "strategy": "FROM_FAILURE"}
        return launched_run_id(
            graphql(self.url, LAUNCH_REEXECUTION, {"params": params})["launchRunReexecution"]
        )

    def wait(self, run_id: str, timeout: float = 240.0) -> RunOutcome:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.instance.get_run_by_id(run_id)
            if run is not None and run.is_finished:
                return outcome_of(self.instance, run_id)
            time.sleep(0.5)
        raise TimeoutError(f"run {run_id} did not finish within {timeout} s. Logs: {self.logs}")

    def children(self, run_id: str) -> list[dg.DagsterRun]:
        filters = dg.RunsFilter(tags={"dagster/parent_run_id": run_id})
        return list(self.instance.get_runs(filters=filters))

    def wait_for_child(self, run_id: str, timeout: float = 120.0) -> RunOutcome:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            children = self.children(run_id)
            if children:
                return self.wait(children[0].run_id)
            time.sleep(0.5)
        raise TimeoutError(f"run {run_id} got no rerun within {timeout} s. Logs: {self.logs}")

    def wait_for_invocation_end(
        self, job_name: str, run_id: str, step: str, timeout: float = 120.0
    ) -> dict[str, Any]:
        """Wait until the first dbt invocation of a step has recorded its exit code."""
        record_path = self.run_dir(job_name, run_id) / step / "attempt-0" / RECORD_FILE
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if record_path.is_file():
                record = json.loads(record_path.read_text(encoding="utf-8"))
                if record.get("exit_code") is not None:
                    return record
            time.sleep(0.1)
        raise TimeoutError(f"{record_path} got no exit code within {timeout} s")

    def run_dir(self, job_name: str, run_id: str) -> Path:
        return self.artifacts_root / job_name / run_id

    def builds_of_run(self, job_name: str, run_id: str) -> list[Build]:
        """Return the builds that the run's dbt invocations wrote to the job's DuckDB file."""
        builds = self.projects[job_name].all_builds_after_exit()
        records = invocation_records(self.run_dir(job_name, run_id))
        invocation_ids = {record["invocation_id"] for record in records}

        return [build for build in builds if build.invocation_id in invocation_ids]

    def time_span(self, run_id: str) -> tuple[float, float]:
        """Return the start and end time of a finished run, in seconds since the epoch."""
        record = self.instance.get_run_record_by_id(run_id)
        assert record is not None, f"run {run_id} not found"
        assert record.start_time is not None, f"run {run_id} has no start time"
        assert record.end_time is not None, f"run {run_id} has no end time"
        return record.start_time, record.end_time


def launch_together(launches: list[Callable[[], str]]) -> list[str]:
    """Call every launch function in its own thread at the same moment, and return the run ids."""
    barrier = threading.Barrier(len(launches))
    run_ids: list[str | None] = [None] * len(launches)
    errors: list[BaseException] = []

    def launch(index: int) -> None:
        barrier.wait()
        try:
            run_ids[index] = launches[index]()
        except BaseException as error:  # re-raised below, in the caller's thread
            errors.append(error)

    threads = [threading.Thread(target=launch, args=(index,)) for index in range(len(launches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise errors[0]
    missing = [index for index, run_id in enumerate(run_ids) if run_id is None]
    assert not missing, f"launches {missing} returned no run id within 120 s"

    return [run_id for run_id in run_ids if run_id is not None]
