"""Fixtures: a copy of the sample dbt project and a persistent Dagster instance per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from tests.servers import write_instance_config
from tests.support import SampleProject

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_PROJECT = REPO_ROOT / "dbt_project"


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    write_instance_config(home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    return home


@pytest.fixture
def instance(dagster_home: Path) -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.get() as persistent_instance:
        yield persistent_instance


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SampleProject:
    """A private copy of dbt_project/ with its own DuckDB file and no demo failures."""
    monkeypatch.delenv("DBT_DEMO_BROKEN_MODELS", raising=False)
    monkeypatch.delenv("DBT_PROFILES_DIR", raising=False)
    sample = SampleProject.copy_of(SAMPLE_PROJECT, tmp_path / "dbt_project", monkeypatch)
    monkeypatch.setenv("DBT_DUCKDB_PATH", str(sample.database))

    return sample
