"""The sample code location: jobs over the bundled dbt project in dbt_project/.

`dagster dev` loads this module (see workspace.yaml and [tool.dagster] in
pyproject.toml). DBT_RERUN_PROJECT_DIR points the jobs at another copy of
the project, which the tests use.
"""

from __future__ import annotations

import os
from pathlib import Path

from dbt_rerun_dagster import build_dbt_definitions, build_dbt_job, build_dbt_retry_sensor

SAMPLE_PROJECT_DIR = Path(
    os.environ.get("DBT_RERUN_PROJECT_DIR", Path(__file__).resolve().parent.parent / "dbt_project")
)

# The main job: what a nightly dbt Cloud job with three commands does.
jaffle_nightly = build_dbt_job(
    "jaffle_nightly",
    project_dir=SAMPLE_PROJECT_DIR,
    steps=["dbt seed", "dbt run", "dbt test"],
    description="Seeds, models and tests of the sample jaffle shop project, one step each.",
)

# The same project as a single `dbt build`, with dbt Cloud's optional steps.
jaffle_build = build_dbt_job(
    "jaffle_build",
    project_dir=SAMPLE_PROJECT_DIR,
    steps=["dbt build"],
    docs_generate=True,
    description="One `dbt build` over the sample project, then `dbt docs generate`.",
)

# Reruns transient failures (dropped connections, locks, timeouts) from failure
# through the webserver of `dagster dev` on 127.0.0.1:3000.
auto_retry = build_dbt_retry_sensor([jaffle_nightly, jaffle_build], max_attempts=2)

defs = build_dbt_definitions(jaffle_nightly, jaffle_build, sensors=[auto_retry])
