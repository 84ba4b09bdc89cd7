"""The public names of the package; removing one is a breaking change."""

from __future__ import annotations

import subprocess
import sys

import dbt_rerun_dagster


def test_exported_names() -> None:
    assert sorted(dbt_rerun_dagster.__all__) == sorted(
        [
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
    )


def test_tag_keys_are_stable() -> None:
    assert dbt_rerun_dagster.RERUN_MODE_TAG == "dbt_rerun/rerun_mode"
    assert dbt_rerun_dagster.RESUMED_FROM_STEP_TAG == "dbt_rerun/resumed_from_step"
    assert dbt_rerun_dagster.RERUN_MODE_FROM_FAILURE == "from_failure"
    assert dbt_rerun_dagster.RERUN_MODE_FROM_START == "from_start"


def test_import_loads_no_dagster() -> None:
    # dbt imports every dbt_* module on every command; the package must be cheap to import.
    code = (
        "import sys, dbt_rerun_dagster; "
        "print('dagster' in sys.modules, hasattr(dbt_rerun_dagster, 'plugins'))"
    )

    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )

    assert completed.stdout.split() == ["False", "False"]


def test_lazy_names_resolve() -> None:
    for name in dbt_rerun_dagster.__all__:
        assert getattr(dbt_rerun_dagster, name) is not None
