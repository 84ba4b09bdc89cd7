"""Artifact roots on fsspec storage: file:// URLs and the in-memory filesystem."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import fsspec
import pytest

from dbt_rerun_dagster import DbtJobDefinitionError, build_dbt_job
from tests.support import (
    FCT_ORDERS_DESCENDANTS,
    JobRunner,
    SampleProject,
    built_nodes,
    step_metadata,
)

STEPS = ["dbt seed", "dbt run"]


def rerun_from_failure_on(
    instance: dg.DagsterInstance, project: SampleProject, artifacts_root: str
) -> tuple[str, str, dict, set[str]]:
    runner = JobRunner(instance, "nightly", project, STEPS, artifacts_root=artifacts_root)
    project.break_models("fct_orders")
    failed = runner.run()
    project.fix_models()
    project.new_builds()
    rerun = runner.rerun_from_failure(failed.run_id)
    retried = step_metadata(instance, rerun.run_id, "step_2_dbt_run")
    return failed.run_id, rerun.run_id, retried, set(built_nodes(project.new_builds()))


def test_file_url_root_keeps_artifacts(
    instance: dg.DagsterInstance, project: SampleProject, tmp_path: Path
) -> None:
    root = tmp_path / "shared_storage"

    failed_id, rerun_id, retried, rebuilt = rerun_from_failure_on(
        instance, project, f"file://{root}"
    )
    parent = root / "nightly" / failed_id / "step_2_dbt_run" / "attempt-0"
    child = root / "nightly" / rerun_id / "step_2_dbt_run" / "attempt-0"

    assert retried["mode"] == "dbt retry"
    assert rebuilt == FCT_ORDERS_DESCENDANTS | {"fct_orders"}
    assert (parent / "run_results.json").is_file()
    assert (parent / "dbt_rerun_invocation.json").is_file()
    assert (child / "run_results.json").is_file()
    assert retried["artifact directory"].endswith(f"{rerun_id}/step_2_dbt_run/attempt-0")


def test_memory_root_retries_from_uploaded_results(
    instance: dg.DagsterInstance, project: SampleProject, tmp_path: Path
) -> None:
    memory = fsspec.filesystem("memory")
    root = f"memory://dbt_rerun_{tmp_path.name}"

    failed_id, _, retried, rebuilt = rerun_from_failure_on(instance, project, root)

    assert retried["mode"] == "dbt retry"
    assert rebuilt == FCT_ORDERS_DESCENDANTS | {"fct_orders"}
    assert memory.exists(
        f"/dbt_rerun_{tmp_path.name}/nightly/{failed_id}/step_2_dbt_run/attempt-0/run_results.json"
    )


def test_missing_parent_artifacts_run_full_command(
    instance: dg.DagsterInstance, project: SampleProject, tmp_path: Path
) -> None:
    memory = fsspec.filesystem("memory")
    root = f"memory://dbt_rerun_gone_{tmp_path.name}"
    runner = JobRunner(instance, "nightly", project, STEPS, artifacts_root=root)
    project.break_models("fct_orders")
    failed = runner.run()
    project.fix_models()
    memory.rm(f"/dbt_rerun_gone_{tmp_path.name}/nightly/{failed.run_id}", recursive=True)

    rerun = runner.rerun_from_failure(failed.run_id)
    ran = step_metadata(instance, rerun.run_id, "step_2_dbt_run")

    assert rerun.success
    assert ran["mode"] == "full command"
    assert ran["mode reason"].startswith("no artifacts of step_2_dbt_run of run")


def test_unknown_url_scheme_rejected(project: SampleProject) -> None:
    with pytest.raises(DbtJobDefinitionError, match=r"artifacts_root 'nosuchscheme://x' is not"):
        build_dbt_job("nightly", project.path, STEPS, artifacts_root="nosuchscheme://x")
