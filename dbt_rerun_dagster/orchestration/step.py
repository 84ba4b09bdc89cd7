"""The body of a step op: plan the invocation, run dbt, report."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from dbt_rerun_dagster.artifacts import ArtifactStore, InvocationRecord, utc_now, write_record
from dbt_rerun_dagster.compat import StepEventStatus
from dbt_rerun_dagster.dbt.invoke import EXIT_INVOCATION_ERROR, invoke_dbt
from dbt_rerun_dagster.dbt.plan import StepMode, StepPlan, plan_full, plan_resume
from dbt_rerun_dagster.dbt.results import load_run_results
from dbt_rerun_dagster.errors import DbtStepFailure, RunResultsError
from dbt_rerun_dagster.orchestration.assets import REPORTING_SUBCOMMANDS, node_events
from dbt_rerun_dagster.orchestration.event_writer import (
    INTERRUPTED_FLUSH_SECONDS,
    AssetEventStream,
    step_identity,
    writer_for,
)
from dbt_rerun_dagster.orchestration.report import StepReport
from dbt_rerun_dagster.orchestration.rerun import RerunInfo, ancestor_step_outcomes, mark_rerun
from dbt_rerun_dagster.orchestration.resolution import mark_resolved
from dbt_rerun_dagster.orchestration.settings import (
    resolve_rerun,
    settings_of_run,
)
from dbt_rerun_dagster.orchestration.spec import DbtJobSpec, StepSpec
from dbt_rerun_dagster.tags import (
    DAGSTER_RETRY_ON_STEP_FAILURE_TAG,
    FAILURE_KIND_TAG,
    FAILURE_REASON_TAG,
    RERUN_MODE_FROM_FAILURE,
)


def run_step(
    context: dg.OpExecutionContext, spec: DbtJobSpec, step: StepSpec
) -> Iterator[dg.Output | dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """Run one step of a dbt job; yield its asset events and its (empty) output with metadata.

    Raises:
        DbtStepFailure: dbt exited non-zero or reported failed nodes, unless
            the step is non-blocking.
    """
    info = _ensure_rerun_marked(context, spec)
    store = spec.artifact_store(context.instance)
    plan = _plan_step(context, step, info, store)
    context.log.info("%s runs %s: %s", step.name, plan.mode.value, plan.reason)

    report = StepReport(step, plan)
    if plan.mode is not StepMode.NOTHING_TO_RETRY:
        report = _execute(context, spec, step, plan, store)
        if _retry_was_impossible(report) and not _is_transient_error(spec, report):
            fallback = plan_full(
                f"dbt retry stopped before running any node: {report.result.error}"
            )
            context.log.warning("%s falls back to its full command: %s", step.name, fallback.reason)
            report = _execute(context, spec, step, fallback, store)

    if report.results is not None and report.target_dir is not None and _reports_assets(spec, step):
        yield from _remaining_asset_events(context, spec, report)
    if report.failed and step.blocking:
        interrupted = report.result is not None and report.result.interrupted
        if context.retry_number >= spec.max_step_retries and not interrupted:
            _tag_final_failure(context, spec, report)
        raise DbtStepFailure(report.description(), report.metadata())
    if report.failed:
        context.log.error(
            "%s failed, but it does not fail the run:\n%s", step.name, report.description()
        )

    if step.name == spec.steps[-1].name and context.run.parent_run_id:
        for resolved_id in mark_resolved(context.instance, context.run):
            context.log.info("Run %s is resolved by this run", resolved_id)

    yield dg.Output(None, metadata=report.metadata())


def _remaining_asset_events(
    context: dg.OpExecutionContext, spec: DbtJobSpec, report: StepReport
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """Yield the asset events of the invocation that the writer process did not write."""
    assert report.results is not None and report.target_dir is not None
    remaining = node_events(
        report.results,
        report.target_dir,
        spec.translator_or_default,
        skip=report.streamed_nodes,
    )
    if report.streamed and remaining:
        context.log.warning(
            "The asset event writer process did not write the events of %d nodes "
            "(see the run's stderr); this step writes them now",
            len(remaining),
        )
    for event in remaining:
        yield event.to_dagster()


def _reports_assets(spec: DbtJobSpec, step: StepSpec) -> bool:
    return spec.asset_events and step.command.subcommand in REPORTING_SUBCOMMANDS


def _start_asset_stream(
    context: dg.OpExecutionContext, spec: DbtJobSpec, step: StepSpec, target_dir: Path
) -> AssetEventStream | None:
    """Start streaming asset events to the writer process, if the job and instance allow it."""
    if not (_reports_assets(spec, step) and spec.stream_asset_events):
        return None
    writer = writer_for(context.instance)
    if writer is None:
        if not context.instance.is_ephemeral:
            context.log.warning(
                "No asset event writer process (it exited or cannot start; see the run's "
                "stderr): this step writes its asset events after dbt finishes"
            )
        return None
    try:
        return AssetEventStream(writer, step_identity(context), target_dir, spec.translator)
    except Exception:  # noqa: BLE001 - the step then writes every event itself
        context.log.warning("Asset events are written after dbt finishes: cannot stream them")
        return None


def _tag_final_failure(
    context: dg.OpExecutionContext, spec: DbtJobSpec, report: StepReport
) -> None:
    """Tag the run with the failure's classification before the run fails.

    Dagster decides about run retries from the run's tags when the run fails,
    so a permanent failure also sets `dagster/retry_on_asset_or_op_failure`
    to "false": the daemon then leaves the run alone, like the retry sensor.
    """
    error = report.result.error if report.result else None
    classification = spec.failure_classifier.classify(report.results, error)
    context.instance.add_run_tags(
        context.run_id,
        {
            FAILURE_KIND_TAG: classification.kind.value,
            FAILURE_REASON_TAG: classification.reason,
            DAGSTER_RETRY_ON_STEP_FAILURE_TAG: "true" if classification.retryable else "false",
        },
    )
    context.log.info(
        "%s failure is %s: %s",
        context.op_handle.name,
        classification.kind.value,
        classification.reason,
    )


def _ensure_rerun_marked(context: dg.OpExecutionContext, spec: DbtJobSpec) -> RerunInfo:
    """Detect the rerun mode and tag the run if its executor has not already done so."""
    info = resolve_rerun(context.instance, context.run, spec.step_names)
    if mark_rerun(context.instance, context.run, info):
        context.log.info(info.opening_message())

    return info


def _plan_step(
    context: dg.OpExecutionContext, step: StepSpec, info: RerunInfo, store: ArtifactStore
) -> StepPlan:
    if context.retry_number > 0:
        previous_dir = store.latest_invocation_dir(context.run_id, step.name)
        return plan_resume(step.command, previous_dir, f"the previous attempt of {step.name}")
    if info.mode is None:
        return plan_full("fresh run")
    if info.mode != RERUN_MODE_FROM_FAILURE:
        return plan_full("rerun from start")

    outcome = ancestor_step_outcomes(context.instance, context.run).get(step.name)
    if outcome is None or outcome.status == StepEventStatus.SKIPPED:
        return plan_full(f"{step.name} did not run in the parent run")
    if outcome.status == StepEventStatus.SUCCESS:
        return plan_full(f"{step.name} succeeded in run {outcome.run_id} and was selected again")

    previous_dir = store.latest_invocation_dir(outcome.run_id, step.name)

    return plan_resume(step.command, previous_dir, f"{step.name} of run {outcome.run_id}")


def _execute(
    context: dg.OpExecutionContext,
    spec: DbtJobSpec,
    step: StepSpec,
    plan: StepPlan,
    store: ArtifactStore,
) -> StepReport:
    target_dir = store.new_invocation_dir(context.run_id, step.name, context.retry_number)
    store.seed_partial_parse(target_dir)
    settings = settings_of_run(context.run)
    args = spec.invocation_args(step.command, plan.dbt_args(step.command), target_dir, settings)
    record = InvocationRecord(
        run_id=context.run_id,
        step=step.name,
        attempt=context.retry_number,
        step_command=step.command.text,
        dbt_args=tuple(args),
        mode=plan.mode.value,
        reason=plan.reason,
        started_at=utc_now(),
    )
    write_record(target_dir, record)

    stream = _start_asset_stream(context, spec, step, target_dir)
    context.log.info("Starting: dbt %s", shlex.join(args))
    try:
        result = invoke_dbt(args, spec.project_dir, [stream.on_dbt_event] if stream else [])
    except BaseException:
        # Interrupted (run terminated): keep the events of the nodes dbt finished.
        if stream is not None:
            stream.finish(stall_seconds=INTERRUPTED_FLUSH_SECONDS)
        raise
    # NOTE: after an interrupt, dbt-duckdb cannot cancel running statements, so
    # nodes that dbt's threads finish after this point get no asset event.
    streamed = stream.finish() if stream is not None else set()
    context.log.info("Finished: dbt %s exited with code %d", args[0], result.exit_code)

    write_record(
        target_dir, record.finished(exit_code=result.exit_code, invocation_id=result.invocation_id)
    )
    store.save_partial_parse(target_dir)
    store.publish(target_dir)
    try:
        results = load_run_results(target_dir)
    except RunResultsError:
        results = None

    return StepReport(
        step,
        plan,
        result,
        target_dir,
        results,
        store.location_of(target_dir),
        streamed_nodes=frozenset(streamed),
        streamed=stream is not None,
    )


def _is_transient_error(spec: DbtJobSpec, report: StepReport) -> bool:
    # A locked or unreachable warehouse stops dbt retry too; the full command
    # would rebuild nodes that succeeded, so the step fails and can be retried.
    error = report.result.error if report.result else None
    return bool(error) and spec.failure_classifier.is_transient_message(error or "")


def _retry_was_impossible(report: StepReport) -> bool:
    return (
        report.plan.mode is StepMode.RETRY
        and report.result is not None
        and not report.result.interrupted
        and report.result.exit_code == EXIT_INVOCATION_ERROR
        and report.results is None
    )
