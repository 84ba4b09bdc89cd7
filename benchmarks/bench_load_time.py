"""Scenario 5: time to load the code location as the dbt project grows, plugin against dagster-dbt.

Usage: python benchmarks/bench_load_time.py [--models 50 200 1000 2000] [--rounds 3]

Contenders, alternated within each round (the first one rotates), on the
same generated project:
- plugin: plugin_location.py, two jobs built with `build_dbt_job`;
- dagster-dbt: dagster_dbt_location.py, `@dbt_assets` over target/manifest.json
  (written by `dbt parse` beforehand, untimed).

Two figures per contender:
- validate: wall time of `dagster definitions validate -m MODULE`, a new
  process that imports Dagster and loads the code location, as a code server does;
- import: in a new interpreter that has already imported dagster, dagster_dbt
  and dbt's command line, the time to import the location module, which is
  the part that depends on the project.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from harness import (
    DAGSTER,
    PYTHON,
    Timings,
    bench_env,
    dbt_argv,
    log,
    markdown_table,
    new_dagster_home,
    pristine_project,
    rotated,
    run_measured,
)

CONTENDERS = ("plugin", "dagster_dbt")
MODULES = {"plugin": "plugin_location", "dagster_dbt": "dagster_dbt_location"}

_IMPORT_PROBE = """\
import importlib, json, sys, time
import dagster, dagster_dbt, dbt.cli.main
started = time.perf_counter()
importlib.import_module(sys.argv[1])
print(json.dumps({"import_seconds": time.perf_counter() - started}))
"""


def run(workroot: Path, model_counts: list[int], rounds: int) -> dict:
    """Run scenario 5 and return its markdown table and raw samples."""
    rows, raw = [], {}
    for model_count in model_counts:
        project = pristine_project(workroot, model_count)
        workdir = workroot / "load_time" / f"n{model_count}"
        home = new_dagster_home(workdir / "dagster_home")
        if not (project / "target" / "manifest.json").is_file():
            log(f"[load] N={model_count}: dbt parse for dagster-dbt's manifest (untimed)")
            run_measured(dbt_argv("parse"), cwd=project, env=bench_env(project), log_path=workdir / "logs" / "parse.log")

        validate, imports = Timings(), Timings()
        for round_index in range(rounds):
            for name in rotated(CONTENDERS, round_index):
                label = f"round{round_index + 1}-{name}"
                env = bench_env(project, dagster_home=home, plugin=name == "plugin")
                measured = run_measured(
                    [DAGSTER, "definitions", "validate", "-m", MODULES[name]],
                    cwd=workdir,
                    env=env,
                    log_path=workdir / "logs" / f"{label}-validate.log",
                )
                validate.add(name, measured.seconds)
                probe = run_measured(
                    [PYTHON, "-c", _IMPORT_PROBE, MODULES[name]],
                    cwd=workdir,
                    env=env,
                    log_path=workdir / "logs" / f"{label}-import.log",
                )
                imports.add(name, probe.last_json_line()["import_seconds"])
                log(
                    f"[load] N={model_count} round {round_index + 1} {name:<12} validate "
                    f"{measured.seconds:6.2f} s  import {imports.samples[name][-1]:6.2f} s"
                )

        raw[model_count] = {"validate": validate.samples, "import": imports.samples}
        rows.append(
            [
                model_count,
                rounds,
                f"{validate.median('plugin'):.2f}",
                f"{imports.median('plugin'):.2f}",
                f"{validate.median('dagster_dbt'):.2f}",
                f"{imports.median('dagster_dbt'):.2f}",
            ]
        )

    table = markdown_table(
        [
            "N models",
            "rounds",
            "plugin validate s",
            "plugin import s",
            "dagster-dbt validate s",
            "dagster-dbt import s",
        ],
        rows,
    )

    return {"table": table, "raw": raw}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", type=int, nargs="+", default=[50, 200, 1000, 2000], help="project sizes (default 50 200 1000 2000)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each contender (default 3)")
    parser.add_argument("--workdir", type=Path, help="work directory (default: a new /tmp/bench_* directory, removed at the end)")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_", dir="/tmp") as tmp:
        result = run(options.workdir or Path(tmp), options.models, options.rounds)

    print("\nScenario 5: code location load time\n")
    print(result["table"])


if __name__ == "__main__":
    main()
