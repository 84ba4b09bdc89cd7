"""A code location with a job that is not a dbt job, for the CLI's prerequisite checks."""

from __future__ import annotations

import dagster as dg


@dg.op
def say_hello() -> None:
    """Do nothing; the job only has to exist and run."""


@dg.job
def plain_job() -> None:
    say_hello()


defs = dg.Definitions(jobs=[plain_job])
