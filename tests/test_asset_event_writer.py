"""Asset events written by the writer process while dbt runs, and what happens when it cannot."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
from dagster._core.definitions.dependency import NodeHandle
from dagster._core.execution.plan.handle import StepHandle
from dagster._serdes import serialize_value
from dagster_dbt import DagsterDbtTranslator, DbtProject

from dbt_rerun_dagster import build_dbt_job
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


def test_streamed_events_match_step_events(
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


def test_asset_events_precede_step_success(
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


def test_ephemeral_instance_step_events(project: SampleProject) -> None:
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


def test_dead_writer_confirms_written_events(instance: dg.DagsterInstance) -> None:
    run_id = "0" * 8 + "-writer-death"
    writer = AssetEventWriter(serialize_value(instance.get_ref()))
    context_id = writer.register_step(_identity(run_id))
    first = [writer.submit(context_id, _model_event(index), time.time()) for index in range(5)]
    responses_before = writer.wait(first)

    writer._process.kill()
    writer._process.wait()
    late = [writer.submit(context_id, _model_event(index), time.time()) for index in range(5, 8)]
    responses_after = writer.wait([seq for seq in late if seq is not None])
    writer.close()

    written = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    assert responses_before == {seq: "ok" for seq in first}
    assert responses_after == {}
    assert sorted(record.dagster_event.asset_key.path[0] for record in written) == [
        f"m_{index}" for index in range(5)
    ]


def test_writer_reports_failed_events(instance: dg.DagsterInstance) -> None:
    run_id = "0" * 8 + "-writer-refusal"
    writer = AssetEventWriter(serialize_value(instance.get_ref()))
    context_id = writer.register_step(_identity(run_id))
    unknown_step = context_id + 1  # never registered
    seqs = [
        writer.submit(unknown_step, _model_event(0), time.time()),
        writer.submit(context_id, _model_event(1), time.time()),
    ]
    responses = writer.wait(seqs)
    writer.close()

    written = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    assert responses[seqs[0]] == f"KeyError: {unknown_step}"
    assert responses[seqs[1]] == "ok"
    assert [record.dagster_event.asset_key.path for record in written] == [["m_1"]]


def test_asset_events_off_writes_none(instance: dg.DagsterInstance, project: SampleProject) -> None:
    outcome = JobRunner(
        instance, "quiet", project, ["dbt seed", "dbt run"], asset_events=False
    ).run()

    assert outcome.success
    assert asset_records(instance, outcome.run_id) == []


def test_stuck_writer_is_stopped(instance: dg.DagsterInstance) -> None:
    run_id = "0" * 8 + "-writer-stuck"
    writer = AssetEventWriter(serialize_value(instance.get_ref()))
    context_id = writer.register_step(_identity(run_id))
    ready = writer.wait([writer.submit(context_id, _model_event(0), time.time())])
    os.kill(writer.pid, signal.SIGSTOP)

    # Far more than a pipe holds: submitting must not block on a writer that stopped reading.
    submitter = threading.Thread(
        target=lambda: [
            writer.submit(context_id, _model_event(index), time.time()) for index in range(1, 5001)
        ]
    )
    submitter.start()
    submitter.join(timeout=30)
    started = time.monotonic()
    responses = writer.wait(range(1, 5001), stall_seconds=1.0)
    waited = time.monotonic() - started
    writer.close()

    assert list(ready.values()) == ["ok"]
    assert not submitter.is_alive()
    assert responses == {}
    assert not writer.alive()
    assert waited < 30, "a stuck writer must not hold the step until the default stall limit"


# An event log storage that only the step's process can import: the writer
# process cannot load the instance and exits at once, as it would for any
# instance it cannot open.
PARENT_ONLY_STORAGE = """
from dagster._core.storage.event_log import SqliteEventLogStorage


class ParentOnlyEventLogStorage(SqliteEventLogStorage):
    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(inst_data=inst_data, **config_value)
"""


def test_writer_unable_to_open_instance(
    tmp_path: Path,
    dagster_home: Path,
    project: SampleProject,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module_dir = tmp_path / "parent_only"
    module_dir.mkdir()
    (module_dir / "parent_only_storage.py").write_text(PARENT_ONLY_STORAGE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(module_dir))
    with (dagster_home / "dagster.yaml").open("a", encoding="utf-8") as config:
        config.write(
            "event_log_storage:\n"
            "  module: parent_only_storage\n"
            "  class: ParentOnlyEventLogStorage\n"
            "  config:\n"
            f"    base_dir: {dagster_home / 'history' / 'runs'}\n"
        )

    with dg.DagsterInstance.get() as instance:
        outcome = JobRunner(instance, "no_writer", project, NIGHTLY_STEPS).run()
        records = asset_records(instance, outcome.run_id)
        pids = step_pids(instance, outcome.run_id)
        warnings = [record.user_message for record in instance.all_logs(outcome.run_id)]

    materialized = Counter(
        record.dagster_event.event_specific_data.materialization.asset_key.to_user_string()
        for record in records
        if record.dagster_event.event_type_value == "ASSET_MATERIALIZATION"
    )
    assert outcome.success
    assert materialized == Counter(SEED_NAMES | MODEL_NAMES)
    assert len(records) == 3 + 13 + 20
    assert {record.dagster_event.pid for record in records} <= pids
    assert any("No asset event writer process" in message for message in warnings)


# A dbt Python model runs in the step's process (dbt runs in-process), so it
# can kill the step's writer process in the middle of `dbt run`.
KILL_WRITER_MODEL = """
import os
import signal


