"""Reruns from failure and from start through Dagster's Python re-execution API.

Every test runs real dbt on a private DuckDB database and counts rebuilt
nodes in the dbt_audit table that the sample project's hooks fill.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from dbt_rerun_dagster import RERUN_MODE_TAG, RESUMED_FROM_STEP_TAG
from tests.support import (
    FCT_ORDERS_DESCENDANTS,
    MODEL_NAMES,
    SEED_NAMES,
    JobRunner,
    SampleProject,
    built_nodes,
    engine_messages,
    step_metadata,
    tree_digest,
)

NIGHTLY_STEPS = ["dbt seed", "dbt run", "dbt test"]
SEED, RUN, TEST = "step_1_dbt_seed", "step_2_dbt_run", "step_3_dbt_test"


def test_from_failure_rebuilds_failed_and_skipped(
    instance: dg.DagsterInstance, project: SampleProject, dagster_home: Path
) -> None:
    runner = JobRunner(instance, "nightly", project, NIGHTLY_STEPS)
    project.break_models("fct_orders")

    failed = runner.run()
    first_builds = built_nodes(project.new_builds())

    assert failed.status == dg.DagsterRunStatus.FAILURE
    assert failed.step_status == {SEED: "SUCCESS", RUN: "FAILURE"}  # the test step never starts
    assert set(first_builds) == SEED_NAMES | (MODEL_NAMES - FCT_ORDERS_DESCENDANTS - {"fct_orders"})
    assert failed.rerun_tags() == {}

    parent_step_dir = dagster_home / "dbt_rerun_artifacts" / "nightly" / failed.run_id / RUN
    parent_digest = tree_digest(parent_step_dir)
    project.fix_models()
    rerun = runner.rerun_from_failure(failed.run_id)
    rebuilt = built_nodes(project.new_builds())

    assert rerun.success
    assert rerun.step_status == {RUN: "SUCCESS", TEST: "SUCCESS"}
    assert rebuilt == {name: 1 for name in FCT_ORDERS_DESCENDANTS | {"fct_orders"}}
    assert rerun.rerun_tags() == {RERUN_MODE_TAG: "from_failure", RESUMED_FROM_STEP_TAG: RUN}
    assert rerun.parent_run_id == failed.run_id
    assert tree_digest(parent_step_dir) == parent_digest


def test_from_failure_records_mode_and_counts(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    runner = JobRunner(instance, "nightly", project, NIGHTLY_STEPS)
    project.break_models("fct_orders")
    failed = runner.run()
    project.fix_models()

    rerun = runner.rerun_from_failure(failed.run_id)
    retried = step_metadata(instance, rerun.run_id, RUN)
    tested = step_metadata(instance, rerun.run_id, TEST)

    assert retried["mode"] == "dbt retry"
    assert retried["dbt command run"].startswith("dbt retry --state ")
    assert failed.run_id in retried["retried artifacts"]
    assert retried["node counts"] == {"success": 7}  # 6 models and the on-run-start hook
    assert tested["mode"] == "full command"
    assert tested["dbt command run"].startswith("dbt test ")
    assert any(
        "resumes execution from the last failed step" in message
        for message in engine_messages(instance, rerun.run_id)
    )


def test_failed_step_reports_nodes_and_artifacts(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    runner = JobRunner(instance, "nightly", project, NIGHTLY_STEPS)
    project.break_models("fct_orders")

    failed = runner.run()
    failure = step_metadata(instance, failed.run_id, RUN)

    description = failure["description"]
    assert "Step step_2_dbt_run failed: `dbt run` exited with code 1." in description
    assert "model.jaffle_rerun.fct_orders (error)" in description
    assert "fct_orders is listed in DBT_DEMO_BROKEN_MODELS" in description
    assert f"Artifacts: {failure['artifact directory']}" in description
    assert "\x1b[" not in description
    assert failure["exit code"] == 1
    assert failure["node counts"] == {"error": 1, "skipped": 5, "success": 8}
    assert failure["mode"] == "full command"
    assert (Path(failure["artifact directory"]) / "run_results.json").is_file()


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
    for step in (SEED, RUN, TEST):
        assert step_metadata(instance, rerun.run_id, step)["mode"] == "full command"


def test_selecting_a_succeeded_step_reruns_from_start(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    runner = JobRunner(instance, "nightly", project, NIGHTLY_STEPS)
    project.break_models("fct_orders")
    failed = runner.run()
    project.new_builds()
    project.fix_models()

    rerun = runner.rerun_steps(failed.run_id, [SEED, RUN])
    rebuilt = built_nodes(project.new_builds())

    assert rerun.rerun_tags() == {RERUN_MODE_TAG: "from_start", RESUMED_FROM_STEP_TAG: SEED}
    assert rebuilt == {name: 1 for name in SEED_NAMES | MODEL_NAMES}


def test_chain_of_three_runs_retries_from_second(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    runner = JobRunner(instance, "nightly", project, NIGHTLY_STEPS)
    project.break_models("fct_orders", "dim_customers")
    first = runner.run()
    project.new_builds()

    project.break_models("dim_customers")
    second = runner.rerun_from_failure(first.run_id)
    second_builds = built_nodes(project.new_builds())

    project.fix_models()
    third = runner.rerun_from_failure(second.run_id)
    third_builds = built_nodes(project.new_builds())

    assert not first.success
    assert not second.success
    assert third.success
    assert set(second_builds) == {
        "fct_orders",
        "fct_daily_revenue",
        "monthly_revenue",
        "order_status_summary",
    }
    assert third_builds == {"dim_customers": 1, "customer_lifetime_value": 1, "customer_cohorts": 1}
    assert third.parent_run_id == second.run_id
    assert third.root_run_id == first.run_id
    assert second.run_id in step_metadata(instance, third.run_id, RUN)["retried artifacts"]


def test_parse_error_rerun_runs_full_commands(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    runner = JobRunner(instance, "nightly", project, NIGHTLY_STEPS)
    project.write("models/marts/broken_jinja.sql", "select {{ ref('fct_orders' }}\n")

    failed = runner.run()
    failure = step_metadata(instance, failed.run_id, SEED)

    assert failed.step_status == {SEED: "FAILURE"}
    assert failure["exit code"] == 2
    assert "no run_results.json" in failure["description"]
    assert project.new_builds() == []

    project.remove("models/marts/broken_jinja.sql")
    rerun = runner.rerun_from_failure(failed.run_id)
    seeded = step_metadata(instance, rerun.run_id, SEED)

    assert rerun.success
    assert rerun.rerun_tags() == {RERUN_MODE_TAG: "from_failure", RESUMED_FROM_STEP_TAG: SEED}
    assert seeded["mode"] == "full command"
    assert "no readable run_results.json" in seeded["mode reason"]
    assert built_nodes(project.new_builds()) == {name: 1 for name in SEED_NAMES | MODEL_NAMES}


def test_warn_error_rerun_without_fix_fails_again(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    project.write(
        "tests/warn_always.sql",
        "{{ config(severity='warn') }}\nselect order_id from {{ ref('fct_orders') }} limit 1\n",
    )
    runner = JobRunner(
        instance, "strict", project, ["dbt seed", "dbt run", "dbt test --warn-error"]
    )
    failed = runner.run()

    rerun = runner.rerun_from_failure(failed.run_id)
    retried = step_metadata(instance, rerun.run_id, TEST)

    assert failed.step_status[TEST] == "FAILURE"
    assert not rerun.success
    assert rerun.step_status == {TEST: "FAILURE"}
    assert retried["mode"] == "dbt retry"
    assert "--warn-error" in retried["dbt command run"].split()
    assert "test.jaffle_rerun.warn_always" in retried["description"]


def test_retry_keeps_full_refresh_and_vars(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    steps = ["dbt seed", "dbt run --full-refresh --vars '{run_label: nightly}'"]
    runner = JobRunner(instance, "refresh", project, steps)
    project.break_models("fct_orders")
    failed = runner.run()
    project.new_builds()
    project.fix_models()

    rerun = runner.rerun_from_failure(failed.run_id)
    retried = project.new_builds()

    assert rerun.success
    assert {build.node for build in retried} == FCT_ORDERS_DESCENDANTS | {"fct_orders"}
    assert all(build.full_refresh for build in retried)
    assert all(build.run_label == "nightly" for build in retried)


def test_succeeded_run_operation_is_not_rerun(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    steps = [
        "dbt seed",
        "dbt run-operation record_operation --args '{label: nightly_marker}'",
        "dbt run",
    ]
    runner = JobRunner(instance, "with_operation", project, steps)
    project.break_models("fct_orders")
    failed = runner.run()
    first = built_nodes(project.new_builds())
    project.fix_models()

    rerun = runner.rerun_from_failure(failed.run_id)
    second = built_nodes(project.new_builds())

    assert first["nightly_marker"] == 1
    assert rerun.success
    assert rerun.step_status == {"step_3_dbt_run": "SUCCESS"}
    assert "nightly_marker" not in second
    assert set(second) == FCT_ORDERS_DESCENDANTS | {"fct_orders"}


def test_new_run_after_failure_is_fresh(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    runner = JobRunner(instance, "nightly", project, NIGHTLY_STEPS)
    project.break_models("fct_orders")
    runner.run()
    project.new_builds()
    project.fix_models()

    fresh = runner.run()

    assert fresh.success
    assert fresh.parent_run_id is None
    assert fresh.rerun_tags() == {}
    assert built_nodes(project.new_builds()) == {name: 1 for name in SEED_NAMES | MODEL_NAMES}
    assert step_metadata(instance, fresh.run_id, RUN)["mode reason"] == "fresh run"
    assert not any(
        "resumes execution" in message for message in engine_messages(instance, fresh.run_id)
    )


def test_all_steps_after_first_step_failure(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    runner = JobRunner(instance, "nightly", project, NIGHTLY_STEPS)
    project.write("models/marts/broken_jinja.sql", "select {{ ref('fct_orders' }}\n")
    failed = runner.run()
    project.remove("models/marts/broken_jinja.sql")

    # Every step re-executes and the first one failed: only the missing
    # parent state distinguishes it from a rerun from failure.
    rerun = runner.rerun_all_steps(failed.run_id)

    assert failed.step_status == {SEED: "FAILURE"}
    assert rerun.success
    assert rerun.rerun_tags() == {RERUN_MODE_TAG: "from_start", RESUMED_FROM_STEP_TAG: SEED}
    assert step_metadata(instance, rerun.run_id, SEED)["mode reason"] == "rerun from start"
