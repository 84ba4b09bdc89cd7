"""Automatic reruns with real processes: the retry sensor and Dagster's run retries.

One dagster-webserver and one dagster-daemon serve every test of this module
(starting them takes about 15 s). Runs of different tests do not overlap,
because the DuckDB file allows one writer.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from tests.servers import (
    LAUNCH_RUN,
    free_port,
    graphql,
    launched_run_id,
    running_daemon,
    running_webserver,
    write_instance_config,
)
from tests.support import REPO_ROOT_PROJECT, RunOutcome, SampleProject, built_nodes, outcome_of

# Fails until its marker file exists, with a message the default classifier
# calls transient; the project's on-run-end hook creates the marker, so the
# next `dbt run` passes. With flaky_marker "always" it never passes.
FLAKY_MODEL = """
{% set marker = var('flaky_marker', '') %}
{% if marker == 'always' %}
select error('transient: the warehouse is busy, try again') as ok
{% elif marker %}
select case
    when (select count(*) from glob('{{ marker }}')) = 0
    then error('transient: connection to the warehouse was lost')
    else 1
end as ok
{% else %}
select 1 as ok
{% endif %}
"""
CREATE_MARKER = (
    "{% if var('flaky_marker', '') not in ('', 'always') and flags.WHICH == 'run' %}"
    "copy (select 1 as done) to '{{ var(\"flaky_marker\") }}' (format csv)"
    "{% endif %}"
)
FAILING_TEST = (
    "{{ config(enabled=var('with_failing_test', false)) }}\n"
    "select order_id from {{ ref('fct_orders') }} limit 2\n"
)
LOCATION = "auto_retry_location"


@dataclass
class Servers:
    url: str
    instance: dg.DagsterInstance
    project: SampleProject
    logs: Path

    def launch(self, job_name: str, tags: dict[str, str] | None = None) -> str:
        params = {
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": "__repository__",
                "jobName": job_name,
            },
            "runConfigData": {},
            "executionMetadata": {
                "tags": [{"key": key, "value": value} for key, value in (tags or {}).items()]
            },
        }
        return launched_run_id(
            graphql(self.url, LAUNCH_RUN, {"executionParams": params})["launchRun"]
        )

    def wait(self, run_id: str, timeout: float = 120.0) -> RunOutcome:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.instance.get_run_by_id(run_id)
            if run is not None and run.is_finished:
                return outcome_of(self.instance, run_id)
            time.sleep(0.5)
        raise TimeoutError(f"run {run_id} did not finish within {timeout} s; logs in {self.logs}")

    def children(self, run_id: str) -> list[dg.DagsterRun]:
        filters = dg.RunsFilter(tags={"dagster/parent_run_id": run_id})
        return list(self.instance.get_runs(filters=filters))

    def wait_for_child(self, run_id: str, timeout: float = 90.0) -> RunOutcome:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            children = self.children(run_id)
            if children:
                return self.wait(children[0].run_id)
            time.sleep(0.5)
        raise TimeoutError(f"no rerun of {run_id} within {timeout} s; logs in {self.logs}")

    def wait_for_tag(self, run_id: str, key: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.instance.get_run_by_id(run_id)
            if run is not None and run.tags.get(key):
                return run.tags[key]
            time.sleep(0.5)
        raise TimeoutError(f"run {run_id} got no tag {key} within {timeout} s; logs in {self.logs}")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    root = tmp_path_factory.mktemp("auto_retry")
    home = root / "dagster_home"
    home.mkdir()
    write_instance_config(home, run_retries=True)
    project = SampleProject.copy_of(REPO_ROOT_PROJECT, root / "dbt_project", pytest.MonkeyPatch())
    project.write("models/marts/flaky_report.sql", FLAKY_MODEL)
    project.write("tests/orders_must_be_empty.sql", FAILING_TEST)
    project.update_project_yml(**{"on-run-end": [CREATE_MARKER]})
    markers = root / "markers"
    markers.mkdir()
    workspace = root / "workspace.yaml"
    workspace.write_text(
        "load_from:\n"
        "  - python_module:\n"
        f"      module_name: tests.{LOCATION}\n"
        f"      location_name: {LOCATION}\n"
        f"      working_directory: {REPO_ROOT_PROJECT.parent}\n",
        encoding="utf-8",
    )
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "DBT_DEMO_BROKEN_MODELS"},
        "DAGSTER_HOME": str(home),
        "DBT_RERUN_PROJECT_DIR": str(project.path),
        "DBT_DUCKDB_PATH": str(project.database),
        "AUTO_RETRY_MARKER_DIR": str(markers),
        "DBT_RERUN_GRAPHQL_URL": f"http://127.0.0.1:{port}/graphql",
        "PYTHONPATH": str(REPO_ROOT_PROJECT.parent),
    }
    with dg.DagsterInstance.from_config(str(home)) as instance:
        with running_webserver(env, root / "webserver.log", workspace=workspace, port=port) as url:
            with running_daemon(env, root / "daemon.log", workspace):
                yield Servers(url, instance, project, root)
    shutil.rmtree(markers, ignore_errors=True)


def latency(servers: Servers, parent: RunOutcome, child: RunOutcome) -> float:
    parent_record = servers.instance.get_run_record_by_id(parent.run_id)
    child_record = servers.instance.get_run_record_by_id(child.run_id)
    assert parent_record is not None and child_record is not None
    assert parent_record.end_time is not None and child_record.start_time is not None
    return child_record.start_time - parent_record.end_time


def test_sensor_reruns_transient_failure_once(servers: Servers) -> None:
    servers.project.new_builds()
    failed = servers.wait(servers.launch("flaky_nightly"))
    servers.project.new_builds()

    rerun = servers.wait_for_child(failed.run_id)
    rebuilt = built_nodes(servers.project.new_builds())
    time.sleep(3)  # a few more sensor ticks: still one rerun

    assert failed.tags["dbt_rerun/failure_kind"] == "transient"
    assert rerun.success
    assert len(servers.children(failed.run_id)) == 1
    assert rerun.tags["dbt_rerun/auto_retry"] == "true"
    assert rerun.tags["dbt_rerun/retry_attempt"] == "1"
    assert rerun.rerun_tags() == {
        "dbt_rerun/rerun_mode": "from_failure",
        "dbt_rerun/resumed_from_step": "step_2_dbt_run",
    }
    assert rebuilt == {"flaky_report": 1}
    print(f"sensor latency from failure to rerun start: {latency(servers, failed, rerun):.1f} s")


def test_sensor_skips_failing_data_test(servers: Servers) -> None:
    failed = servers.wait(servers.launch("tested_nightly"))

    reason = servers.wait_for_tag(failed.run_id, "dbt_rerun/auto_retry_skipped")

    assert failed.status == dg.DagsterRunStatus.FAILURE
    assert failed.tags["dbt_rerun/failure_kind"] == "permanent"
    assert reason.startswith("not retried automatically: data test test.jaffle_rerun.orders_must")
    assert servers.children(failed.run_id) == []


def test_sensor_respects_max_attempts_tag(servers: Servers) -> None:
    root = servers.wait(servers.launch("always_transient", {"dbt_rerun/max_auto_retries": "2"}))

    first = servers.wait_for_child(root.run_id)
    second = servers.wait_for_child(first.run_id)
    reason = servers.wait_for_tag(second.run_id, "dbt_rerun/auto_retry_skipped")
    group = servers.instance.get_runs(
        filters=dg.RunsFilter(tags={"dagster/root_run_id": root.run_id})
    )

    assert [first.tags["dbt_rerun/retry_attempt"], second.tags["dbt_rerun/retry_attempt"]] == [
        "1",
        "2",
    ]
    assert not second.success
    assert reason == "the maximum of 2 automatic retries is reached"
    assert len(group) == 2


def test_daemon_run_retry_resumes_from_failure(servers: Servers) -> None:
    servers.project.new_builds()
    failed = servers.wait(servers.launch("daemon_retried"))
    servers.project.new_builds()

    rerun = servers.wait_for_child(failed.run_id)
    rebuilt = built_nodes(servers.project.new_builds())
    time.sleep(3)

    assert servers.wait_for_tag(failed.run_id, "dagster/will_retry") == "true"
    assert rerun.success
    assert len(servers.children(failed.run_id)) == 1  # the sensor stayed out of the way
    assert "dbt_rerun/auto_retry" not in rerun.tags
    assert rerun.rerun_tags()["dbt_rerun/rerun_mode"] == "from_failure"
    assert rebuilt == {"flaky_report": 1}
    print(f"daemon latency from failure to rerun start: {latency(servers, failed, rerun):.1f} s")


def test_daemon_skips_permanent_failure(servers: Servers) -> None:
    failed = servers.wait(servers.launch("daemon_permanent"))
    servers.wait_for_tag(failed.run_id, "dbt_rerun/auto_retry_skipped")

    assert failed.tags["dagster/retry_on_asset_or_op_failure"] == "false"
    assert servers.instance.get_run_by_id(failed.run_id).tags.get("dagster/will_retry") != "true"
    assert servers.children(failed.run_id) == []
