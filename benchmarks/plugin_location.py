"""Benchmark code location: plugin jobs over the dbt project at $BENCH_PROJECT_DIR.

Load it as a module with benchmarks/ on PYTHONPATH, for example
`dagster job execute -m plugin_location -j bench_nightly`. Artifacts go to
the default place, $DAGSTER_HOME/dbt_rerun_artifacts.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from dbt_rerun_dagster import build_dbt_definitions, build_dbt_job

PROJECT_DIR = Path(os.environ["BENCH_PROJECT_DIR"])

# The three commands of a typical nightly dbt Cloud job.
bench_nightly = build_dbt_job(
    "bench_nightly", project_dir=PROJECT_DIR, steps=["dbt seed", "dbt run", "dbt test"]
)

# One `dbt build`, the command a dagster-dbt `@dbt_assets` definition runs.
bench_build = build_dbt_job("bench_build", project_dir=PROJECT_DIR, steps=["dbt build"])

defs = build_dbt_definitions(bench_nightly, bench_build)


def get_nightly_job() -> dg.JobDefinition:
    """Return bench_nightly, for `dg.build_reconstructable_job`."""
    return bench_nightly


def get_build_job() -> dg.JobDefinition:
    """Return bench_build, for `dg.build_reconstructable_job`."""
    return bench_build
