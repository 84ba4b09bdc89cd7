"""The shape of a built job: op names, order, descriptions and optional steps."""

from __future__ import annotations

import dagster as dg

from dbt_rerun_dagster import build_dbt_definitions, build_dbt_job
from tests.support import SampleProject


def op_names_in_order(job: dg.JobDefinition) -> list[str]:
    return [node.name for node in job.graph.nodes_in_topological_order]


def test_steps_become_chained_ops(project: SampleProject) -> None:
    job = build_dbt_job(
        "nightly",
        project.path,
        [
            "dbt seed",
            "run --select tag:daily",
            "dbt run-operation record_operation --args '{label: x}'",
        ],
    )

    assert op_names_in_order(job) == [
        "step_1_dbt_seed",
        "step_2_dbt_run",
        "step_3_dbt_run_operation",
    ]
    assert (
        job.graph.node_named("step_2_dbt_run").definition.description == "`run --select tag:daily`"
    )
    upstream = job.graph.dependency_structure.input_to_upstream_outputs_for_node(
        "step_3_dbt_run_operation"
    )
    assert [output.node.name for outputs in upstream.values() for output in outputs] == [
        "step_2_dbt_run"
    ]


def test_optional_steps_wrap_user_steps(project: SampleProject) -> None:
    project.write("packages.yml", "packages: []\n")

    job = build_dbt_job(
        "full", project.path, ["dbt build"], source_freshness=True, docs_generate=True
    )

    assert op_names_in_order(job) == [
        "step_1_dbt_deps",
        "step_2_dbt_source_freshness",
        "step_3_dbt_build",
        "step_4_dbt_docs_generate",
    ]
    assert (
        "may fail without failing the run"
        in job.graph.node_named("step_4_dbt_docs_generate").definition.description
    )


def test_deps_step_only_when_project_has_packages(project: SampleProject) -> None:
    job = build_dbt_job("plain", project.path, ["dbt build"])

    assert op_names_in_order(job) == ["step_1_dbt_build"]


def test_job_uses_in_process_executor_by_default(project: SampleProject) -> None:
    job = build_dbt_job("plain", project.path, ["dbt build"])

    assert job.executor_def.name == "in_process"


def test_two_jobs_share_step_names(project: SampleProject) -> None:
    first = build_dbt_job("first", project.path, ["dbt seed", "dbt run"])
    second = build_dbt_job("second", project.path, ["dbt seed", "dbt test"])

    defs = build_dbt_definitions(first, second)

    assert op_names_in_order(defs.get_job_def("first")) == ["step_1_dbt_seed", "step_2_dbt_run"]
    assert op_names_in_order(defs.get_job_def("second")) == ["step_1_dbt_seed", "step_2_dbt_test"]
