"""Run dbt Core jobs as Dagster jobs that can be rerun from start or from failure.

Each dbt command of a job becomes one op. Re-executing a failed run from
failure runs `dbt retry` in the failed step, so only the dbt nodes that failed
or were skipped run again.
"""

from dbt_rerun_dagster.dbt.classify import (
    DEFAULT_TRANSIENT_PATTERNS,
    FailureClassification,
    FailureClassifier,
    FailureKind,
)
from dbt_rerun_dagster.errors import (
    DbtJobDefinitionError,
    DbtRerunError,
    DbtStepFailure,
    InvalidStepError,
)
from dbt_rerun_dagster.orchestration.job import build_dbt_definitions, build_dbt_job
from dbt_rerun_dagster.orchestration.resolution import (
    ChainResolution,
    chain_resolution,
    unresolved_failures,
)
from dbt_rerun_dagster.orchestration.retention import (
    ArtifactRetention,
    PruneReport,
    prune_artifacts,
)
from dbt_rerun_dagster.orchestration.retry_sensor import build_dbt_retry_sensor
from dbt_rerun_dagster.orchestration.workers import fail_dead_runs
from dbt_rerun_dagster.tags import (
    RERUN_MODE_FROM_FAILURE,
    RERUN_MODE_FROM_START,
    RERUN_MODE_TAG,
    RESUMED_FROM_STEP_TAG,
)

__all__ = [
    "fail_dead_runs",
    "ArtifactRetention",
    "PruneReport",
    "prune_artifacts",
    "ChainResolution",
    "chain_resolution",
    "unresolved_failures",
    "DEFAULT_TRANSIENT_PATTERNS",
    "FailureClassification",
    "FailureClassifier",
    "FailureKind",
    "build_dbt_retry_sensor",
    "RERUN_MODE_FROM_FAILURE",
    "RERUN_MODE_FROM_START",
    "RERUN_MODE_TAG",
    "RESUMED_FROM_STEP_TAG",
    "DbtJobDefinitionError",
    "DbtRerunError",
    "DbtStepFailure",
    "InvalidStepError",
    "build_dbt_definitions",
    "build_dbt_job",
]
