"""End-to-end demo on the sample project: a failed run, the fix, a rerun from failure.

Run it with `python -m dbt_rerun_dagster.demo` (or `make demo`). Runs are
stored in the Dagster instance at $DAGSTER_HOME (default: .dagster_home in
the current directory), so `dagster dev` shows them afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

import dagster as dg
import duckdb

from dbt_rerun_dagster.tags import RERUN_MODE_TAG, RESUMED_FROM_STEP_TAG

BROKEN_MODEL = "fct_orders"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dagster-home",
        default=os.environ.get("DAGSTER_HOME", ".dagster_home"),
        help="Dagster instance directory (default: $DAGSTER_HOME, else ./.dagster_home)",
    )
    options = parser.parse_args(argv)
    home = _prepare_dagster_home(Path(options.dagster_home))

    # The demo owns this process, so it sets the environment the way a user
    # would in a shell before starting Dagster.
    os.environ["DAGSTER_HOME"] = str(home)
    from dbt_rerun_dagster import definitions

    warehouse = definitions.SAMPLE_PROJECT_DIR / os.environ.get(
        "DBT_DUCKDB_PATH", "warehouse.duckdb"
    )
    job = dg.build_reconstructable_job("dbt_rerun_dagster.demo", "sample_nightly_job")
    with dg.DagsterInstance.get() as instance:
        summary = [f"Dagster instance: {home}", f"Warehouse: {warehouse}", ""]
        summary.append(
            f"1. Fresh run with {BROKEN_MODEL} broken (DBT_DEMO_BROKEN_MODELS={BROKEN_MODEL})"
        )
        print(summary[-1], flush=True)
        os.environ["DBT_DEMO_BROKEN_MODELS"] = BROKEN_MODEL
        seen = _audit_rows(warehouse)
        with dg.execute_job(job, instance=instance, raise_on_error=False) as result:
            failed_run_id = result.run_id
        seen = _summarize(instance, failed_run_id, warehouse, seen, summary)

        summary.append("2. Fix: unset DBT_DEMO_BROKEN_MODELS, then rerun from failure")
        print(summary[-1], flush=True)
        del os.environ["DBT_DEMO_BROKEN_MODELS"]
        options_from_failure = dg.ReexecutionOptions.from_failure(failed_run_id, instance)
        with dg.execute_job(
            job, instance=instance, raise_on_error=False, reexecution_options=options_from_failure
        ) as result:
            rerun_id = result.run_id
        _summarize(instance, rerun_id, warehouse, seen, summary)

        rerun = instance.get_run_by_id(rerun_id)
        succeeded = rerun is not None and rerun.status == dg.DagsterRunStatus.SUCCESS
        summary.append(
            f"Both runs are in the UI: DAGSTER_HOME={home} dagster dev -h 127.0.0.1 "
            "(what `make dev` runs for ./.dagster_home), then open http://127.0.0.1:3000"
        )

    # dbt and Dagster log to the console while the runs execute, so the
    # summary comes last, where a reader finds it.
    print("\n===== Summary =====\n" + "\n".join(summary))

    return 0 if succeeded else 1


def sample_nightly_job() -> dg.JobDefinition:
    """Return the sample location's main job; `execute_job` needs a module-level factory."""
    from dbt_rerun_dagster.definitions import jaffle_nightly

    return jaffle_nightly


def _prepare_dagster_home(home: Path) -> Path:
    home = home.expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n", encoding="utf-8")

    return home


def _audit_rows(warehouse: Path) -> int:
    if not warehouse.exists():
        return 0
    with duckdb.connect(str(warehouse)) as connection:
        tables = connection.execute(
            "select count(*) from information_schema.tables where table_name = 'dbt_audit'"
        ).fetchone()
        if not tables or not tables[0]:
            return 0
        row = connection.execute("select count(*) from main.dbt_audit").fetchone()

    return int(row[0]) if row else 0


def _new_builds(warehouse: Path, seen: int) -> list[tuple[str, str]]:
    with duckdb.connect(str(warehouse)) as connection:
        rows = connection.execute(
            "select resource_type, node from main.dbt_audit order by rowid offset ?", [seen]
        ).fetchall()

    return [(str(kind), str(node)) for kind, node in rows]


def _summarize(
    instance: dg.DagsterInstance, run_id: str, warehouse: Path, seen: int, summary: list[str]
) -> int:
    """Append a run's status, steps and built nodes to `summary`; return the audit rows seen."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise RuntimeError(f"run {run_id} is not in the instance")
    stats = {
        stat.step_key: stat.status.value
        for stat in instance.get_run_step_stats(run_id)
        if stat.status
    }
    builds = _new_builds(warehouse, seen)
    by_kind = Counter(kind for kind, _ in builds)

    summary.append(f"   run {run_id}: {run.status.value}")
    if run.tags.get(RERUN_MODE_TAG):
        summary.append(
            f"   rerun mode: {run.tags[RERUN_MODE_TAG]}, resumed from "
            f"{run.tags.get(RESUMED_FROM_STEP_TAG)}, parent {run.parent_run_id}"
        )
    modes = _step_modes(instance, run_id)
    for step in ("step_1_dbt_seed", "step_2_dbt_run", "step_3_dbt_test"):
        mode = f" ({modes[step]})" if step in modes else ""
        summary.append(f"   {step:<18} {stats.get(step, 'not run')}{mode}")
    counts = ", ".join(f"{count} {kind}s" for kind, count in sorted(by_kind.items())) or "nothing"
    summary.append(f"   built {counts}: {', '.join(node for _, node in builds) or '-'}\n")

    return seen + len(builds)


def _step_modes(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """Map each step to the mode its output metadata records (dbt retry, full command...)."""
    modes: dict[str, str] = {}
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_OUTPUT):
        event = record.dagster_event
        mode = event.event_specific_data.metadata.get("mode") if event else None
        if event and event.step_key and mode is not None:
            modes[event.step_key] = str(mode.value)

    return modes


if __name__ == "__main__":
    sys.exit(main())
