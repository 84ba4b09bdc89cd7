"""Benchmark code location: a job with one op that does nothing.

A run of it starts like any other contender, as a new process through
dagster_runs.py. It measures the fixed cost of a Dagster run worker that
every plugin run pays besides dbt's own work: Python and Dagster imports,
loading the job, and creating the run and its event log.
"""

import dagster as dg


@dg.op
def do_nothing() -> None:
    pass


@dg.job(executor_def=dg.in_process_executor)
def noop_job() -> None:
    do_nothing()


def get_noop_job() -> dg.JobDefinition:
    """Return noop_job, for `dg.build_reconstructable_job`."""
    return noop_job
