"""Code location for the automatic retry tests: jobs, the retry sensor, run retries.

Reads DBT_RERUN_PROJECT_DIR (a copy of the sample project with the flaky and
failing-test files added) and AUTO_RETRY_MARKER_DIR (where the flaky model's
markers go).
"""

from __future__ import annotations

import os
from pathlib import Path

from dbt_rerun_dagster import build_dbt_definitions, build_dbt_job, build_dbt_retry_sensor

PROJECT = Path(os.environ["DBT_RERUN_PROJECT_DIR"])
MARKERS = Path(os.environ["AUTO_RETRY_MARKER_DIR"])


def flaky_vars(marker: str) -> str:
    return f"--vars '{{flaky_marker: {MARKERS / marker}}}'"


flaky_nightly = build_dbt_job(
    "flaky_nightly", PROJECT, ["dbt seed", f"dbt run {flaky_vars('sensor')}"]
)
tested_nightly = build_dbt_job(
    "tested_nightly",
    PROJECT,
    ["dbt seed", "dbt run", "dbt test --vars '{with_failing_test: true}'"],
)
always_transient = build_dbt_job(
    "always_transient", PROJECT, ["dbt run --select flaky_report --vars '{flaky_marker: always}'"]
)
daemon_retried = build_dbt_job(
    "daemon_retried", PROJECT, ["dbt seed", f"dbt run {flaky_vars('daemon')}"], run_retries=1
)
daemon_permanent = build_dbt_job(
    "daemon_permanent",
    PROJECT,
    ["dbt seed", "dbt run", "dbt test --vars '{with_failing_test: true}'"],
    run_retries=1,
)

auto_retry = build_dbt_retry_sensor(
    [flaky_nightly, tested_nightly, always_transient, daemon_retried, daemon_permanent],
    max_attempts=3,
    minimum_interval_seconds=1,
)

defs = build_dbt_definitions(
    flaky_nightly,
    tested_nightly,
    always_transient,
    daemon_retried,
    daemon_permanent,
    sensors=[auto_retry],
)
