"""Everything that depends on the installed dbt-core or Dagster version."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

# Dagster internals the plugin depends on, private as of Dagster 1.13: the
# step status of a run's step stats, an executor's retry mode, and the
# engine event an executor writes to a run's event log.
from dagster._core.events import EngineEventData
from dagster._core.execution.retries import RetryMode
from dagster._core.execution.stats import StepEventStatus
from packaging.version import Version

from dbt_rerun_dagster.errors import DbtJobDefinitionError

MIN_DBT_VERSION: Final = Version("1.6.0")

# dbt subcommands that `dbt retry` can replay, from `TASK_DICT` in
# dbt/task/retry.py (unchanged from dbt-core 1.6 to 1.11).
RETRY_SUPPORTED_COMMANDS: Final = frozenset(
    {
        "build",
        "compile",
        "clone",
        "docs generate",
        "seed",
        "snapshot",
        "test",
        "run",
        "run-operation",
    }
)


def installed_dbt_version() -> Version:
    """Return the version of the installed dbt-core package."""
    from importlib.metadata import version

    return Version(version("dbt-core"))


def check_dbt_version(found: Version | None = None) -> Version:
    """Raise `DbtJobDefinitionError` unless dbt-core is 1.6 or newer.

    `dbt retry` appeared in dbt-core 1.6, and the plugin depends on it.
    """
    found = found or installed_dbt_version()
    if found < MIN_DBT_VERSION:
        raise DbtJobDefinitionError(
            f"dbt-core {found} is installed, but dbt-rerun-dagster needs dbt-core "
            f">={MIN_DBT_VERSION} because reruns from failure use `dbt retry`. "
            "Upgrade it with: pip install 'dbt-core>=1.6,<1.12'"
        )

    return found


@contextlib.contextmanager
def preserved_dbt_retry_statuses() -> Iterator[None]:
    """Undo dbt's in-process change to its set of retryable statuses.

    `RetryTask.__init__` adds `warn` to the module-level `RETRYABLE_STATUSES`
    when `--warn-error` is passed (dbt-core 1.6 to 1.11) and never removes it.
    In a long-lived process that leaks into later retries without the flag.
    """
    try:
        from dbt.task import retry as dbt_retry_task
    except ImportError:  # pragma: no cover - every supported dbt has it
        yield
        return

    saved = set(dbt_retry_task.RETRYABLE_STATUSES)
    try:
        yield
    finally:
        dbt_retry_task.RETRYABLE_STATUSES.clear()
        dbt_retry_task.RETRYABLE_STATUSES.update(saved)


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """Run the block with `path` as the working directory.

    `contextlib.chdir` only exists from Python 3.11 on.
    """
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


__all__ = [
    "MIN_DBT_VERSION",
    "RETRY_SUPPORTED_COMMANDS",
    "EngineEventData",
    "RetryMode",
    "StepEventStatus",
    "check_dbt_version",
    "installed_dbt_version",
    "preserved_dbt_retry_statuses",
    "working_directory",
]
