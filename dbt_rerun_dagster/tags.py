"""Run tag keys and values that the plugin writes.

Tag keys are part of the public interface: sensors, dashboards and the CLI
filter runs by them, so a released key never changes.
"""

from __future__ import annotations

from typing import Final

TAG_PREFIX: Final = "dbt_rerun/"

# How a rerun treats its steps: `from_failure` runs `dbt retry` in the failed
# step, `from_start` runs every original command again. Fresh runs have no value.
RERUN_MODE_TAG: Final = f"{TAG_PREFIX}rerun_mode"

# Op name of the first step that a rerun executes.
RESUMED_FROM_STEP_TAG: Final = f"{TAG_PREFIX}resumed_from_step"

RERUN_MODE_FROM_FAILURE: Final = "from_failure"
RERUN_MODE_FROM_START: Final = "from_start"

# Dagster's own lineage tags, written by the webserver, GraphQL and the run
# retry daemon (not by `execute_job` with `ReexecutionOptions`, as of 1.13).
DAGSTER_PARENT_RUN_ID_TAG: Final = "dagster/parent_run_id"
DAGSTER_ROOT_RUN_ID_TAG: Final = "dagster/root_run_id"
DAGSTER_RESUME_RETRY_TAG: Final = "dagster/is_resume_retry"

# Tag on the job definition that identifies jobs built by this plugin.
DBT_JOB_TAG: Final = f"{TAG_PREFIX}job"
