"""Asset events written by the writer process while dbt runs, and what happens when it cannot."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import dagster as dg
import pytest
from dagster._core.definitions.dependency import NodeHandle
from dagster._core.execution.plan.handle import StepHandle
from dagster._serdes import serialize_value

from dbt_rerun_dagster.orchestration.assets import MATERIALIZATION, NodeEvent
from dbt_rerun_dagster.orchestration.event_writer import AssetEventWriter
from tests.support import (
    FCT_ORDERS_DESCENDANTS,
    MODEL_NAMES,
    SEED_NAMES,
    JobRunner,
    SampleProject,
    built_nodes,
)

NIGHTLY_STEPS = ["dbt seed", "dbt run", "dbt test"]
ASSET_EVENT_TYPES = {
    dg.DagsterEventType.ASSET_MATERIALIZATION.value,
    dg.DagsterEventType.ASSET_CHECK_EVALUATION.value,
}


def asset_records(instance: dg.DagsterInstance, run_id: str) -> list[Any]:
    return [
        record
        for record in instance.all_logs(run_id)
        if record.dagster_event and record.dagster_event.event_type_value in ASSET_EVENT_TYPES
    ]


def comparable(record: Any) -> tuple[Any, ...]:
    """An asset event as a user sees it, without timings, ids and process ids."""
    event = record.dagster_event
    data = event.event_specific_data
    if event.event_type_value == dg.DagsterEventType.ASSET_CHECK_EVALUATION.value:
        key = data.asset_key
        details: tuple[Any, ...] = (data.check_name, data.passed, data.severity)
        metadata = data.metadata
    else:
        key = data.materialization.asset_key
        details = (data.materialization.description,)
        metadata = data.materialization.metadata
    shown_metadata = tuple(
        sorted((key, value.value) for key, value in metadata.items() if key != "execution time (s)")
    )

    return (
        event.step_key,
        event.event_type_value,
        key.to_user_string(),
        details,
        shown_metadata,
        record.user_message,
        event.message,
        record.level,
    )


def step_pids(instance: dg.DagsterInstance, run_id: str) -> set[int]:
    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
    return {record.dagster_event.pid for record in records}


def run_failed_then_rerun(
    instance: dg.DagsterInstance, project: SampleProject, name: str, **options: Any
) -> tuple[str, str]:
    runner = JobRunner(instance, name, project, NIGHTLY_STEPS, **options)
    project.break_models("fct_orders")
    failed = runner.run()
    project.fix_models()
    rerun = runner.rerun_from_failure(failed.run_id)
    assert not failed.success
    assert rerun.success

    return failed.run_id, rerun.run_id


def test_streamed_events_equal_the_events_the_step_writes(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    streamed_runs = run_failed_then_rerun(instance, project, "streamed")
    streamed_builds = built_nodes(project.new_builds())
    in_step_runs = run_failed_then_rerun(instance, project, "in_step", stream_asset_events=False)
    in_step_builds = built_nodes(project.new_builds())

    for streamed_id, in_step_id in zip(streamed_runs, in_step_runs, strict=True):
        streamed = asset_records(instance, streamed_id)
        in_step = asset_records(instance, in_step_id)
        assert Counter(map(comparable, streamed)) == Counter(map(comparable, in_step))
        # The writer process wrote every streamed event; the step wrote the others.
        assert {record.dagster_event.pid for record in streamed}.isdisjoint(
            step_pids(instance, streamed_id)
        )
        assert {record.dagster_event.pid for record in in_step} <= step_pids(instance, in_step_id)
    assert streamed_builds == in_step_builds

    failed_keys = [
        record.dagster_event.asset_key.to_user_string()
        for record in asset_records(instance, streamed_runs[0])
        if record.dagster_event.event_type_value == "ASSET_MATERIALIZATION"
    ]
    expected = SEED_NAMES | (MODEL_NAMES - FCT_ORDERS_DESCENDANTS - {"fct_orders"})
    assert sorted(failed_keys) == sorted(expected)


def test_every_asset_event_precedes_its_step_success(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    outcome = JobRunner(instance, "ordered", project, NIGHTLY_STEPS).run()

    records = instance.all_logs(outcome.run_id)
    success_position = {
        record.dagster_event.step_key: position
        for position, record in enumerate(records)
        if record.dagster_event and record.dagster_event.event_type_value == "STEP_SUCCESS"
    }
    asset_positions = [
        (record.dagster_event.step_key, position)
        for position, record in enumerate(records)
        if record.dagster_event and record.dagster_event.event_type_value in ASSET_EVENT_TYPES
    ]

    assert outcome.success
    assert len(asset_positions) == 3 + 13 + 20
    assert all(position < success_position[step] for step, position in asset_positions)


def test_ephemeral_instance_gets_events_from_the_step(project: SampleProject) -> None:
    from tests.jobs import make_job

    job = make_job("ephemeral", str(project.path), ["dbt seed", "dbt run"])

    result = job.execute_in_process(raise_on_error=False)

    materialized = [
        event.asset_key.to_user_string()
        for event in result.all_events
        if event.event_type_value == "ASSET_MATERIALIZATION"
    ]
    assert result.success
    assert sorted(materialized) == sorted(SEED_NAMES | MODEL_NAMES)


def _identity(run_id: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "job_name": "writer_test",
        "step_handle": serialize_value(StepHandle(NodeHandle("step_1_dbt_run", None))),
        "node_handle": serialize_value(NodeHandle("step_1_dbt_run", None)),
        "step_kind": "COMPUTE",
        "event_tags": {},
    }


def _model_event(index: int) -> NodeEvent:
    return NodeEvent(
        unique_id=f"model.writer_test.m_{index}",
        kind=MATERIALIZATION,
        asset_key=(f"m_{index}",),
        resource_type="model",
        status="success",
        execution_time=0.1,
    )


def test_writer_that_dies_answers_only_what_it_wrote(instance: dg.DagsterInstance) -> None:
    run_id = "0" * 8 + "-writer-death"
    writer = AssetEventWriter(serialize_value(instance.get_ref()))
    context_id = writer.register_step(_identity(run_id))
    first = [writer.submit(context_id, _model_event(index), time.time()) for index in range(5)]
    answers_before = writer.wait(first)

    writer._process.kill()
    writer._process.wait()
    late = [writer.submit(context_id, _model_event(index), time.time()) for index in range(5, 8)]
    answers_after = writer.wait([seq for seq in late if seq is not None])
    writer.close()

    written = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    assert answers_before == {seq: None for seq in first}
    assert answers_after == {}
    assert sorted(record.dagster_event.asset_key.path[0] for record in written) == [
        f"m_{index}" for index in range(5)
    ]


def test_writer_reports_events_it_cannot_write(instance: dg.DagsterInstance) -> None:
    run_id = "0" * 8 + "-writer-refusal"
    writer = AssetEventWriter(serialize_value(instance.get_ref()))
    context_id = writer.register_step(_identity(run_id))
    unknown_step = context_id + 1  # never registered
    seqs = [
        writer.submit(unknown_step, _model_event(0), time.time()),
        writer.submit(context_id, _model_event(1), time.time()),
    ]
    answers = writer.wait(seqs)
    writer.close()

    written = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    assert answers[seqs[0]] == f"KeyError: {unknown_step}"
    assert answers[seqs[1]] is None
    assert [record.dagster_event.asset_key.path for record in written] == [["m_1"]]


@pytest.mark.parametrize("stream", [True, False])
def test_asset_events_off_writes_none(
    instance: dg.DagsterInstance, project: SampleProject, stream: bool
) -> None:
    outcome = JobRunner(
        instance,
        "quiet",
        project,
        ["dbt seed", "dbt run"],
        asset_events=False,
        stream_asset_events=stream,
    ).run()

    assert outcome.success
    assert asset_records(instance, outcome.run_id) == []
