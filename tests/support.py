"""Helpers for tests: the sample project copy, its audit table, and run outcomes."""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
import yaml

from tests.jobs import reconstructable_job

REPO_ROOT_PROJECT = Path(__file__).resolve().parent.parent / "dbt_project"

SEED_NAMES = frozenset({"raw_customers", "raw_orders", "raw_payments"})
MODEL_NAMES = frozenset(
    {
        "stg_customers",
        "stg_orders",
        "stg_payments",
        "int_order_payments",
        "int_customer_orders",
        "fct_orders",
        "dim_customers",
        "customer_lifetime_value",
        "fct_daily_revenue",
        "monthly_revenue",
        "payment_method_mix",
        "order_status_summary",
        "customer_cohorts",
    }
)
# Models downstream of fct_orders: they are skipped when it fails.
FCT_ORDERS_DESCENDANTS = frozenset(
    {
        "fct_daily_revenue",
        "monthly_revenue",
        "order_status_summary",
        "customer_lifetime_value",
        "customer_cohorts",
    }
)


@dataclass(frozen=True)
class Build:
    """One row of the dbt_audit table that the sample project's hooks write."""

    node: str
    resource_type: str
    invocation_id: str
    command: str
    full_refresh: bool
    run_label: str


class SampleProject:
    """A private copy of the sample dbt project with its own DuckDB database."""

    def __init__(self, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.path = path
        self.database = path / "warehouse.duckdb"
        self._monkeypatch = monkeypatch
        self._seen_builds = 0

    @classmethod
    def copy_of(
        cls, source: Path, destination: Path, monkeypatch: pytest.MonkeyPatch
    ) -> SampleProject:
        shutil.copytree(
            source,
            destination,
            ignore=shutil.ignore_patterns(
                "target", "logs", "dbt_packages", "*.duckdb", "*.duckdb.wal"
            ),
        )
        return cls(destination, monkeypatch)

    def break_models(self, *names: str) -> None:
        """Make models fail at run time through the sample project's demo switch."""
        self._monkeypatch.setenv("DBT_DEMO_BROKEN_MODELS", ",".join(names))

    def fix_models(self) -> None:
        self._monkeypatch.delenv("DBT_DEMO_BROKEN_MODELS", raising=False)

    def write(self, relative_path: str, text: str) -> Path:
        path = self.path / relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def remove(self, relative_path: str) -> None:
        (self.path / relative_path).unlink()

    def update_project_yml(self, **changes: Any) -> None:
        path = self.path / "dbt_project.yml"
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        config.update(changes)
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    def all_builds(self) -> list[Build]:
        if not self.database.exists():
            return []
        with duckdb.connect(str(self.database)) as connection:
            rows = connection.execute(
                "select node, resource_type, invocation_id, command, full_refresh, run_label "
                "from main.dbt_audit order by rowid"
            ).fetchall()
        return [Build(*row) for row in rows]

    def new_builds(self) -> list[Build]:
        """Return the builds recorded since the previous call."""
        builds = self.all_builds()
        fresh = builds[self._seen_builds :]
        self._seen_builds = len(builds)
        return fresh


def built_nodes(builds: list[Build]) -> Counter[str]:
    return Counter(build.node for build in builds)


@dataclass(frozen=True)
class RunOutcome:
    """What a user sees of a finished run."""

    run_id: str
    success: bool
    status: dg.DagsterRunStatus
    tags: dict[str, str]
    step_status: dict[str, str]  # executed steps only: a step skipped after a failure has no stats
    parent_run_id: str | None
    root_run_id: str | None

    def rerun_tags(self) -> dict[str, str]:
        """Return the tags that mark a rerun (mode and first step), when set."""
        keys = ("dbt_rerun/rerun_mode", "dbt_rerun/resumed_from_step")
        return {key: self.tags[key] for key in keys if self.tags.get(key)}


def outcome_of(instance: dg.DagsterInstance, run_id: str) -> RunOutcome:
    run = instance.get_run_by_id(run_id)
    assert run is not None
    stats = instance.get_run_step_stats(run_id)
    return RunOutcome(
        run_id=run_id,
        success=run.status == dg.DagsterRunStatus.SUCCESS,
        status=run.status,
        tags=dict(run.tags),
        step_status={stat.step_key: stat.status.value for stat in stats if stat.status},
        parent_run_id=run.parent_run_id,
        root_run_id=run.root_run_id,
    )


class JobRunner:
    """Runs one reconstructable dbt job on a persistent instance, like a run worker would."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        name: str,
        project: SampleProject,
        steps: list[str],
        **options: Any,
    ) -> None:
        self.instance = instance
        self.job = reconstructable_job(name, str(project.path), steps, **options)

    def run(self, run_config: dict[str, Any] | None = None) -> RunOutcome:
        with dg.execute_job(
            self.job, instance=self.instance, raise_on_error=False, run_config=run_config
        ) as result:
            return outcome_of(self.instance, result.run_id)

    def rerun_from_failure(
        self, parent_run_id: str, run_config: dict[str, Any] | None = None
    ) -> RunOutcome:
        options = dg.ReexecutionOptions.from_failure(parent_run_id, self.instance)
        return self._reexecute(options, run_config)

    def rerun_all_steps(self, parent_run_id: str) -> RunOutcome:
        return self._reexecute(dg.ReexecutionOptions(parent_run_id=parent_run_id))

    def rerun_steps(self, parent_run_id: str, steps: list[str]) -> RunOutcome:
        return self._reexecute(
            dg.ReexecutionOptions(parent_run_id=parent_run_id, step_selection=steps)
        )

    def _reexecute(
        self, options: dg.ReexecutionOptions, run_config: dict[str, Any] | None = None
    ) -> RunOutcome:
        with dg.execute_job(
            self.job,
            instance=self.instance,
            raise_on_error=False,
            reexecution_options=options,
            run_config=run_config,
        ) as result:
            return outcome_of(self.instance, result.run_id)


def step_metadata(instance: dg.DagsterInstance, run_id: str, step_key: str) -> dict[str, Any]:
    """Return the metadata of a step's output, or of its failure if it failed."""
    records = instance.all_logs(run_id)
    found: dict[str, Any] = {}
    for record in records:
        event = record.dagster_event
        if event is None or event.step_key != step_key:
            continue
        if event.event_type_value == "STEP_OUTPUT":
            found = {key: value.value for key, value in event.event_specific_data.metadata.items()}
        if event.event_type_value == "STEP_FAILURE" and event.event_specific_data.user_failure_data:
            failure = event.event_specific_data.user_failure_data
            found = {key: value.value for key, value in failure.metadata.items()}
            found["description"] = failure.description
    return found


def engine_messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [
        record.dagster_event.message or ""
        for record in instance.all_logs(run_id)
        if record.dagster_event and record.dagster_event.event_type_value == "ENGINE_EVENT"
    ]


def tree_digest(path: Path) -> str:
    """Hash every file below a directory, to prove nothing in it changed."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def run_log_text(instance: dg.DagsterInstance, run_id: str) -> str:
    """Return every event message of a run, with the text of any error it carries."""
    lines: list[str] = []
    for record in instance.all_logs(run_id):
        lines.append(record.message or "")
        event = record.dagster_event
        error = getattr(event.event_specific_data, "error", None) if event else None
        if error is not None:
            lines.append(error.to_string())
    return "\n".join(lines)
