"""A sensor that reruns failed dbt job runs from failure, when a retry can help.

Dagster's own run retries (`run_retries` in dagster.yaml) retry every failed
run of a job the same way. This sensor decides run by run: it skips failures
classified as permanent (a failing data test, a SQL error), counts attempts
per root run, can wait before retrying, and tags every run it passes over
with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

import dagster as dg

from dbt_rerun_dagster.errors import DbtJobDefinitionError, DbtRerunError
from dbt_rerun_dagster.graphql import default_graphql_url, launch_reexecution
from dbt_rerun_dagster.orchestration.workers import fail_dead_runs
from dbt_rerun_dagster.tags import (
    AUTO_RETRY_SKIPPED_TAG,
    AUTO_RETRY_STRATEGY_TAG,
    AUTO_RETRY_TAG,
    DAGSTER_PARENT_RUN_ID_TAG,
    DAGSTER_ROOT_RUN_ID_TAG,
    DAGSTER_WILL_RETRY_TAG,
    FAILURE_KIND_TAG,
    FAILURE_REASON_TAG,
    MAX_AUTO_RETRIES_TAG,
    RETRY_ATTEMPT_TAG,
)

_STRATEGIES = {"from_failure": "FROM_FAILURE", "all_steps": "ALL_STEPS"}


@dataclass(frozen=True)
class RetryDecision:
    """The sensor's action for one failed run, with the reason.

    `launch` reruns it, `skip` tags it with the reason and never looks at it
    again, `wait` looks again at a later tick, `ignore` leaves it untouched.
    """

    action: Literal["launch", "skip", "wait", "ignore"]
    reason: str
    attempt: int = 0
    strategy: str = "FROM_FAILURE"


def decide_auto_retry(
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    *,
    failed_at: float,
    now: float,
    max_attempts: int,
    delay_seconds: float,
) -> RetryDecision:
    """Decide whether the retry sensor reruns a failed run."""
    tags = run.tags
    if tags.get(DAGSTER_WILL_RETRY_TAG) == "true":
        return RetryDecision("ignore", "Dagster's run retries will rerun it")
    if tags.get(AUTO_RETRY_SKIPPED_TAG):
        return RetryDecision("ignore", f"already passed over: {tags[AUTO_RETRY_SKIPPED_TAG]}")
    if _has_rerun(instance, run.run_id):
        return RetryDecision("ignore", "it has been rerun already")
    if tags.get(FAILURE_KIND_TAG) == "permanent":
        reason = tags.get(FAILURE_REASON_TAG) or "the failure is not transient"
        return RetryDecision("skip", f"not retried automatically: {reason}")

    maximum = _max_attempts(tags, max_attempts)
    done = _auto_retry_count(instance, run.root_run_id or run.run_id)
    if done >= maximum:
        return RetryDecision("skip", f"the maximum of {maximum} automatic retries is reached")
    if now - failed_at < delay_seconds:
        return RetryDecision("wait", f"waiting {delay_seconds:.0f} s after the failure")

    strategy = _STRATEGIES.get(tags.get(AUTO_RETRY_STRATEGY_TAG, ""), "FROM_FAILURE")

    return RetryDecision("launch", "transient failure", attempt=done + 1, strategy=strategy)


def _max_attempts(tags: Mapping[str, str], default: int) -> int:
    value = tags.get(MAX_AUTO_RETRIES_TAG)
    if value is None:
        return default
    try:
        return max(int(value), 0)
    except ValueError:
        return default


def _has_rerun(instance: dg.DagsterInstance, run_id: str) -> bool:
    children = instance.get_run_ids(
        filters=dg.RunsFilter(tags={DAGSTER_PARENT_RUN_ID_TAG: run_id}), limit=1
    )
    return bool(children)


def _auto_retry_count(instance: dg.DagsterInstance, root_run_id: str) -> int:
    filters = dg.RunsFilter(tags={DAGSTER_ROOT_RUN_ID_TAG: root_run_id, AUTO_RETRY_TAG: "true"})
    return instance.get_runs_count(filters=filters)


def build_dbt_retry_sensor(
    jobs: Sequence[dg.JobDefinition],
    *,
    name: str = "dbt_auto_retry",
    max_attempts: int = 3,
    delay_seconds: float = 0,
    graphql_url: str | None = None,
    minimum_interval_seconds: int = 30,
    lookback_hours: float = 24,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """Build a sensor that reruns failed runs of `jobs` from failure.

    Each failed run is rerun at most once, through the webserver's GraphQL
    `launchRunReexecution`, the only supported way to launch a re-execution.
    A run is rerun only if its failure is transient (see `FailureClassifier`)
    and its run group has had fewer than `max_attempts` automatic retries. Reruns carry
    `dbt_rerun/auto_retry=true` and `dbt_rerun/retry_attempt=N`. Runs that
    Dagster's own run retries will handle (`dagster/will_retry=true`) are
    left alone.

    Args:
        jobs: Jobs built by `build_dbt_job`.
        name: The sensor name.
        max_attempts: Automatic retries per root run. A run tag
            `dbt_rerun/max_auto_retries` overrides it for that run.
        delay_seconds: Wait at least this long after a failure before rerunning.
        graphql_url: The webserver's GraphQL endpoint. Default:
            $DBT_RERUN_GRAPHQL_URL, else http://127.0.0.1:3000/graphql.
        minimum_interval_seconds: Time between sensor evaluations.
        lookback_hours: Only runs that failed within this window are considered.
        default_status: Whether the sensor runs without being switched on in the UI.
    """
    job_names = _validated_job_names(jobs)
    if max_attempts < 1:
        raise DbtJobDefinitionError(f"max_attempts must be 1 or more, got {max_attempts!r}")
    if delay_seconds < 0:
        raise DbtJobDefinitionError(f"delay_seconds must be 0 or more, got {delay_seconds!r}")

    @dg.sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=f"Reruns failed runs of {', '.join(job_names)} from failure "
        f"(transient failures only, at most {max_attempts} times per root run).",
    )
    def dbt_auto_retry_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        now = time.time()
        url = graphql_url or default_graphql_url()
        for run_id in fail_dead_runs(context.instance, job_names):
            context.log.warning("Run %s lost its run worker; reported it as failed", run_id)
        launched = 0
        for record in _recent_failures(context.instance, job_names, now - lookback_hours * 3600):
            decision = decide_auto_retry(
                context.instance,
                record.dagster_run,
                failed_at=record.update_timestamp.timestamp(),
                now=now,
                max_attempts=max_attempts,
                delay_seconds=delay_seconds,
            )
            launched += _apply(context, url, record.dagster_run, decision)

        return dg.SkipReason(f"launched {launched} automatic rerun(s)")

    return dbt_auto_retry_sensor


def _validated_job_names(jobs: Sequence[dg.JobDefinition]) -> list[str]:
    from dbt_rerun_dagster.orchestration.job import DBT_JOB_METADATA_KEY

    if not jobs:
        raise DbtJobDefinitionError("build_dbt_retry_sensor needs at least one job")
    for job in jobs:
        if not isinstance(job, dg.JobDefinition) or DBT_JOB_METADATA_KEY not in job.metadata:
            raise DbtJobDefinitionError(
                f"{job!r} is not a job built by build_dbt_job; the retry sensor needs one"
            )

    return [job.name for job in jobs]


def _recent_failures(
    instance: dg.DagsterInstance, job_names: list[str], since: float
) -> list[dg.RunRecord]:
    records: list[dg.RunRecord] = []
    for job_name in job_names:
        filters = dg.RunsFilter(
            job_name=job_name,
            statuses=[dg.DagsterRunStatus.FAILURE],
            updated_after=datetime.fromtimestamp(since, tz=timezone.utc),
        )
        records.extend(instance.get_run_records(filters=filters, limit=100))

    return records


def _apply(
    context: dg.SensorEvaluationContext, url: str, run: dg.DagsterRun, decision: RetryDecision
) -> int:
    if decision.action == "skip":
        context.instance.add_run_tags(run.run_id, {AUTO_RETRY_SKIPPED_TAG: decision.reason})
        context.log.info("Run %s is %s", run.run_id, decision.reason)
        return 0
    if decision.action != "launch":
        return 0

    tags = {AUTO_RETRY_TAG: "true", RETRY_ATTEMPT_TAG: str(decision.attempt)}
    try:
        new_run_id = launch_reexecution(url, run.run_id, decision.strategy, tags)
    except DbtRerunError as error:
        context.log.error("Could not rerun run %s: %s", run.run_id, error)
        return 0
    context.log.info(
        "Run %s failed with a transient error; launched rerun %s (attempt %d, %s)",
        run.run_id,
        new_run_id,
        decision.attempt,
        decision.strategy,
    )

    return 1
