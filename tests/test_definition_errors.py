"""Bad input is rejected when the job is built, with a message that names it and the fix."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from packaging.version import Version

from dbt_rerun_dagster import (
    DbtJobDefinitionError,
    InvalidStepError,
    build_dbt_definitions,
    build_dbt_job,
)
from dbt_rerun_dagster.compat import check_dbt_version
from tests.support import SampleProject


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("python load.py", r"Step 2 \('python load.py'\) is invalid: it is not a dbt command"),
        ("dbt frobnicate", r"No such command 'frobnicate'; run 'dbt --help'"),
        (
            "dbt run --select 'tag:daily",
            r"cannot be split into arguments \(No closing quotation\); check its quotes",
        ),
        ("dbt run --selct tag:daily", r"No such option.*--selct"),
        ("dbt run --threads many", r"Invalid value for '--threads'"),
        ("dbt run --vars '{a: [}'", r"not valid YAML"),
        (
            "dbt run --target-path elsewhere",
            r"remove --target-path: it is set from the artifact directory",
        ),
        ("dbt retry", r"the plugin runs `dbt retry` itself"),
        ("dbt docs serve", r"starts a web server"),
        ("dbt docs", r"'dbt docs' needs a subcommand"),
        ("dbt", r"it names no dbt subcommand"),
        ("   ", r"must be a non-empty dbt command string"),
        ("dbt run --help", r"remove --help"),
    ],
)
def test_invalid_step_names_step_and_fix(project: SampleProject, step: str, message: str) -> None:
    with pytest.raises(InvalidStepError, match=message):
        build_dbt_job("bad", project.path, ["dbt seed", step])


def test_missing_project_dir(tmp_path: Path) -> None:
    with pytest.raises(
        DbtJobDefinitionError, match=r"has no dbt_project.yml. Pass the directory that contains"
    ):
        build_dbt_job("bad", tmp_path / "nowhere", ["dbt run"])


def test_missing_profiles_dir(project: SampleProject, tmp_path: Path) -> None:
    empty = tmp_path / "no_profiles"
    empty.mkdir()
    with pytest.raises(
        DbtJobDefinitionError, match=r"No profiles.yml found in .*no_profiles. Pass profiles_dir="
    ):
        build_dbt_job("bad", project.path, ["dbt run"], profiles_dir=empty)


def test_empty_step_list(project: SampleProject) -> None:
    with pytest.raises(DbtJobDefinitionError, match=r"Job 'empty' has no steps"):
        build_dbt_job("empty", project.path, [])


def test_steps_as_single_string(project: SampleProject) -> None:
    with pytest.raises(
        DbtJobDefinitionError, match=r"steps must be a list of dbt command strings, got str"
    ):
        build_dbt_job("bad", project.path, "dbt run")  # type: ignore[arg-type]


def test_old_dbt_core_is_rejected() -> None:
    with pytest.raises(
        DbtJobDefinitionError,
        match=r"dbt-core 1.5.9 is installed.*pip install 'dbt-core>=1.6,<1.12'",
    ):
        check_dbt_version(Version("1.5.9"))


def test_supported_dbt_core_passes() -> None:
    assert check_dbt_version(Version("1.6.0")) == Version("1.6.0")


def test_definitions_reject_foreign_jobs() -> None:
    @dg.op
    def noop() -> None: ...

    @dg.job
    def plain_job() -> None:
        noop()

    with pytest.raises(DbtJobDefinitionError, match=r"is not a job built by build_dbt_job"):
        build_dbt_definitions(plain_job)


def test_definitions_reject_duplicate_names(project: SampleProject) -> None:
    first = build_dbt_job("same", project.path, ["dbt run"])
    second = build_dbt_job("same", project.path, ["dbt test"])
    with pytest.raises(DbtJobDefinitionError, match=r"Two jobs are named 'same'"):
        build_dbt_definitions(first, second)


def test_reserved_job_tags_rejected(project: SampleProject) -> None:
    with pytest.raises(
        DbtJobDefinitionError, match=r"Job tags dbt_rerun/rerun_mode are written by"
    ):
        build_dbt_job("tagged", project.path, ["dbt run"], tags={"dbt_rerun/rerun_mode": "x"})


def test_unknown_target_rejected(project: SampleProject) -> None:
    with pytest.raises(
        DbtJobDefinitionError,
        match=r"Target 'nope' is not in profile 'jaffle_rerun' .*\(targets: ci, dev\)",
    ):
        build_dbt_job("bad", project.path, ["dbt run"], target="nope")


def test_empty_target_rejected(project: SampleProject) -> None:
    with pytest.raises(DbtJobDefinitionError, match=r"target must be a non-empty target name"):
        build_dbt_job("bad", project.path, ["dbt run"], target="")


def test_unknown_profile_rejected(project: SampleProject) -> None:
    project.update_project_yml(profile="missing_profile")

    with pytest.raises(DbtJobDefinitionError, match=r"Profile 'missing_profile' is not in"):
        build_dbt_job("bad", project.path, ["dbt run"])