def _parent_pid(pid):
    with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def model(dbt, session):
    dbt.config(materialized="table")
    # Run after most models, so the writer has written some events of this step.
    dbt.ref("fct_orders")
    dbt.ref("dim_customers")
    killed = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            parent = _parent_pid(entry)
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read()
        except OSError:
            continue
        if parent == os.getpid() and b"event_writer" in command:
            os.kill(int(entry), signal.SIGKILL)
            killed += 1
    return session.sql(f"select {killed} as killed_writers")
"""


def test_killed_writer_loses_no_event(instance: dg.DagsterInstance, project: SampleProject) -> None:
    project.write("models/marts/kill_writer.py", KILL_WRITER_MODEL)
    project.write(
        "models/marts/after_kill.sql", "select killed_writers from {{ ref('kill_writer') }}"
    )
    runner = JobRunner(instance, "killed_writer", project, ["dbt seed", "dbt run"])

    outcome = runner.run()

    records = asset_records(instance, outcome.run_id)
    run_step_pids = {
        record.dagster_event.pid
        for record in records
        if record.dagster_event.step_key == "step_2_dbt_run"
    }
    keys = Counter(
        record.dagster_event.event_specific_data.materialization.asset_key.to_user_string()
        for record in records
    )
    with duckdb.connect(str(project.database)) as connection:
        killed = connection.execute("select killed_writers from main.after_kill").fetchone()
    assert outcome.success
    assert killed == (1,)
    assert set(keys) == SEED_NAMES | MODEL_NAMES | {"kill_writer", "after_kill"}
    # At most the event the writer was storing when it died is written twice.
    assert sum(keys.values()) - len(keys) <= 1
    # Events before the kill came from the writer, the rest from the step.
    assert len(run_step_pids) == 2
    assert step_pids(instance, outcome.run_id) & run_step_pids
    assert any(
        "did not write the events" in record.user_message
        for record in instance.all_logs(outcome.run_id)
        if record.step_key == "step_2_dbt_run"
    )


class PrefixedTranslator(DagsterDbtTranslator):
    """Puts every dbt asset under the key prefix "warehouse"."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        return super().get_asset_key(dbt_resource_props).with_prefix("warehouse")


def make_translated_job(name: str, project_dir: str) -> dg.JobDefinition:
    return build_dbt_job(
        name,
        DbtProject(project_dir),
        ["dbt seed", "dbt run", "dbt test"],
        dagster_dbt_translator=PrefixedTranslator(),
    )


def test_custom_translator_keys_are_streamed(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    job = dg.build_reconstructable_job(
        "tests.test_asset_event_writer",
        "make_translated_job",
        reconstructable_kwargs={"name": "translated", "project_dir": str(project.path)},
    )

    with dg.execute_job(job, instance=instance) as result:
        records = asset_records(instance, result.run_id)
        pids = step_pids(instance, result.run_id)

    materialized = {
        record.dagster_event.event_specific_data.materialization.asset_key.to_user_string()
        for record in records
        if record.dagster_event.event_type_value == "ASSET_MATERIALIZATION"
    }
    checked = {
        record.dagster_event.event_specific_data.asset_key.to_user_string()
        for record in records
        if record.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert result.success
    assert materialized == {f"warehouse/{name}" for name in SEED_NAMES | MODEL_NAMES}
    assert "warehouse/fct_orders" in checked
    assert all(key.startswith("warehouse/") for key in checked)
    assert {record.dagster_event.pid for record in records}.isdisjoint(pids)


RUN_WORKER_IMPORTS = """
import sys
import dagster as dg
from tests.jobs import reconstructable_job

job = reconstructable_job("imports", sys.argv[1], ["dbt seed", "dbt run", "dbt test"])
with dg.DagsterInstance.get() as instance:
    with dg.execute_job(job, instance=instance) as result:
        events = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        print(result.success, len(events), "dagster_dbt" in sys.modules)
"""


def test_run_worker_skips_dagster_dbt(dagster_home: Path, project: SampleProject) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", RUN_WORKER_IMPORTS, str(project.path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=300,
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.split()[-3:] == ["True", "16", "False"]


@pytest.mark.parametrize("stream", [True, False])
def test_compile_and_docs_report_no_assets(
    instance: dg.DagsterInstance, project: SampleProject, stream: bool
) -> None:
    # dbt reports compiled models as "success" although it built nothing.
    outcome = JobRunner(
        instance,
        "compile_only",
        project,
        ["dbt seed", "dbt compile"],
        docs_generate=True,
        stream_asset_events=stream,
    ).run()

    records = asset_records(instance, outcome.run_id)
    steps = Counter(record.dagster_event.step_key for record in records)
    assert outcome.success
    assert steps == {"step_1_dbt_seed": 3}
