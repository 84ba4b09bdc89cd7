"""What a run shows: summaries, timings, asset events and whether failures were resolved."""

from __future__ import annotations

import dagster as dg

from dbt_rerun_dagster import chain_resolution, unresolved_failures
from tests.support import (
    FCT_ORDERS_DESCENDANTS,
    MODEL_NAMES,
    SEED_NAMES,
    JobRunner,
    SampleProject,
    step_metadata,
)

NIGHTLY_STEPS = ["dbt seed", "dbt run", "dbt test"]


def materialized_keys(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    return [
        record.dagster_event.asset_key.to_user_string()
        for record in records
        if record.dagster_event and record.dagster_event.asset_key
    ]


def check_evaluations(instance: dg.DagsterInstance, run_id: str) -> list[dg.AssetCheckEvaluation]:
    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    return [record.dagster_event.event_specific_data for record in records if record.dagster_event]


def test_step_metadata_has_summary_and_timings(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    outcome = JobRunner(instance, "nightly", project, ["dbt seed", "dbt run"]).run()

    metadata = step_metadata(instance, outcome.run_id, "step_2_dbt_run")
    timings = metadata["node timings"].records
    seconds = [record.data["seconds"] for record in timings]

    assert metadata["summary"].startswith("**full command** for `dbt run`: fresh run.")
    assert "Nodes: 14 success." in metadata["summary"]
    assert len(timings) == 14
    assert seconds == sorted(seconds, reverse=True)


def test_built_nodes_materialize_assets(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    runner = JobRunner(instance, "nightly", project, NIGHTLY_STEPS)
    project.break_models("fct_orders")
    failed = runner.run()
    project.fix_models()

    rerun = runner.rerun_from_failure(failed.run_id)
    first = materialized_keys(instance, failed.run_id)
    second = materialized_keys(instance, rerun.run_id)

    assert sorted(first) == sorted(
        SEED_NAMES | (MODEL_NAMES - FCT_ORDERS_DESCENDANTS - {"fct_orders"})
    )
    assert sorted(second) == sorted(FCT_ORDERS_DESCENDANTS | {"fct_orders"})


def test_data_tests_become_check_evaluations(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    outcome = JobRunner(instance, "nightly", project, NIGHTLY_STEPS).run()

    evaluations = check_evaluations(instance, outcome.run_id)
    by_name = {evaluation.check_name: evaluation for evaluation in evaluations}

    assert len(evaluations) == 20
    assert all(evaluation.passed for evaluation in evaluations)
    assert by_name["unique_fct_orders_order_id"].asset_key == dg.AssetKey(["fct_orders"])
    assert by_name["warn_orders_without_payment"].severity == dg.AssetCheckSeverity.WARN


def test_successful_rerun_resolves_chain(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    runner = JobRunner(instance, "nightly", project, ["dbt seed", "dbt run"])
    project.break_models("fct_orders", "dim_customers")
    first = runner.run()
    project.break_models("dim_customers")
    second = runner.rerun_from_failure(first.run_id)

    unresolved_before = unresolved_failures(instance, "nightly")
    project.fix_models()
    third = runner.rerun_from_failure(second.run_id)
    resolution = chain_resolution(instance, first.run_id)

    assert [chain.root_run_id for chain in unresolved_before] == [first.run_id]
    assert resolution.run_ids == (first.run_id, second.run_id, third.run_id)
    assert resolution.statuses == ("FAILURE", "FAILURE", "SUCCESS")
    assert resolution.resolved_by == third.run_id
    assert unresolved_failures(instance, "nightly") == []
    for run_id in (first.run_id, second.run_id):
        assert instance.get_run_by_id(run_id).tags["dbt_rerun/resolved_by"] == third.run_id
    assert "dbt_rerun/resolved_by" not in instance.get_run_by_id(third.run_id).tags
