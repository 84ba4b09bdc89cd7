"""A step retry policy: each new attempt runs `dbt retry` on the previous attempt."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from tests.support import (
    FCT_ORDERS_DESCENDANTS,
    MODEL_NAMES,
    SEED_NAMES,
    JobRunner,
    SampleProject,
    built_nodes,
    step_metadata,
)

# Fails until the marker file exists; the project's on-run-end hook creates
# it, so the model fails in the first `dbt run` and passes in the next one,
# like a model hit by a dropped warehouse connection.
FLAKY_MODEL = """
select case
    when (select count(*) from glob('{{ env_var("FLAKY_MARKER") }}')) = 0
    then error('transient: connection to the warehouse was lost')
    else 1
end as ok
"""
CREATE_MARKER = (
    "{% if flags.WHICH == 'run' %}"
    "copy (select 1 as done) to '{{ env_var(\"FLAKY_MARKER\") }}' (format csv)"
    "{% endif %}"
)


@pytest.fixture
def flaky_project(
    project: SampleProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> SampleProject:
    monkeypatch.setenv("FLAKY_MARKER", str(tmp_path / "flaky_marker.csv"))
    project.write("models/marts/flaky_report.sql", FLAKY_MODEL)
    project.update_project_yml(**{"on-run-end": [CREATE_MARKER]})
    return project


def test_retry_policy_retries_only_failed_nodes(
    instance: dg.DagsterInstance, flaky_project: SampleProject, dagster_home: Path
) -> None:
    runner = JobRunner(
        instance, "flaky", flaky_project, ["dbt seed", "dbt run"], retry_policy={"max_retries": 2}
    )

    outcome = runner.run()
    builds = built_nodes(flaky_project.new_builds())
    retried = step_metadata(instance, outcome.run_id, "step_2_dbt_run")
    attempts = sorted(
        path.name
        for path in (
            dagster_home / "dbt_rerun_artifacts" / "flaky" / outcome.run_id / "step_2_dbt_run"
        ).iterdir()
    )

    assert outcome.success
    assert builds == {name: 1 for name in SEED_NAMES | MODEL_NAMES | {"flaky_report"}}
    assert attempts == ["attempt-0", "attempt-1"]
    assert retried["mode"] == "dbt retry"
    assert "previous attempt" in retried["mode reason"]
    assert retried["node counts"] == {"success": 3}  # flaky_report and the two project hooks


def test_exhausted_retry_policy_fails_the_run(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    runner = JobRunner(
        instance, "always_broken", project, ["dbt seed", "dbt run"], retry_policy={"max_retries": 1}
    )
    project.break_models("fct_orders")

    outcome = runner.run()
    builds = built_nodes(project.new_builds())

    assert outcome.status == dg.DagsterRunStatus.FAILURE
    # The second attempt retried only fct_orders and its descendants, which
    # failed or were skipped again: nothing was built twice.
    assert set(builds) == SEED_NAMES | (MODEL_NAMES - FCT_ORDERS_DESCENDANTS - {"fct_orders"})
    assert max(builds.values()) == 1
    assert step_metadata(instance, outcome.run_id, "step_2_dbt_run")["mode"] == "dbt retry"
