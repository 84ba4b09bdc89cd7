"""Run dbt Core jobs as Dagster jobs that can be rerun from start or from failure.

Each dbt command of a job becomes one op. Re-executing a failed run from
failure runs `dbt retry` in the failed step, so only the dbt nodes that failed
or were skipped run again.

The public names are imported on first use (PEP 562). dbt-core's plugin
discovery imports every top-level module whose name starts with `dbt_` on
every dbt command (dbt/plugins/manager.py, dbt-core 1.6 to 1.11), so an eager
import here would load Dagster into every plain `dbt` run of the environment.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public name -> module that defines it.
_EXPORTS = {
    "DEFAULT_TRANSIENT_PATTERNS": "dbt_rerun_dagster.dbt.classify",
    "FailureClassification": "dbt_rerun_dagster.dbt.classify",
    "FailureClassifier": "dbt_rerun_dagster.dbt.classify",
    "FailureKind": "dbt_rerun_dagster.dbt.classify",
    "DbtJobDefinitionError": "dbt_rerun_dagster.errors",
    "DbtRerunError": "dbt_rerun_dagster.errors",
    "DbtStepFailure": "dbt_rerun_dagster.errors",
    "InvalidStepError": "dbt_rerun_dagster.errors",
    "build_dbt_definitions": "dbt_rerun_dagster.orchestration.job",
    "build_dbt_job": "dbt_rerun_dagster.orchestration.job",
    "ChainResolution": "dbt_rerun_dagster.orchestration.resolution",
    "chain_resolution": "dbt_rerun_dagster.orchestration.resolution",
    "unresolved_failures": "dbt_rerun_dagster.orchestration.resolution",
    "ArtifactRetention": "dbt_rerun_dagster.orchestration.retention",
    "PruneReport": "dbt_rerun_dagster.orchestration.retention",
    "prune_artifacts": "dbt_rerun_dagster.orchestration.retention",
    "build_dbt_retry_sensor": "dbt_rerun_dagster.orchestration.retry_sensor",
    "fail_dead_runs": "dbt_rerun_dagster.orchestration.workers",
    "RERUN_MODE_FROM_FAILURE": "dbt_rerun_dagster.tags",
    "RERUN_MODE_FROM_START": "dbt_rerun_dagster.tags",
    "RERUN_MODE_TAG": "dbt_rerun_dagster.tags",
    "RESUMED_FROM_STEP_TAG": "dbt_rerun_dagster.tags",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # dbt looks for a `plugins` attribute with hasattr(), so unknown names
    # must raise AttributeError, not import anything.
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value

    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
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
