"""Deciding what a step runs: its full command, `dbt retry`, or nothing."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dbt_rerun_dagster.artifacts import read_record
from dbt_rerun_dagster.dbt.commands import DbtCommand
from dbt_rerun_dagster.dbt.results import RunResults, load_run_results
from dbt_rerun_dagster.errors import RunResultsError


class StepMode(str, enum.Enum):
    """Kind of dbt invocation a step makes; the value is shown in run metadata."""

    FULL = "full command"
    RETRY = "dbt retry"
    NOTHING_TO_RETRY = "nothing to retry"


@dataclass(frozen=True)
class StepPlan:
    """The decision for one step invocation, with the reason shown to the user."""

    mode: StepMode
    reason: str
    state_dir: Path | None = None
    previous_results: RunResults | None = None

    def dbt_args(self, command: DbtCommand) -> tuple[str, ...]:
        """Return the dbt arguments for this plan, without the per-invocation options."""
        if self.mode is StepMode.RETRY and self.state_dir is not None:
            return ("retry", "--state", str(self.state_dir), *command.strictness_args())

        return command.args


def plan_full(reason: str) -> StepPlan:
    return StepPlan(StepMode.FULL, reason)


def plan_resume(command: DbtCommand, previous_dir: Path | None, source: str) -> StepPlan:
    """Plan how a step resumes from an earlier invocation's artifacts.

    `source` names that invocation in messages, for example
    "step_2_dbt_run of run 1a2b3c4d". Falls back to the full command whenever
    `dbt retry` could not do the right thing.
    """
    if not command.supports_retry:
        return plan_full(f"`dbt {command.subcommand}` does not support dbt retry")
    if previous_dir is None:
        return plan_full(f"no artifacts of {source} were found")

    try:
        results = load_run_results(previous_dir)
    except RunResultsError as error:
        return plan_full(
            f"{source} left no readable run_results.json, so dbt stopped before running "
            f"any node (for example at parse time) or its artifacts are damaged: {error}"
        )

    stale_reason = _stale_reason(command, previous_dir, results, source)
    if stale_reason:
        return plan_full(stale_reason)
    if not results.nodes:
        return plan_full(f"{source} recorded no node results")

    strict = bool(command.strictness_args())
    to_retry = results.nodes_to_retry(strict=strict)
    if not to_retry and results.failed_nodes:
        # Only project hooks failed (on-run-start/end): dbt retry never reruns
        # them for commands other than run-operation, so it would pass
        # without running what failed.
        failed = ", ".join(node.unique_id for node in results.failed_nodes)
        return plan_full(
            f"only project hooks failed in {source} ({failed}); dbt retry would skip them"
        )
    if not to_retry:
        return StepPlan(
            StepMode.NOTHING_TO_RETRY,
            f"every node of {source} succeeded ({len(results.nodes)} results)",
            state_dir=previous_dir,
            previous_results=results,
        )

    return StepPlan(
        StepMode.RETRY,
        f"{len(to_retry)} of {len(results.nodes)} nodes of {source} failed or were skipped",
        state_dir=previous_dir,
        previous_results=results,
    )


def _stale_reason(
    command: DbtCommand, previous_dir: Path, results: RunResults, source: str
) -> str | None:
    """Return why `run_results.json` may not belong to the recorded invocation, if it may not."""
    record = read_record(previous_dir)
    if record is None:
        return f"the invocation record of {source} is missing, so its results cannot be trusted"
    if record.step_command != command.text:
        return (
            f"the step's command changed since {source} ran `{record.step_command}`, "
            "so its results do not describe the current command"
        )
    if record.invocation_id and results.invocation_id != record.invocation_id:
        return (
            f"run_results.json of {source} belongs to dbt invocation {results.invocation_id}, "
            f"not to the recorded invocation {record.invocation_id}"
        )
    if not record.invocation_id and results.generated_at is not None:
        if results.generated_at < datetime.fromisoformat(record.started_at):
            return (
                f"run_results.json of {source} is older than the invocation "
                "that should have written it"
            )

    return None
