"""Deciding whether a run is a rerun, and in which mode, from what it executes.

Dagster offers several ways to re-execute a run and they do not tag runs
alike (as of Dagster 1.13): the webserver and GraphQL set
`dagster/is_resume_retry` for "from failure", `execute_job` with
`ReexecutionOptions` sets no tag at all, and run retries copy the parent's
tags. The mode is therefore derived from the run itself: a rerun that
executes a step which succeeded in its parent run is a rerun from start,
any other rerun resumes from failure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import dagster as dg

from dbt_rerun_dagster.compat import StepEventStatus
from dbt_rerun_dagster.errors import DbtRerunError
from dbt_rerun_dagster.tags import (
    AUTO_RETRY_SKIPPED_TAG,
    DAGSTER_PARENT_RUN_ID_TAG,
    DAGSTER_RESUME_RETRY_TAG,
    DAGSTER_RETRY_ON_STEP_FAILURE_TAG,
    DAGSTER_ROOT_RUN_ID_TAG,
    FAILURE_KIND_TAG,
    FAILURE_REASON_TAG,
    RERUN_MODE_FROM_FAILURE,
    RERUN_MODE_FROM_START,
    RERUN_MODE_TAG,
    RESOLVED_BY_TAG,
    RESUMED_FROM_STEP_TAG,
)


@dataclass(frozen=True)
class StepOutcome:
    """Outcome of a step in the nearest ancestor run that executed it."""

    status: StepEventStatus | None
    run_id: str


@dataclass(frozen=True)
class RerunInfo:
    """Relation of a run to its parent; `mode` is None for a fresh run."""

    mode: str | None
    parent_run_id: str | None = None
    root_run_id: str | None = None
    resumed_from_step: str | None = None

    @property
    def tags(self) -> dict[str, str]:
        """Return the tags that mark this rerun, Dagster's lineage tags included.

        `execute_job` with `ReexecutionOptions` sets no `dagster/` lineage tag
        (Dagster 1.13), so they are added here for every entry point alike.
        """
        if self.mode is None or self.resumed_from_step is None:
            return {}
        tags = {RERUN_MODE_TAG: self.mode, RESUMED_FROM_STEP_TAG: self.resumed_from_step}
        if self.parent_run_id:
            tags[DAGSTER_PARENT_RUN_ID_TAG] = self.parent_run_id
        if self.root_run_id:
            tags[DAGSTER_ROOT_RUN_ID_TAG] = self.root_run_id
        if self.mode == RERUN_MODE_FROM_FAILURE:
            tags[DAGSTER_RESUME_RETRY_TAG] = "true"

        return tags

    def opening_message(self) -> str:
        if self.mode == RERUN_MODE_FROM_FAILURE:
            return (
                f"This run resumes execution from the last failed step of run "
                f"{self.parent_run_id}: it starts at {self.resumed_from_step}, which runs "
                "`dbt retry` on that run's artifacts when it can."
            )

        return (
            f"This run reruns run {self.parent_run_id} from the start: every step runs its "
            "original dbt command again."
        )


FRESH_RUN = RerunInfo(mode=None)

# Tags that describe how a run ended; a rerun that copied them from its
# parent gets them blanked when it starts.
INHERITED_OUTCOME_TAGS = (
    FAILURE_KIND_TAG,
    FAILURE_REASON_TAG,
    AUTO_RETRY_SKIPPED_TAG,
    RESOLVED_BY_TAG,
)


def ancestor_step_outcomes(
    instance: dg.DagsterInstance, run: dg.DagsterRun
) -> dict[str, StepOutcome]:
    """Map each step key to its outcome in the nearest ancestor run that executed it.

    A from-failure rerun executes only some steps, so the outcome of a step it
    skipped lies further up the chain (parent, grandparent, ... root).
    """
    outcomes: dict[str, StepOutcome] = {}
    ancestor_id = run.parent_run_id
    while ancestor_id:
        for stats in instance.get_run_step_stats(ancestor_id):
            outcomes.setdefault(stats.step_key, StepOutcome(stats.status, ancestor_id))
        ancestor = instance.get_run_by_id(ancestor_id)
        ancestor_id = ancestor.parent_run_id if ancestor else None

    return outcomes


def detect_rerun(
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    step_order: Sequence[str],
    requested_mode: str = "auto",
) -> RerunInfo:
    """Work out the rerun mode of `run` from the steps it executes.

    Args:
        step_order: The job's step keys in execution order.
        requested_mode: "from_failure" or "from_start" from the run config
            overrides the detected mode of a rerun; "auto" keeps it.
    """
    if not run.parent_run_id:
        return FRESH_RUN

    executed = run.step_keys_to_execute
    executed_in_order = [step for step in step_order if executed is None or step in executed]
    resumed_from = executed_in_order[0] if executed_in_order else None
    common = {
        "parent_run_id": run.parent_run_id,
        "root_run_id": run.root_run_id,
        "resumed_from_step": resumed_from,
    }
    if requested_mode in (RERUN_MODE_FROM_FAILURE, RERUN_MODE_FROM_START):
        return RerunInfo(mode=requested_mode, **common)
    # A rerun of every step carries no parent state: the webserver's and the
    # daemon's ALL_STEPS strategy leave `step_keys_to_execute` empty, and
    # `execute_job` with `ReexecutionOptions(parent_run_id)` lists every step
    # but builds its plan without the parent's state (Dagster 1.13).
    # From-failure and step-selection reruns always carry it.
    if executed is None or not _uses_parent_state(instance, run):
        return RerunInfo(mode=RERUN_MODE_FROM_START, **common)

    outcomes = ancestor_step_outcomes(instance, run)
    reruns_a_success = any(
        outcomes.get(step) is not None and outcomes[step].status == StepEventStatus.SUCCESS
        for step in executed
    )

    return RerunInfo(
        mode=RERUN_MODE_FROM_START if reruns_a_success else RERUN_MODE_FROM_FAILURE, **common
    )


class ConcurrentRerunError(DbtRerunError, dg.DagsterInvariantViolationError):
    """Another rerun of the same parent run is already under way."""


def check_no_earlier_rerun(instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    """Stop a rerun when an earlier rerun of the same parent has not finished.

    A person and the retry sensor (or Dagster's run retries) can rerun the same
    failed run at the same moment. Both would build the same nodes into one
    warehouse at once, so the rerun created later stops before running dbt.

    Raises:
        ConcurrentRerunError: naming the earlier rerun.
    """
    if not run.parent_run_id:
        return
    siblings = instance.get_run_records(
        filters=dg.RunsFilter(tags={DAGSTER_PARENT_RUN_ID_TAG: run.parent_run_id})
    )
    own = next((record for record in siblings if record.dagster_run.run_id == run.run_id), None)
    own_key = (own.create_timestamp.timestamp(), run.run_id) if own else (float("inf"), run.run_id)
    for record in siblings:
        other = record.dagster_run
        if other.run_id == run.run_id or other.is_finished:
            continue
        if (record.create_timestamp.timestamp(), other.run_id) < own_key:
            raise ConcurrentRerunError(
                f"Run {other.run_id} is already rerunning run {run.parent_run_id}, so this rerun "
                "stops before running dbt: two reruns would build the same nodes at once. "
                f"Wait for {other.run_id} to end, then rerun it if it failed."
            )


def _uses_parent_state(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    if not run.execution_plan_snapshot_id:
        return True
    snapshot = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    known_state = snapshot.initial_known_state

    return known_state is not None and known_state.parent_state is not None


def mark_rerun(instance: dg.DagsterInstance, run: dg.DagsterRun, info: RerunInfo) -> bool:
    """Write the rerun tags onto the run unless it already has them; return True if written."""
    wanted = info.tags
    current = instance.get_run_by_id(run.run_id)
    current_tags = current.tags if current else run.tags
    if not wanted or all(current_tags.get(key) == value for key, value in wanted.items()):
        return False

    instance.add_run_tags(run.run_id, {**wanted, **_reset_inherited_outcome_tags(current_tags)})

    return True


def _reset_inherited_outcome_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Blank the failure tags a rerun copied from its parent (Dagster cannot delete tags).

    Re-executions copy the parent's tags by default, and a rerun must not look
    as if it had already failed or been passed over by automatic retries.
    """
    reset = {key: "" for key in INHERITED_OUTCOME_TAGS if tags.get(key)}
    # Written as "false" by a permanent failure of the parent, not by the user.
    if tags.get(FAILURE_KIND_TAG) == "permanent" and tags.get(DAGSTER_RETRY_ON_STEP_FAILURE_TAG):
        reset[DAGSTER_RETRY_ON_STEP_FAILURE_TAG] = "true"

    return reset
