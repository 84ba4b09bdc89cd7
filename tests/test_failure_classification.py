"""Which failures automatic retries may rerun, from real dbt results and from messages."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from dbt_rerun_dagster import FailureClassifier, FailureKind
from dbt_rerun_dagster.dbt.results import NodeResult, RunResults
from tests.support import JobRunner, SampleProject

TRANSIENT_MESSAGES = [
    "Runtime Error\n  could not connect to server: Connection refused",
    'IO Error: Could not set lock on file "warehouse.duckdb": Conflicting lock is held',
    "SSL SYSCALL error: server closed the connection unexpectedly",
    "Query exceeded timeout of 300 seconds",
    "deadlock detected",
    "could not serialize access due to concurrent update",
    "FATAL: sorry, too many clients already; too many connections",
    "503 Service Unavailable: please try again later",
]
PERMANENT_MESSAGES = [
    'Binder Error: Referenced column "no_such_column" not found',
    'Parser Error: syntax error at or near "selec"',
    "Compilation Error in model x: 'dict object' has no attribute 'y'",
    "Catalog Error: Table with name raw_orders does not exist!",
]


def results_with(*nodes: tuple[str, str, str]) -> RunResults:
    return RunResults(
        path=Path("run_results.json"),
        invocation_id="abc",
        command="run",
        generated_at=None,
        nodes=tuple(NodeResult(uid, status, message, 0.1) for uid, status, message in nodes),
    )


@pytest.mark.parametrize("message", TRANSIENT_MESSAGES)
def test_transient_messages_are_retryable(message: str) -> None:
    results = results_with(("model.p.a", "error", message))

    classification = FailureClassifier().classify(results, None)

    assert classification.kind is FailureKind.TRANSIENT


@pytest.mark.parametrize("message", PERMANENT_MESSAGES)
def test_sql_errors_are_permanent(message: str) -> None:
    results = results_with(("model.p.a", "error", message))

    classification = FailureClassifier().classify(results, None)

    assert classification.kind is FailureKind.PERMANENT
    assert "model.p.a" in classification.reason


def test_failing_data_test_is_permanent() -> None:
    results = results_with(
        ("test.p.unique_id", "fail", "Got 3 results, configured to fail if != 0")
    )

    classification = FailureClassifier().classify(results, None)

    assert classification.kind is FailureKind.PERMANENT
    assert classification.reason.startswith("data test test.p.unique_id failed")


def test_one_permanent_node_makes_step_permanent() -> None:
    results = results_with(
        ("model.p.a", "error", "connection reset by peer"),
        ("model.p.b", "error", "Binder Error: column not found"),
    )

    assert FailureClassifier().classify(results, None).kind is FailureKind.PERMANENT


def test_parse_error_without_results_is_permanent() -> None:
    classification = FailureClassifier().classify(None, "Compilation Error: unexpected '}'")

    assert classification.kind is FailureKind.PERMANENT
    assert classification.reason.startswith("dbt stopped before running any node")


def test_retry_everything_overrides() -> None:
    results = results_with(("test.p.t", "fail", "Got 1 result"))

    classification = FailureClassifier(retry_everything=True).classify(results, None)

    assert classification.kind is FailureKind.TRANSIENT


def test_custom_patterns_replace_defaults() -> None:
    classifier = FailureClassifier(transient_patterns=[r"quota exceeded"])
    quota = results_with(("model.p.a", "error", "Error: Quota exceeded for project"))
    lock = results_with(("model.p.a", "error", "deadlock detected"))

    assert classifier.classify(quota, None).kind is FailureKind.TRANSIENT
    assert classifier.classify(lock, None).kind is FailureKind.PERMANENT


def test_invalid_pattern_rejected_at_definition() -> None:
    with pytest.raises(ValueError, match=r"transient pattern '\(unclosed' is not a valid regular"):
        FailureClassifier(transient_patterns=["(unclosed"])


def test_failed_run_tagged_permanent(instance: dg.DagsterInstance, project: SampleProject) -> None:
    runner = JobRunner(instance, "nightly", project, ["dbt seed", "dbt run"])
    project.break_models("fct_orders")

    failed = runner.run()

    assert failed.tags["dbt_rerun/failure_kind"] == "permanent"
    assert "model.jaffle_rerun.fct_orders" in failed.tags["dbt_rerun/failure_reason"]
    assert failed.tags["dagster/retry_on_asset_or_op_failure"] == "false"


def test_transient_failure_tagged_retryable(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    project.write("models/marts/flaky.sql", "select error('transient: connection was lost')\n")
    runner = JobRunner(instance, "nightly", project, ["dbt seed", "dbt run"])

    failed = runner.run()

    assert failed.tags["dbt_rerun/failure_kind"] == "transient"
    assert failed.tags["dagster/retry_on_asset_or_op_failure"] == "true"


def test_python_rerun_gets_lineage_tags(
    instance: dg.DagsterInstance, project: SampleProject
) -> None:
    runner = JobRunner(instance, "nightly", project, ["dbt seed", "dbt run"])
    project.break_models("fct_orders")
    failed = runner.run()
    project.fix_models()

    rerun = runner.rerun_from_failure(failed.run_id)

    assert rerun.success
    assert "dbt_rerun/failure_kind" not in rerun.tags
    assert rerun.tags["dagster/parent_run_id"] == failed.run_id
    assert rerun.tags["dagster/root_run_id"] == failed.run_id
    assert rerun.tags["dagster/is_resume_retry"] == "true"
