"""Benchmark code location: the dbt project at $BENCH_PROJECT_DIR as dagster-dbt `@dbt_assets`.

This is how dagster-dbt's documentation sets up a dbt project: one
`@dbt_assets` definition that runs `dbt build` through `DbtCliResource`,
with dbt tests as asset checks. The manifest must exist first
(`dbt parse` in the project writes target/manifest.json). Each invocation
writes its artifacts to target/<op name>-<first 7 characters of the run id>-<uuid>/.
"""

import os
from pathlib import Path

import dagster as dg
from dagster import AssetExecutionContext
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets

PROJECT = DbtProject(project_dir=Path(os.environ["BENCH_PROJECT_DIR"]))
ASSETS_JOB_NAME = "bench_dbt_assets_job"


@dbt_assets(manifest=PROJECT.manifest_path)
def bench_dbt_assets(context: AssetExecutionContext, dbt: DbtCliResource):
    yield from dbt.cli(["build"], context=context).stream()


defs = dg.Definitions(
    assets=[bench_dbt_assets],
    jobs=[dg.define_asset_job(ASSETS_JOB_NAME, selection=[bench_dbt_assets])],
    resources={"dbt": DbtCliResource(project_dir=PROJECT)},
)


def get_assets_job() -> dg.JobDefinition:
    """Return the asset job, for `dg.build_reconstructable_job`."""
    return defs.resolve_job_def(ASSETS_JOB_NAME)
