"""The dbt-rerun command line against a real dagster-webserver on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    running_webserver,
    write_instance_config,
)
from tests.support import REPO_ROOT_PROJECT, SampleProject, built_nodes

BROKEN_FCT_ORDERS = "select no_such_column from {{ ref('stg_orders') }}\n"
CLI = str(Path(sys.executable).with_name("dbt-rerun"))


@dataclass
class Server:
    url: str
    instance: dg.DagsterInstance
    project: SampleProject

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CLI, "--url", self.url, *args], capture_output=True, text=True, timeout=300
        )

    def launch(self, job: str = "jaffle_nightly", location: str = "dbt_rerun_sample") -> str:
        selector = {
            "repositoryLocationName": location,
            "repositoryName": "__repository__",
            "jobName": job,
        }
        params = {"executionParams": {"selector": selector, "runConfigData": {}}}
        return launched_run_id(graphql(self.url, LAUNCH_RUN, params)["launchRun"])

    def wait(self, run_id: str) -> str:
        while not self.instance.get_run_by_id(run_id).is_finished:
            time.sleep(0.5)
        return run_id

    def launch_nightly(self) -> str:
        return self.wait(self.launch())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("cli")
    home = root / "dagster_home"
    home.mkdir()
    write_instance_config(home)
    project = SampleProject.copy_of(REPO_ROOT_PROJECT, root / "dbt_project", pytest.MonkeyPatch())
    env = {
        **{k: v for k, v in os.environ.items() if k != "DBT_DEMO_BROKEN_MODELS"},
        "DAGSTER_HOME": str(home),
        "DBT_RERUN_PROJECT_DIR": str(project.path),
        "DBT_DUCKDB_PATH": str(project.database),
    }
    workspace = root / "workspace.yaml"
    workspace.write_text(
        "load_from:\n"
        "  - python_module:\n"
        "      module_name: dbt_rerun_dagster.definitions\n"
        "      location_name: dbt_rerun_sample\n"
        "  - python_module:\n"
        "      module_name: tests.plain_location\n"
        "      location_name: plain\n",
        encoding="utf-8",
    )
    env["PYTHONPATH"] = str(REPO_ROOT_PROJECT.parent)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        with running_webserver(env, root / "webserver.log", workspace=workspace) as url:
            yield Server(url, instance, project)


@pytest.fixture(scope="module")
def failed_run(server: Server) -> str:
    model = server.project.path / "models/marts/fct_orders.sql"
    original = model.read_text()
    model.write_text(BROKEN_FCT_ORDERS)
    run_id = server.launch_nightly()
    model.write_text(original)
    return run_id


def test_unreachable_server_exits_3() -> None:
    url = f"http://127.0.0.1:{free_port()}/graphql"

    completed = subprocess.run(
        [CLI, "--url", url, "runs", "nightly"], capture_output=True, text=True
    )

    assert completed.returncode == 3
    assert f"No Dagster webserver responded at {url}" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_runs_lists_failed_step(server: Server, failed_run: str) -> None:
    completed = server.cli("--json", "runs", "jaffle_nightly")
    runs = json.loads(completed.stdout)
    listed = next(run for run in runs if run["run_id"] == failed_run)

    assert completed.returncode == 0
    assert listed["status"] == "FAILURE"
    assert listed["failed_steps"] == ["step_2_dbt_run"]
    assert listed["trigger"] == "manual"
    assert listed["rerun_mode"] is None


def test_show_prints_each_step(server: Server, failed_run: str) -> None:
    completed = server.cli("--json", "show", failed_run)
    steps = {step["step"]: step for step in json.loads(completed.stdout)["steps"]}

    assert completed.returncode == 0
    assert steps["step_1_dbt_seed"]["mode"] == "full command"
    assert steps["step_1_dbt_seed"]["node counts"] == {"success": 4}  # 3 seeds and a hook
    assert steps["step_2_dbt_run"]["status"] == "FAILURE"
    assert "model.jaffle_rerun.fct_orders (error)" in steps["step_2_dbt_run"]["description"]
    assert steps["step_3_dbt_test"]["status"] == "NOT RUN"


def test_unresolved_lists_failed_root(server: Server, failed_run: str) -> None:
    completed = server.cli("--json", "unresolved", "jaffle_nightly")
    unresolved = json.loads(completed.stdout)

    assert completed.returncode == 0
    assert [item["root_run_id"] for item in unresolved] == [failed_run]
    assert unresolved[0]["failed_steps"] == ["step_2_dbt_run"]


def test_unknown_run_exits_2(server: Server) -> None:
    completed = server.cli("rerun", "00000000-0000-0000-0000-000000000000", "--from-failure")

    assert completed.returncode == 2
    assert "Run 00000000-0000-0000-0000-000000000000 does not exist" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_retry_failed_resumes_latest_run(server: Server, failed_run: str) -> None:
    server.project.new_builds()

    completed = server.cli("--json", "retry-failed", "jaffle_nightly", "--wait")
    result = json.loads(completed.stdout)
    rerun = server.instance.get_run_by_id(result["run_id"])

    assert completed.returncode == 0
    assert result == {"parent_run_id": failed_run, "run_id": rerun.run_id, "status": "SUCCESS"}
    assert rerun.tags["dbt_rerun/rerun_mode"] == "from_failure"
    assert "stg_orders" not in built_nodes(server.project.new_builds())


def test_retry_resolves_failed_root(server: Server, failed_run: str) -> None:
    completed = server.cli("--json", "unresolved", "jaffle_nightly")

    assert completed.returncode == 0
    assert json.loads(completed.stdout) == []
    assert server.instance.get_run_by_id(failed_run).tags["dbt_rerun/resolved_by"]


def test_retry_failed_after_success_exits_2(server: Server) -> None:
    completed = server.cli("retry-failed", "jaffle_nightly")

    assert completed.returncode == 2
    assert completed.stderr.strip() == (
        "dbt-rerun: The latest run of jaffle_nightly succeeded; nothing to retry."
    )


def test_successful_run_from_failure_exits_2(server: Server) -> None:
    latest = json.loads(server.cli("--json", "runs", "jaffle_nightly", "--limit", "1").stdout)[0]

    completed = server.cli("rerun", latest["run_id"], "--from-failure")

    assert completed.returncode == 2
    assert f"Run {latest['run_id']} has status SUCCESS" in completed.stderr


def test_rerun_from_start_with_settings(server: Server, failed_run: str) -> None:
    server.project.new_builds()

    completed = server.cli(
        "rerun",
        failed_run,
        "--from-start",
        "--threads",
        "1",
        "--vars",
        "{run_label: cli}",
        "--wait",
    )
    builds = server.project.new_builds()

    assert completed.returncode == 0, completed.stderr
    assert "ended with status SUCCESS" in completed.stdout
    assert len(builds) == 16
    assert {build.run_label for build in builds} == {"cli"}


def test_invalid_vars_exit_2(server: Server, failed_run: str) -> None:
    completed = server.cli("rerun", failed_run, "--from-failure", "--vars", "[1, 2]")

    assert completed.returncode == 2
    assert "--vars must be a YAML mapping" in completed.stderr


def test_run_of_other_job_exits_2(server: Server) -> None:
    run_id = server.wait(server.launch("plain_job", "plain"))

    completed = server.cli("rerun", run_id, "--from-start")

    assert completed.returncode == 2
    assert "belongs to job plain_job, which is not a dbt job built by build_dbt_job" in (
        completed.stderr
    )
    assert (
        server.instance.get_runs_count(
            filters=dg.RunsFilter(tags={"dagster/parent_run_id": run_id})
        )
        == 0
    )


def test_retry_failed_while_running_exits_2(server: Server) -> None:
    run_id = server.launch()

    completed = server.cli("retry-failed", "jaffle_nightly")
    server.wait(run_id)

    assert completed.returncode == 2
    assert f"The latest run of jaffle_nightly ({run_id}) is still" in completed.stderr
    assert completed.stderr.rstrip().endswith("retry it when it has ended.")
