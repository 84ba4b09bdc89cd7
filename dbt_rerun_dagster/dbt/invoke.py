"""Running one dbt command.

dbt runs in the run worker's own process through dbt's programmatic entry
point `dbtRunner`, not as a `dbt` subprocess per step. Measured on the sample
project (2 cores, dbt-core 1.11.16): `seed`, `run` and `test` as three CLI
processes took 7.1 s, the same three through `dbtRunner` in one process 4.6 s,
because Python start-up and dbt's imports (about 1 s each) happen once.
dagster-dbt's `DbtCliResource` starts a process per command and adds a
`dbt --version` check and an adapter set-up in the calling process, which
made a three-step job 1.27x slower than the plain CLI here.

Consequences of running in-process: steps of one run must not run in
parallel in one process (the job's default executor runs them in sequence),
and dbt runs with the project directory as working directory, as
`DbtCliResource` does, so relative paths in profiles resolve the same way.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbt_rerun_dagster.compat import preserved_dbt_retry_statuses, working_directory
from dbt_rerun_dagster.dbt.results import strip_ansi

# dbt's exit codes (dbt/cli/main.py): 1 for failed nodes, 2 for an error that
# stopped the invocation (parse error, bad profile, missing state).
EXIT_SUCCESS = 0
EXIT_NODE_FAILURES = 1
EXIT_INVOCATION_ERROR = 2


@dataclass(frozen=True)
class DbtInvocationResult:
    """Outcome of one dbt invocation."""

    args: tuple[str, ...]
    exit_code: int
    invocation_id: str | None
    error: str | None
    # dbt stopped on KeyboardInterrupt: the run was terminated (SIGINT).
    interrupted: bool = False

    @property
    def command_line(self) -> str:
        return "dbt " + shlex.join(self.args)


def invoke_dbt(
    args: Sequence[str],
    project_dir: Path,
    callbacks: Sequence[Callable[[Any], None]] = (),
) -> DbtInvocationResult:
    """Run `dbt <args>` in this process and return its outcome.

    `callbacks` receive every event dbt fires, in dbt's threads.
    Never raises for a dbt failure: the exit code and error message describe it.
    """
    from dbt.cli.main import dbtRunner

    invocation_ids: list[str] = []

    def remember_invocation_id(event: Any) -> None:
        if not invocation_ids and getattr(event.info, "invocation_id", None):
            invocation_ids.append(event.info.invocation_id)

    runner = dbtRunner(callbacks=[remember_invocation_id, *callbacks])
    with working_directory(project_dir), preserved_dbt_retry_statuses():
        outcome = runner.invoke(list(args))

    interrupted = _was_interrupted(outcome.exception)
    if outcome.success:
        exit_code, error = EXIT_SUCCESS, None
    elif interrupted:
        exit_code, error = EXIT_INVOCATION_ERROR, "dbt was interrupted (the run was terminated)"
    elif outcome.exception is not None:
        exit_code, error = EXIT_INVOCATION_ERROR, strip_ansi(str(outcome.exception)).strip()
    else:
        exit_code, error = EXIT_NODE_FAILURES, None

    return DbtInvocationResult(
        args=tuple(args),
        exit_code=exit_code,
        invocation_id=invocation_ids[0] if invocation_ids else None,
        error=error,
        interrupted=interrupted,
    )


# The exception Dagster raises in a run worker that is being terminated (SIGINT).
_INTERRUPTS = frozenset({"DagsterExecutionInterruptedError"})


def _was_interrupted(error: BaseException | None) -> bool:
    """Return whether dbt stopped on an interrupt, possibly raised again as another error.

    On an interrupt dbt cancels its open connections; dbt-duckdb 1.11 then
    raises "connection is busy", whose context is the interrupt.
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt) or type(error).__name__ in _INTERRUPTS:
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__

    return False
