"""The retry sensor's decision for one failed run, on runs of a real instance."""

from __future__ import annotations

import time

import dagster as dg
import pytest

from dbt_rerun_dagster import build_dbt_retry_sensor
from dbt_rerun_dagster.errors import DbtJobDefinitionError
from dbt_rerun_dagster.orchestration.retry_sensor import decide_auto_retry
from tests.support import JobRunner, RunOutcome, SampleProject

TRANSIENT_MODEL = "select error('transient: connection to the warehouse was lost') as ok\n"


def decide(instance: dg.DagsterInstance, run_id: str, **options: float) -> str:
    run = instance.get_run_by_id(run_id)
    assert run is not None
    settings = {"failed_at": time.time(), "now": time.time(), "max_attempts": 3, "delay_seconds": 0}
    decision = decide_auto_retry(instance, run, **{**settings, **options})
    return f"{decision.action}: {decision.reason}"


@pytest.fixture
def transient_failure(instance: dg.DagsterInstance, project: SampleProject) -> RunOutcome:
    project.write("models/marts/flaky.sql", TRANSIENT_MODEL)
    return JobRunner(instance, "nightly", project, ["dbt seed", "dbt run"]).run()


def test_transient_failure_is_launched(
    instance: dg.DagsterInstance, transient_failure: RunOutcome
) -> None:
    assert decide(instance, transient_failure.run_id) == "launch: transient failure"


def test_delay_makes_sensor_wait(
    instance: dg.DagsterInstance, transient_failure: RunOutcome
) -> None:
    now = time.time()

    waiting = decide(
        instance, transient_failure.run_id, failed_at=now - 10, now=now, delay_seconds=60
    )
    due = decide(instance, transient_failure.run_id, failed_at=now - 61, now=now, delay_seconds=60)

    assert waiting == "wait: waiting 60 s after the failure"
    assert due == "launch: transient failure"


def test_rerun_by_person_is_not_repeated(
    instance: dg.DagsterInstance, project: SampleProject, transient_failure: RunOutcome
) -> None:
    runner = JobRunner(instance, "nightly", project, ["dbt seed", "dbt run"])
    runner.rerun_from_failure(transient_failure.run_id)

    assert decide(instance, transient_failure.run_id) == "ignore: it has been rerun already"


def test_dagster_run_retry_is_left_alone(
    instance: dg.DagsterInstance, transient_failure: RunOutcome
) -> None:
    instance.add_run_tags(transient_failure.run_id, {"dagster/will_retry": "true"})

    assert (
        decide(instance, transient_failure.run_id) == "ignore: Dagster's run retries will rerun it"
    )


def test_permanent_failure_is_skipped(instance: dg.DagsterInstance, project: SampleProject) -> None:
    project.break_models("fct_orders")
    failed = JobRunner(instance, "nightly", project, ["dbt seed", "dbt run"]).run()

    decision = decide(instance, failed.run_id)

    assert decision.startswith("skip: not retried automatically: model.jaffle_rerun.fct_orders")


def test_sensor_rejects_foreign_jobs() -> None:
    @dg.op
    def noop() -> None: ...

    @dg.job
    def plain_job() -> None:
        noop()

    with pytest.raises(DbtJobDefinitionError, match=r"is not a job built by build_dbt_job"):
        build_dbt_retry_sensor([plain_job])


def test_sensor_rejects_zero_attempts(project: SampleProject) -> None:
    from dbt_rerun_dagster import build_dbt_job

    job = build_dbt_job("nightly", project.path, ["dbt run"])

    with pytest.raises(DbtJobDefinitionError, match=r"max_attempts must be 1 or more, got 0"):
        build_dbt_retry_sensor([job], max_attempts=0)
