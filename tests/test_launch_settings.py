"""Run config under resources.dbt_rerun: mode, threads and vars of a run or a rerun."""

from __future__ import annotations

import dagster as dg

from tests.support import (
    FCT_ORDERS_DESCENDANTS,
    MODEL_NAMES,
    JobRunner,
    SampleProject,
    built_nodes,
    run_log_text,
    step_metadata,
)

STEPS = ["dbt seed", "dbt run --vars '{run_label: nightly, region: eu}'"]
RUN = "step_2_dbt_run"


def settings(**config: object) -> dict[str, object]:
    return {"resources": {"dbt_rerun": {"config": config}}}


def test_rerun_overrides_threads_and_vars(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    runner = JobRunner(instance, "nightly", project, STEPS)
    project.break_models("fct_orders")
    failed = runner.run()
    project.new_builds()
    project.fix_models()

    rerun = runner.rerun_from_failure(
        failed.run_id, settings(threads=1, vars="{run_label: rerun_label}")
    )
    rebuilt = project.new_builds()
    command = step_metadata(instance, rerun.run_id, RUN)["dbt command run"]

    assert rerun.success
    assert command.startswith("dbt retry ")
    assert "--threads 1" in command
    assert "region: eu" in command  # the step's own vars are kept
    assert {build.node for build in rebuilt} == FCT_ORDERS_DESCENDANTS | {"fct_orders"}
    assert {build.run_label for build in rebuilt} == {"rerun_label"}


def test_rerun_from_failure_rejects_other_target(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    runner = JobRunner(instance, "nightly", project, STEPS)
    project.break_models("fct_orders")
    failed = runner.run()
    project.new_builds()
    project.fix_models()

    rerun = runner.rerun_from_failure(failed.run_id, settings(target="ci"))
    messages = run_log_text(instance, rerun.run_id)

    assert rerun.status == dg.DagsterRunStatus.FAILURE
    assert rerun.step_status == {}
    assert "A rerun from failure cannot change the dbt target (run config asks for 'ci'" in messages
    assert project.new_builds() == []


def test_run_config_forces_from_start(instance: dg.DagsterInstance, project: SampleProject) -> None:
    runner = JobRunner(instance, "nightly", project, STEPS)
    project.break_models("fct_orders")
    failed = runner.run()
    project.new_builds()
    project.fix_models()

    rerun = runner.rerun_from_failure(failed.run_id, settings(rerun_mode="from_start"))
    rebuilt = built_nodes(project.new_builds())

    assert rerun.success
    assert rerun.step_status == {RUN: "SUCCESS"}
    assert rerun.tags["dbt_rerun/rerun_mode"] == "from_start"
    assert step_metadata(instance, rerun.run_id, RUN)["mode"] == "full command"
    assert set(rebuilt) == MODEL_NAMES


def test_fresh_run_uses_configured_target(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    runner = JobRunner(instance, "nightly", project, STEPS)

    outcome = runner.run(settings(target="ci"))

    assert outcome.success
    assert "--target ci" in step_metadata(instance, outcome.run_id, RUN)["dbt command run"]


def test_invalid_vars_fail_before_steps(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    runner = JobRunner(instance, "nightly", project, STEPS)

    outcome = runner.run(settings(vars="[not, a, mapping]"))
    messages = run_log_text(instance, outcome.run_id)

    assert outcome.status == dg.DagsterRunStatus.FAILURE
    assert outcome.step_status == {}
    assert "Run config vars must be a YAML mapping such as '{key: value}'" in messages
