"""Whether a failed run was resolved by a later rerun, like dbt Cloud's run history shows."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from dbt_rerun_dagster.tags import DAGSTER_ROOT_RUN_ID_TAG, RESOLVED_BY_TAG

FAILED_STATUSES = frozenset({dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED})


@dataclass(frozen=True)
class ChainResolution:
    """A root run and its reruns, oldest first, and the run that succeeded, if any."""

    root_run_id: str
    run_ids: tuple[str, ...]
    statuses: tuple[str, ...]
    resolved_by: str | None

    @property
    def resolved(self) -> bool:
        return self.resolved_by is not None

    @property
    def latest_run_id(self) -> str:
        return self.run_ids[-1]


def chain_resolution(instance: dg.DagsterInstance, run_id: str) -> ChainResolution:
    """Return the resolution of the run group that `run_id` belongs to."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise dg.DagsterRunNotFoundError(f"Run {run_id} does not exist", invalid_run_id=run_id)
    root_id = run.root_run_id or run.run_id
    runs = [instance.get_run_by_id(root_id), *_reruns(instance, root_id)]
    chain = sorted((item for item in runs if item is not None), key=_creation_order(instance))
    resolved_by = next(
        (item.run_id for item in chain if item.status == dg.DagsterRunStatus.SUCCESS), None
    )

    return ChainResolution(
        root_run_id=root_id,
        run_ids=tuple(item.run_id for item in chain),
        statuses=tuple(item.status.value for item in chain),
        resolved_by=resolved_by,
    )


def unresolved_failures(
    instance: dg.DagsterInstance, job_name: str, limit: int = 100
) -> list[ChainResolution]:
    """List the failed or canceled root runs of a job that no rerun has resolved yet.

    Looks at the job's `limit` most recent root runs, newest first.
    """
    filters = dg.RunsFilter(job_name=job_name, statuses=list(FAILED_STATUSES))
    roots = [
        run for run in instance.get_runs(filters=filters, limit=limit) if not run.parent_run_id
    ]
    chains = [chain_resolution(instance, run.run_id) for run in roots]

    return [chain for chain in chains if not chain.resolved]


def mark_resolved(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[str]:
    """Tag every failed ancestor of a successful rerun with the rerun's id; return their ids."""
    marked: list[str] = []
    ancestor_id = run.parent_run_id
    while ancestor_id:
        ancestor = instance.get_run_by_id(ancestor_id)
        if ancestor is None:
            break
        if ancestor.status in FAILED_STATUSES and not ancestor.tags.get(RESOLVED_BY_TAG):
            instance.add_run_tags(ancestor.run_id, {RESOLVED_BY_TAG: run.run_id})
            marked.append(ancestor.run_id)
        ancestor_id = ancestor.parent_run_id

    return marked


def _reruns(instance: dg.DagsterInstance, root_id: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(tags={DAGSTER_ROOT_RUN_ID_TAG: root_id})))


def _creation_order(instance: dg.DagsterInstance):  # type: ignore[no-untyped-def]
    def key(run: dg.DagsterRun) -> float:
        record = instance.get_run_record_by_id(run.run_id)
        return record.create_timestamp.timestamp() if record else 0.0

    return key
