"""An executor wrapper that marks reruns before the first step starts."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster import DagsterEvent, Executor

from dbt_rerun_dagster.compat import EngineEventData, RetryMode
from dbt_rerun_dagster.orchestration.event_writer import close_writers
from dbt_rerun_dagster.orchestration.rerun import check_no_earlier_rerun, mark_rerun
from dbt_rerun_dagster.orchestration.settings import resolve_rerun
from dbt_rerun_dagster.orchestration.workers import worker_tags

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from dagster._core.execution.context.system import PlanOrchestrationContext
    from dagster._core.execution.plan.plan import ExecutionPlan


class RerunMarkingExecutor(Executor):
    """Delegates to another executor after tagging the run if it is a rerun.

    Run tags and the opening event are written here, before any step starts,
    so that sensors and the UI see them for the whole run. Steps check the
    tags again, for jobs whose executor was replaced in run config.
    """

    def __init__(
        self, inner: Executor, after_run: Callable[[dg.DagsterInstance], None] | None = None
    ) -> None:
        self._inner = inner
        self._after_run = after_run

    @property
    def retries(self) -> RetryMode:
        return self._inner.retries

    @property
    def step_dependency_config(self) -> Any:
        return self._inner.step_dependency_config

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[DagsterEvent]:
        run = plan_context.dagster_run
        plan_context.instance.add_run_tags(run.run_id, worker_tags())
        step_order = [step.key for step in execution_plan.get_all_steps_in_topo_order()]
        info = resolve_rerun(plan_context.instance, run, step_order)
        if info.mode is not None:
            mark_rerun(plan_context.instance, run, info)
            check_no_earlier_rerun(plan_context.instance, run)
            yield DagsterEvent.engine_event(
                plan_context, info.opening_message(), EngineEventData(metadata=info.tags)
            )

        try:
            yield from self._inner.execute(plan_context, execution_plan)
        finally:
            # Steps wait for their asset events, so the writer has nothing left to do.
            close_writers()
        if self._after_run is not None:
            try:
                self._after_run(plan_context.instance)
            except Exception:  # noqa: BLE001 - housekeeping must never fail a finished run
                logger.warning("Housekeeping after run %s failed", run.run_id, exc_info=True)


def with_rerun_marking(
    inner: dg.ExecutorDefinition, after_run: Callable[[dg.DagsterInstance], None] | None = None
) -> dg.ExecutorDefinition:
    """Wrap an executor definition so that its runs are marked as reruns up front.

    `after_run`, if given, runs once the inner executor has finished (artifact
    retention); its errors are logged, never raised.

    The wrapper keeps the inner executor's name and config schema, so run
    config written for the inner executor keeps working.
    """
    creation_fn = inner.executor_creation_fn
    if creation_fn is None:
        raise dg.DagsterInvariantViolationError(
            f"Executor {inner.name!r} has no creation function and cannot be wrapped"
        )

    def create(init_context: dg.InitExecutorContext) -> Executor:
        return RerunMarkingExecutor(creation_fn(init_context), after_run)

    return dg.ExecutorDefinition(
        name=inner.name,
        config_schema=inner.config_schema,
        requirements=inner.get_requirements,
        executor_creation_fn=create,
        description=inner.description,
    )
