"""How steps end: build steps with failing tests, optional steps, empty selections."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from dbt_rerun_dagster.dbt.commands import parse_step
from dbt_rerun_dagster.dbt.plan import StepMode, plan_resume
from tests.support import (
    MODEL_NAMES,
    SEED_NAMES,
    JobRunner,
    SampleProject,
    built_nodes,
    step_metadata,
)

# A data test on fct_orders that fails until the test file is removed.
FAILING_TEST = "select order_id from {{ ref('fct_orders') }} limit 1\n"


def test_build_rerun_retries_failed_test_and_skipped(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    project.write("tests/orders_must_be_empty.sql", FAILING_TEST)
    runner = JobRunner(instance, "build", project, ["dbt build"])
    failed = runner.run()
    first = built_nodes(project.new_builds())
    failure = step_metadata(instance, failed.run_id, "step_1_dbt_build")

    project.remove("tests/orders_must_be_empty.sql")
    project.write("tests/orders_must_be_empty.sql", "select 1 as id where false\n")
    rerun = runner.rerun_from_failure(failed.run_id)
    second = built_nodes(project.new_builds())
    retried = step_metadata(instance, rerun.run_id, "step_1_dbt_build")

    assert not failed.success
    assert "test.jaffle_rerun.orders_must_be_empty (fail)" in failure["description"]
    assert "fct_orders" in first
    assert rerun.success
    assert retried["mode"] == "dbt retry"
    # dbt retry of a build reruns the failed test and what it blocked, not the model under test.
    assert "fct_orders" not in second
    assert {"fct_daily_revenue", "order_status_summary", "customer_lifetime_value"} <= set(second)
    assert max(second.values()) == 1


def test_failed_source_freshness_does_not_fail_run(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    project.write(
        "models/staging/_sources.yml",
        "version: 2\n"
        "sources:\n"
        "  - name: raw\n"
        "    schema: main\n"
        "    tables:\n"
        "      - name: raw_orders\n"
        "        loaded_at_field: cast(order_date as timestamp)\n"
        "        freshness:\n"
        "          error_after: {count: 1, period: day}\n",
    )
    runner = JobRunner(instance, "fresh", project, ["dbt seed", "dbt run"], source_freshness=True)

    outcome = runner.run()
    freshness = step_metadata(instance, outcome.run_id, "step_1_dbt_source_freshness")

    assert outcome.success
    assert outcome.step_status == {
        "step_1_dbt_source_freshness": "SUCCESS",
        "step_2_dbt_seed": "SUCCESS",
        "step_3_dbt_run": "SUCCESS",
    }
    assert freshness["exit code"] != 0
    assert set(built_nodes(project.new_builds())) == SEED_NAMES | MODEL_NAMES


def test_docs_generate_runs_last(instance: dg.DagsterInstance, project: SampleProject) -> None:
    runner = JobRunner(instance, "documented", project, ["dbt seed", "dbt run"], docs_generate=True)

    outcome = runner.run()
    docs = step_metadata(instance, outcome.run_id, "step_3_dbt_docs_generate")

    assert outcome.success
    assert docs["exit code"] == 0
    assert (Path(docs["artifact directory"]) / "catalog.json").is_file()


def test_empty_selection_is_not_failure(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    runner = JobRunner(instance, "empty_selection", project, ["dbt run --select tag:no_such_tag"])

    outcome = runner.run()

    assert outcome.success
    assert project.new_builds() == []


def test_separate_profiles_dir_and_target(
    instance: dg.DagsterInstance, project: SampleProject, tmp_path: Path
) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (project.path / "profiles.yml").rename(profiles / "profiles.yml")
    runner = JobRunner(
        instance,
        "ci_target",
        project,
        ["dbt seed", "dbt run"],
        profiles_dir=str(profiles),
        target="ci",
    )
    project.break_models("fct_orders")
    failed = runner.run()
    project.fix_models()

    rerun = runner.rerun_from_failure(failed.run_id)
    first = step_metadata(instance, failed.run_id, "step_2_dbt_run")
    retried = step_metadata(instance, rerun.run_id, "step_2_dbt_run")
    retry_results = json.loads(
        (Path(retried["artifact directory"]) / "run_results.json").read_text()
    )

    assert rerun.success
    assert "--target ci" in first["dbt command run"]
    assert f"--profiles-dir {profiles}" in retried["dbt command run"]
    assert retried["mode"] == "dbt retry"
    assert retry_results["args"]["target"] == "ci"


def test_succeeded_parent_has_nothing_to_retry(
    instance: dg.DagsterInstance, project: SampleProject, dagster_home: Path
) -> None:
    runner = JobRunner(instance, "nightly", project, ["dbt seed", "dbt run"])
    outcome = runner.run()
    step_dir = (
        dagster_home
        / "dbt_rerun_artifacts"
        / "nightly"
        / outcome.run_id
        / "step_2_dbt_run"
        / "attempt-0"
    )
    command = parse_step(1, "dbt run", project.path, project.path)

    plan = plan_resume(command, step_dir, "step_2_dbt_run of the parent run")

    assert plan.mode is StepMode.NOTHING_TO_RETRY
    assert plan.reason == "every node of step_2_dbt_run of the parent run succeeded (14 results)"


def test_failed_hook_rerun_runs_full_command(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    project.update_project_yml(
        **{"on-run-end": ["{% if env_var('HOOK_BROKEN', '') %}select error('hook'){% endif %}"]}
    )
    project._monkeypatch.setenv("HOOK_BROKEN", "1")
    runner = JobRunner(instance, "hooked", project, ["dbt seed", "dbt run"])
    failed = runner.run()
    project._monkeypatch.delenv("HOOK_BROKEN")

    rerun = runner.rerun_from_failure(failed.run_id)
    rerun_step = step_metadata(instance, rerun.run_id, "step_1_dbt_seed")  # hooks run in every step

    assert not failed.success
    assert rerun.success
    assert rerun_step["mode"] == "full command"
    assert rerun_step["mode reason"].startswith("only project hooks failed")


def test_impossible_retry_falls_back_to_full_command(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    runner = JobRunner(instance, "nightly", project, ["dbt seed", "dbt run"])
    project.break_models("fct_orders")
    failed = runner.run()
    project.fix_models()
    # customer_cohorts was skipped in the failed run; dbt retry cannot find it any more.
    project.remove("models/marts/customer_cohorts.sql")
    project.new_builds()

    rerun = runner.rerun_from_failure(failed.run_id)
    fallback = step_metadata(instance, rerun.run_id, "step_2_dbt_run")
    rebuilt = built_nodes(project.new_builds())

    assert rerun.success
    assert fallback["mode"] == "full command"
    assert fallback["mode reason"].startswith("dbt retry stopped before running any node")
    assert set(rebuilt) == MODEL_NAMES - {"customer_cohorts"}


def test_deps_and_debug_steps_run(instance: dg.DagsterInstance, project: SampleProject) -> None:
    project.write("local_package/dbt_project.yml", "name: local_package\nversion: '1.0'\n")
    project.write("packages.yml", "packages:\n  - local: local_package\n")
    runner = JobRunner(instance, "with_packages", project, ["dbt debug", "dbt seed"])

    outcome = runner.run()
    deps = step_metadata(instance, outcome.run_id, "step_1_dbt_deps")

    assert outcome.success, outcome.step_status
    assert outcome.step_status == {
        "step_1_dbt_deps": "SUCCESS",
        "step_2_dbt_debug": "SUCCESS",
        "step_3_dbt_seed": "SUCCESS",
    }
    assert "--target-path" not in deps["dbt command run"]
    assert (project.path / "dbt_packages" / "local_package").exists()


def test_changed_step_command_runs_in_full(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    before = JobRunner(instance, "nightly", project, ["dbt seed", "dbt run"])
    project.break_models("fct_orders")
    failed = before.run()
    project.fix_models()
    after = JobRunner(instance, "nightly", project, ["dbt seed", "dbt run --select staging"])
    project.new_builds()

    rerun = after.rerun_from_failure(failed.run_id)
    ran = step_metadata(instance, rerun.run_id, "step_2_dbt_run")

    assert rerun.success
    assert ran["mode"] == "full command"
    assert "the step's command changed" in ran["mode reason"]
    assert set(built_nodes(project.new_builds())) == {"stg_customers", "stg_orders", "stg_payments"}
