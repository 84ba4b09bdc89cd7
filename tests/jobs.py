"""Job factories that Dagster can reconstruct in run workers and re-executions."""

from __future__ import annotations

from typing import Any

import dagster as dg

from dbt_rerun_dagster import ArtifactRetention, build_dbt_job


def make_job(name: str, project_dir: str, steps: list[str], **options: Any) -> dg.JobDefinition:
    """Build a dbt job from plain arguments, so `build_reconstructable_job` can rebuild it."""
    if isinstance(options.get("retry_policy"), dict):
        options["retry_policy"] = dg.RetryPolicy(**options["retry_policy"])
    if isinstance(options.get("artifact_retention"), dict):
        options["artifact_retention"] = ArtifactRetention(**options["artifact_retention"])

    return build_dbt_job(name, project_dir, steps, **options)


def reconstructable_job(name: str, project_dir: str, steps: list[str], **options: Any):
    return dg.build_reconstructable_job(
        "tests.jobs",
        "make_job",
        reconstructable_kwargs={
            "name": name,
            "project_dir": project_dir,
            "steps": steps,
            **options,
        },
    )
