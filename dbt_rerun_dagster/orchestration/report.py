"""Step reports: output metadata, the Markdown summary and the failure description."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from dbt_rerun_dagster.dbt.invoke import DbtInvocationResult
from dbt_rerun_dagster.dbt.plan import StepPlan
from dbt_rerun_dagster.dbt.results import NodeResult, RunResults
from dbt_rerun_dagster.orchestration.spec import StepSpec

# Failure messages can be long (compiled SQL in a database error); the full
# text stays in run_results.json.
MAX_MESSAGE_CHARS = 2000
# Rows of the timings table; every node's timing stays in run_results.json.
MAX_TIMING_ROWS = 50
_TIMINGS_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("node", "string"),
        dg.TableColumn("status", "string"),
        dg.TableColumn("seconds", "float"),
    ]
)


@dataclass(frozen=True)
class StepReport:
    """The outcome of one step invocation, as shown in Dagster."""

    step: StepSpec
    plan: StepPlan
    result: DbtInvocationResult | None = None
    target_dir: Path | None = None
    results: RunResults | None = None
    # Where the artifacts are kept: target_dir, or its URL on remote storage.
    artifact_location: str | None = None
    # Nodes the asset event writer handled while dbt ran (written, or needing no event).
    streamed_nodes: frozenset[str] = frozenset()
    # Whether the invocation streamed its asset events to the writer process.
    streamed: bool = False

    @property
    def failed(self) -> bool:
        if self.result is None:
            return False

        return self.result.exit_code != 0 or bool(self.results and self.results.failed_nodes)

    @property
    def invoked_command(self) -> str:
        """The dbt command this invocation ran, without the options every invocation gets."""
        return "dbt " + shlex.join(self.plan.dbt_args(self.step.command))

    @property
    def failed_nodes(self) -> tuple[NodeResult, ...]:
        return self.results.failed_nodes if self.results else ()

    def metadata(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "summary": dg.MetadataValue.md(self.summary_markdown()),
            "step command": dg.MetadataValue.text(self.step.command.text),
            "mode": dg.MetadataValue.text(self.plan.mode.value),
            "mode reason": dg.MetadataValue.text(self.plan.reason),
        }
        if self.plan.state_dir is not None:
            metadata["retried artifacts"] = dg.MetadataValue.path(str(self.plan.state_dir))
        if self.result is None:
            return metadata

        metadata["dbt command run"] = dg.MetadataValue.text(self.result.command_line)
        metadata["exit code"] = dg.MetadataValue.int(self.result.exit_code)
        if self.result.invocation_id:
            metadata["dbt invocation id"] = dg.MetadataValue.text(self.result.invocation_id)
        if self.artifact_location is not None:
            metadata["artifact directory"] = dg.MetadataValue.path(self.artifact_location)
        if self.results is not None:
            metadata["node counts"] = dg.MetadataValue.json(self.results.status_counts())
            metadata["nodes run"] = dg.MetadataValue.int(len(self.results.nodes))
        if self.failed_nodes:
            metadata["failed nodes"] = dg.MetadataValue.md(self._failed_nodes_markdown())
        if self.results is not None and self.results.nodes:
            metadata["node timings"] = self._timings_table()

        return metadata

    def summary_markdown(self) -> str:
        """Describe the invocation in a few Markdown lines for the Dagster UI."""
        lines = [f"**{self.plan.mode.value}** for `{self.step.command.text}`: {self.plan.reason}."]
        if self.result is None:
            return "\n\n".join(lines)
        outcome = "failed" if self.failed else "succeeded"
        lines.append(f"`{self.invoked_command}` {outcome} with exit code {self.result.exit_code}.")
        if self.results is not None:
            counts = ", ".join(
                f"{count} {status}" for status, count in self.results.status_counts().items()
            )
            lines.append(f"Nodes: {counts or 'none'}.")
        for node in self.failed_nodes:
            lines.append(f"- `{node.unique_id}` ({node.status})")
        if self.artifact_location is not None:
            lines.append(f"Artifacts: `{self.artifact_location}`")

        return "\n\n".join(lines)

    def _timings_table(self) -> dg.MetadataValue:
        assert self.results is not None
        slowest = sorted(self.results.nodes, key=lambda node: node.execution_time, reverse=True)
        records = [
            dg.TableRecord(
                {"node": node.unique_id, "status": node.status, "seconds": node.execution_time}
            )
            for node in slowest[:MAX_TIMING_ROWS]
        ]

        return dg.MetadataValue.table(records=records, schema=_TIMINGS_SCHEMA)

    def description(self) -> str:
        """Describe the failure: command, exit code, failed nodes and where artifacts are."""
        if self.result is None:
            return f"Step {self.step.name} failed before running dbt."
        lines = [
            f"Step {self.step.name} failed: `{self.invoked_command}` "
            f"exited with code {self.result.exit_code}."
        ]
        if self.result.error:
            lines.append(f"dbt error: {_shorten(self.result.error)}")
        for node in self.failed_nodes:
            lines.append(f"- {node.unique_id} ({node.status}): {_shorten(node.message or '')}")
        if self.result.interrupted and self.results is None:
            lines.append(
                "dbt wrote no run_results.json; the nodes it finished before the interruption "
                "are in its dbt.log."
            )
        elif self.result.exit_code != 0 and self.results is None:
            lines.append("dbt wrote no run_results.json, so it stopped before running any node.")
        if self.artifact_location is not None:
            lines.append(f"Artifacts: {self.artifact_location}")

        return "\n".join(lines)

    def _failed_nodes_markdown(self) -> str:
        rows = ["| node | status | message |", "| --- | --- | --- |"]
        for node in self.failed_nodes:
            message = _shorten(node.message or "").replace("|", "\\|").replace("\n", " ")
            rows.append(f"| {node.unique_id} | {node.status} | {message} |")

        return "\n".join(rows)


def _shorten(text: str) -> str:
    text = text.strip()
    if len(text) <= MAX_MESSAGE_CHARS:
        return text

    return text[:MAX_MESSAGE_CHARS] + " [...]"
