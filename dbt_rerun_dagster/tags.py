"""Run tag keys and values that the plugin writes.

Tag keys are part of the public interface: sensors, dashboards and the CLI
filter runs by them, so a released key never changes.
"""

from __future__ import annotations

from typing import Final

TAG_PREFIX: Final = "dbt_rerun/"

# Rerun mode: `from_failure` runs `dbt retry` in the failed step, and
# `from_start` runs every original command again. Fresh runs have no value.
RERUN_MODE_TAG: Final = f"{TAG_PREFIX}rerun_mode"

# Op name of the first step that a rerun executes.
RESUMED_FROM_STEP_TAG: Final = f"{TAG_PREFIX}resumed_from_step"

RERUN_MODE_FROM_FAILURE: Final = "from_failure"
RERUN_MODE_FROM_START: Final = "from_start"

# Written on a run when a step fails for good: `transient` or `permanent`
# (see FailureClassifier), and the reason. Automatic retries rerun only
# transient failures.
FAILURE_KIND_TAG: Final = f"{TAG_PREFIX}failure_kind"
FAILURE_REASON_TAG: Final = f"{TAG_PREFIX}failure_reason"

# On reruns launched by the retry sensor: "true", and the attempt number
# counted from 1 within the run group.
AUTO_RETRY_TAG: Final = f"{TAG_PREFIX}auto_retry"
RETRY_ATTEMPT_TAG: Final = f"{TAG_PREFIX}retry_attempt"

# On a failed run that the retry sensor decided not to rerun: the reason.
AUTO_RETRY_SKIPPED_TAG: Final = f"{TAG_PREFIX}auto_retry_skipped"

# Launch-time overrides of the retry sensor's settings for one run (and the
# reruns that copy its tags): a maximum number of automatic retries, and the
# strategy `from_failure` or `all_steps`.
MAX_AUTO_RETRIES_TAG: Final = f"{TAG_PREFIX}max_auto_retries"
AUTO_RETRY_STRATEGY_TAG: Final = f"{TAG_PREFIX}auto_retry_strategy"

# On a failed or canceled run once a rerun of it (or of its reruns) succeeded:
# the id of that rerun.
RESOLVED_BY_TAG: Final = f"{TAG_PREFIX}resolved_by"

# Host name and process id of the run worker, written when a run starts, so
# that a worker that died without reporting (SIGKILL, OOM) can be detected.
WORKER_HOST_TAG: Final = f"{TAG_PREFIX}worker_host"
WORKER_PID_TAG: Final = f"{TAG_PREFIX}worker_pid"

# Launch-time settings as run tags, for launches that cannot pass run config
# (the webserver's re-execute menu, GraphQL `launchRunReexecution`, the
# `dbt-rerun` CLI). Run config under resources.dbt_rerun takes precedence.
THREADS_TAG: Final = f"{TAG_PREFIX}threads"
VARS_TAG: Final = f"{TAG_PREFIX}vars"
REQUESTED_MODE_TAG: Final = f"{TAG_PREFIX}requested_mode"

# Dagster's run retry tags (run_retries in dagster.yaml, read by the daemon).
DAGSTER_MAX_RETRIES_TAG: Final = "dagster/max_retries"
DAGSTER_RETRY_STRATEGY_TAG: Final = "dagster/retry_strategy"
DAGSTER_WILL_RETRY_TAG: Final = "dagster/will_retry"
# "false" keeps the daemon from retrying a run that failed in a step.
DAGSTER_RETRY_ON_STEP_FAILURE_TAG: Final = "dagster/retry_on_asset_or_op_failure"

# Dagster's own lineage tags, written by the webserver, GraphQL and the run
# retry daemon (not by `execute_job` with `ReexecutionOptions`, as of 1.13).
DAGSTER_PARENT_RUN_ID_TAG: Final = "dagster/parent_run_id"
DAGSTER_ROOT_RUN_ID_TAG: Final = "dagster/root_run_id"
DAGSTER_RESUME_RETRY_TAG: Final = "dagster/is_resume_retry"

# Tag on the job definition that identifies jobs built by this plugin.
DBT_JOB_TAG: Final = f"{TAG_PREFIX}job"

# Tags the plugin writes itself; a job may not set them, or every fresh run
# would look like a rerun or a classified failure.
RESERVED_RUN_TAGS: Final = frozenset(
    {
        RERUN_MODE_TAG,
        RESUMED_FROM_STEP_TAG,
        FAILURE_KIND_TAG,
        FAILURE_REASON_TAG,
        AUTO_RETRY_TAG,
        RETRY_ATTEMPT_TAG,
        AUTO_RETRY_SKIPPED_TAG,
        RESOLVED_BY_TAG,
        WORKER_HOST_TAG,
        WORKER_PID_TAG,
    }
)
