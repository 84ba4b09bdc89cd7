"""Wall time of the sample job through Dagster against the same commands on the plain dbt CLI.

Usage: python benchmarks/sample_job_vs_cli.py [--rounds 5]

Contenders alternate within each round, each on a fresh copy of the sample
project and a fresh DuckDB file:
- cli: `dbt seed`, `dbt run`, `dbt test` as three dbt processes, as cron would run them;
- dagster: `dagster job execute` of jaffle_nightly, one process that loads the
  code location and runs the three steps (what a run worker does).
Prints each timing, the medians and the ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STEPS = (["seed"], ["run"], ["test"])


def fresh_project(workdir: Path) -> Path:
    project = workdir / "dbt_project"
    shutil.rmtree(project, ignore_errors=True)
    shutil.copytree(
        REPO_ROOT / "dbt_project",
        project,
        ignore=shutil.ignore_patterns("target", "logs", "*.duckdb", "*.duckdb.wal"),
    )
    return project


def run_cli(workdir: Path) -> float:
    project = fresh_project(workdir)
    env = {
        **os.environ,
        "DBT_DUCKDB_PATH": str(project / "warehouse.duckdb"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    started = time.perf_counter()
    for args in STEPS:
        subprocess.run(
            [str(BIN / "dbt"), *args, "--no-use-colors"],
            cwd=project,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return time.perf_counter() - started


def run_dagster(workdir: Path) -> float:
    project = fresh_project(workdir)
    home = workdir / "dagster_home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DBT_RERUN_PROJECT_DIR": str(project),
        "DBT_DUCKDB_PATH": str(project / "warehouse.duckdb"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    command = [
        str(BIN / "dagster"),
        "job",
        "execute",
        "-m",
        "dbt_rerun_dagster.definitions",
        "-j",
        "jaffle_nightly",
    ]
    started = time.perf_counter()
    subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=5, help="rounds of each contender (default 5)"
    )
    rounds = parser.parse_args().rounds
    timings: dict[str, list[float]] = {"cli": [], "dagster": []}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        run_cli(workdir)  # warm the file cache once, untimed
        for round_number in range(1, rounds + 1):
            for name, contender in (("cli", run_cli), ("dagster", run_dagster)):
                seconds = contender(workdir)
                timings[name].append(seconds)
                print(f"round {round_number} {name:<8} {seconds:6.2f} s", flush=True)

    cli, dagster = statistics.median(timings["cli"]), statistics.median(timings["dagster"])
    print(f"median cli      {cli:6.2f} s")
    print(f"median dagster  {dagster:6.2f} s")
    print(f"ratio dagster/cli {dagster / cli:.2f}")


if __name__ == "__main__":
    main()
