"""Errors raised by the plugin.

Definition-time problems (bad step commands, missing project files, an old
dbt-core) raise `DbtJobDefinitionError` when the code location loads. A failed
dbt step raises `DbtStepFailure`, a Dagster `Failure`, so the UI shows its
description and metadata instead of a stack trace.
"""

from __future__ import annotations

from typing import Any

import dagster as dg


class DbtRerunError(Exception):
    """Base class for errors raised by dbt-rerun-dagster."""


class DbtJobDefinitionError(DbtRerunError, ValueError):
    """A dbt job cannot be built from the given arguments."""


class InvalidStepError(DbtJobDefinitionError):
    """A step is not a valid dbt command."""

    def __init__(self, position: int, command: str, problem: str) -> None:
        self.position = position
        self.command = command
        self.problem = problem
        super().__init__(f"Step {position} ({command!r}) is invalid: {problem}")


class RunResultsError(DbtRerunError):
    """A `run_results.json` file is missing or cannot be read."""


class DbtStepFailure(dg.Failure, DbtRerunError):
    """A dbt step failed: dbt exited non-zero or reported failed nodes."""

    def __init__(self, description: str, metadata: dict[str, Any]) -> None:
        super().__init__(description=description, metadata=metadata)
