"""Detecting runs whose run worker died without reporting (SIGKILL, out of memory).

Dagster's default run launcher cannot check a run worker's health (Dagster
1.13), so such a run stays STARTED forever and cannot be rerun from failure.
Each dbt job run records its worker's host and process id. A run whose worker
ran on this host and no longer exists is reported as failed.
"""

from __future__ import annotations

import logging
import os
import socket

import dagster as dg

from dbt_rerun_dagster.tags import WORKER_HOST_TAG, WORKER_PID_TAG

logger = logging.getLogger(__name__)

IN_PROGRESS_STATUSES = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def worker_tags() -> dict[str, str]:
    """Return the tags that identify this process as a run's worker."""
    return {WORKER_HOST_TAG: socket.gethostname(), WORKER_PID_TAG: str(os.getpid())}


def fail_dead_runs(instance: dg.DagsterInstance, job_names: list[str] | None = None) -> list[str]:
    """Report in-progress runs whose worker on this host has exited as failed; return their ids.

    Runs of other hosts are left alone: their processes cannot be checked from here.
    """
    filters = dg.RunsFilter(statuses=IN_PROGRESS_STATUSES, job_name=None)
    failed: list[str] = []
    for run in instance.get_runs(filters=filters, limit=200):
        if job_names is not None and run.job_name not in job_names:
            continue
        if not _worker_died(run):
            continue
        message = (
            f"The run worker (pid {run.tags[WORKER_PID_TAG]} on {run.tags[WORKER_HOST_TAG]}) "
            "exited without reporting the end of the run, for example after SIGKILL or an "
            "out-of-memory kill. Rerun it from failure."
        )
        instance.report_run_failed(run, message)
        logger.warning("Run %s failed: %s", run.run_id, message)
        failed.append(run.run_id)

    return failed


def _worker_died(run: dg.DagsterRun) -> bool:
    host, pid_text = run.tags.get(WORKER_HOST_TAG), run.tags.get(WORKER_PID_TAG)
    if host != socket.gethostname() or not pid_text or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False

    # NOTE: a zombie (exited, not yet reaped by its parent) still counts as alive here.
    return False
