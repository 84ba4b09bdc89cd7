"""Deleting old artifacts while keeping what open failures need to be retried.

A run's artifact directory may go when the run is older than the maximum age
or is not among the job's most recent runs. Artifacts of a failed or canceled
run that no rerun has resolved yet are never deleted: of those, only
`run_results.json` and the invocation record, which `dbt retry` needs, are
kept once the run is past the limits. Runs still in progress are left alone.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from upath import UPath

from dbt_rerun_dagster.artifacts import RECORD_FILE
from dbt_rerun_dagster.dbt.results import RUN_RESULTS_FILE
from dbt_rerun_dagster.errors import DbtJobDefinitionError
from dbt_rerun_dagster.orchestration.resolution import FAILED_STATUSES, chain_resolution

logger = logging.getLogger(__name__)

# Files kept for an unresolved failure past the retention limits.
RETRY_FILES = frozenset({RUN_RESULTS_FILE, RECORD_FILE})


@dataclass(frozen=True)
class ArtifactRetention:
    """How long a job's artifacts are kept.

    Attributes:
        max_age_days: Delete artifacts of runs created more than this many days ago.
        keep_last_runs: Keep the artifacts of this many most recent runs of the job.
    """

    max_age_days: float | None = None
    keep_last_runs: int | None = None

    def __post_init__(self) -> None:
        if self.max_age_days is None and self.keep_last_runs is None:
            raise DbtJobDefinitionError(
                "ArtifactRetention needs max_age_days, keep_last_runs or both"
            )
        if self.max_age_days is not None and self.max_age_days < 0:
            raise DbtJobDefinitionError(f"max_age_days must be 0 or more, got {self.max_age_days}")
        if self.keep_last_runs is not None and self.keep_last_runs < 0:
            raise DbtJobDefinitionError(
                f"keep_last_runs must be 0 or more, got {self.keep_last_runs}"
            )


@dataclass
class PruneReport:
    """Run ids whose artifacts were deleted, slimmed to the retry files, or kept."""

    deleted: list[str] = field(default_factory=list)
    slimmed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def prune_artifacts(
    instance: dg.DagsterInstance,
    job_root: str | Path | UPath,
    retention: ArtifactRetention,
    now: float | None = None,
) -> PruneReport:
    """Apply `retention` to the artifact directory of one job (`<root>/<job name>`)."""
    now = time.time() if now is None else now
    root = UPath(str(job_root))
    report = PruneReport()
    if not root.exists():
        return report
    run_dirs = [path for path in root.iterdir() if path.is_dir() and path.name != "partial_parse"]
    created = {path.name: _created_at(instance, path) for path in run_dirs}
    newest_first = sorted(run_dirs, key=lambda path: created[path.name], reverse=True)

    for index, run_dir in enumerate(newest_first):
        too_old = (
            retention.max_age_days is not None
            and now - created[run_dir.name] > retention.max_age_days * 86400
        )
        beyond_last = retention.keep_last_runs is not None and index >= retention.keep_last_runs
        if not (too_old or beyond_last):
            report.kept.append(run_dir.name)
            continue
        _prune_run_dir(instance, run_dir, report)

    return report


def _prune_run_dir(instance: dg.DagsterInstance, run_dir: UPath, report: PruneReport) -> None:
    run = instance.get_run_by_id(run_dir.name)
    if run is not None and not run.is_finished:
        report.kept.append(run_dir.name)
        return
    if run is not None and run.status in FAILED_STATUSES:
        if not chain_resolution(instance, run.run_id).resolved:
            _slim(run_dir)
            report.slimmed.append(run_dir.name)
            return
    _remove(run_dir)
    report.deleted.append(run_dir.name)
    logger.info("Deleted artifacts of run %s at %s", run_dir.name, run_dir)


def _slim(run_dir: UPath) -> None:
    for path in sorted(run_dir.rglob("*"), key=lambda item: len(item.parts), reverse=True):
        if path.is_file() and path.name not in RETRY_FILES:
            path.unlink()
        elif path.is_dir() and path.parent != run_dir and not any(path.iterdir()):
            path.rmdir()


def _remove(path: UPath) -> None:
    path.fs.rm(path.path, recursive=True)


def _created_at(instance: dg.DagsterInstance, run_dir: UPath) -> float:
    record = instance.get_run_record_by_id(run_dir.name)
    if record is not None:
        return record.create_timestamp.timestamp()
    try:
        return float(run_dir.stat().st_mtime)
    except (OSError, AttributeError, TypeError):
        return time.time()  # unknown age: treat as new, so it is not deleted by age
