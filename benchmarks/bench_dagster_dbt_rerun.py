"""Scenario 3: rerun from failure of `dbt build` through the plugin, through dagster-dbt, and on the CLI.

Usage: python benchmarks/bench_dagster_dbt_rerun.py [--models 200 1000] [--rounds 3]

Set-up, untimed, once per project size: with the middle domain's hub model
broken (BENCH_FAIL_MODELS), one `dbt build` fails three ways:
- cli: `dbt build` on the plain CLI;
- plugin: the job bench_build (one step, `dbt build`) on a persistent Dagster instance;
- dagster-dbt: the asset job of dagster_dbt_location.py (`@dbt_assets` running
  `dbt build` through `DbtCliResource`) on another persistent instance.
Each failed state is saved and restored, at the same paths, before every
timed rerun. Reruns have the failure switch unset (the fix).

Timed contenders, alternated within each round (the first one rotates):
- cli: `dbt retry`;
- plugin: a new process that calls `dagster.execute_job` with
  `ReexecutionOptions.from_failure`, so the step runs `dbt retry`;
- dagster-dbt: the same re-execution from failure of the asset job, which is
  Dagster's own: it reruns the failed op with its asset selection;
- Dagster floor: a fresh run of noop_location.py (one op that does nothing),
  started the same way: the fixed cost of any Dagster run worker.

Nodes executed are counted from the run_results.json of each invocation.
The column "exact" is yes when a rerun ran exactly the failed and skipped
nodes of its parent. The parents' peak memory (one sample each) is printed too.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bench_rerun import RUNS_SCRIPT, FailedState, fail_with_cli, fail_with_plugin, rerun_plugin
from harness import (
    PYTHON,
    NodeSet,
    Timings,
    bench_env,
    dagster_dbt_run_results,
    dbt_argv,
    fmt_ratio,
    fresh_project,
    log,
    markdown_table,
    new_dagster_home,
    pristine_project,
    rotated,
    run_measured,
)
from synthetic_project import default_failing_model

CONTENDERS = ("cli", "plugin", "dagster_dbt", "dagster_floor")
PLUGIN_JOB = "bench_build"


def fail_with_dagster_dbt(pristine: Path, workdir: Path, failing_model: str) -> FailedState:
    """Parse the project, run the asset job with `failing_model` broken, and save the failed state."""
    state = FailedState(workdir, "dagster_dbt")
    fresh_project(pristine, state.project)
    new_dagster_home(state.home)
    # dagster-dbt reads target/manifest.json when the code location loads.
    run_measured(dbt_argv("parse"), cwd=state.project, env=bench_env(state.project), log_path=workdir / "logs" / "parse.log")
    measured = run_measured(
        [PYTHON, RUNS_SCRIPT, "execute", "dagster_dbt_location", "get_assets_job"],
        cwd=workdir,
        env=bench_env(state.project, dagster_home=state.home, fail_models=[failing_model]),
        log_path=workdir / "logs" / "parent-dagster-dbt.log",
    )
    summary = measured.last_json_line()
    if summary["success"]:
        raise RuntimeError(f"the dagster-dbt parent run succeeded although {failing_model} was broken")
    state.parent_run_id = summary["run_id"]
    state.parent_nodes = NodeSet.from_files(dagster_dbt_run_results(state.project, state.parent_run_id))
    state.parent_memory = (measured.max_rss_mb, measured.tree_peak_mb)
    state.save()

    return state


def rerun_dagster_dbt(state: FailedState, workdir: Path, label: str) -> dict:
    state.restore()
    measured = run_measured(
        [PYTHON, RUNS_SCRIPT, "reexecute", "dagster_dbt_location", "get_assets_job", state.parent_run_id, "from_failure"],
        cwd=workdir,
        env=bench_env(state.project, dagster_home=state.home),
        log_path=workdir / "logs" / f"{label}-dagster-dbt.log",
    )
    summary = measured.last_json_line()
    if not summary["success"]:
        raise RuntimeError(f"the dagster-dbt rerun from failure failed; see {workdir / 'logs'}")
    files = dagster_dbt_run_results(state.project, summary["run_id"])
    selections = [json.loads(path.read_text())["args"].get("select") for path in files]

    return {"seconds": measured.seconds, "nodes": NodeSet.from_files(files), "selections": selections}


def run_dagster_floor(workdir: Path, label: str) -> dict:
    home = workdir / "floor" / "dagster_home"
    if not home.exists():
        new_dagster_home(home)
    measured = run_measured(
        [PYTHON, RUNS_SCRIPT, "execute", "noop_location", "get_noop_job"],
        cwd=workdir,
        env=bench_env(workdir, dagster_home=home),
        log_path=workdir / "logs" / f"{label}-dagster-floor.log",
    )

    return {"seconds": measured.seconds, "execute_job_seconds": measured.last_json_line()["execute_job_seconds"]}


def rerun_cli(state: FailedState, workdir: Path, label: str) -> dict:
    state.restore()
    measured = run_measured(
        dbt_argv("retry"), cwd=state.project, env=bench_env(state.project), log_path=workdir / "logs" / f"{label}-cli-retry.log"
    )

    return {"seconds": measured.seconds, "nodes": NodeSet.from_files([state.project / "target" / "run_results.json"])}


def run(workroot: Path, model_counts: list[int], rounds: int, dagster_dbt_rounds: int | None = None) -> dict:
    """Run scenario 3 and return its markdown tables and raw samples.

    The dagster-dbt contender, which rebuilds the whole project, runs only in
    the first `dagster_dbt_rounds` rounds (default: every round).
    """
    time_rows, node_rows, memory_rows, raw = [], [], [], {}
    for model_count in model_counts:
        pristine = pristine_project(workroot, model_count)
        failing = default_failing_model(model_count)
        workdir = workroot / "dagster_dbt_rerun" / f"n{model_count}"
        log(f"[dagster-dbt] N={model_count}: failing {failing} in the parent runs (untimed)")
        states = {
            "cli": fail_with_cli(pristine, workdir, failing, "build"),
            "plugin": fail_with_plugin(pristine, workdir, failing, PLUGIN_JOB, "get_build_job"),
            "dagster_dbt": fail_with_dagster_dbt(pristine, workdir, failing),
        }

        seconds, execute_job, step = Timings(), Timings(), Timings()
        nodes: dict[str, NodeSet] = {}
        selections = None
        for round_index in range(rounds):
            label = f"round{round_index + 1}"
            for name in rotated(CONTENDERS, round_index):
                if name == "dagster_dbt" and round_index >= (dagster_dbt_rounds or rounds):
                    continue
                if name == "cli":
                    outcome = rerun_cli(states[name], workdir, label)
                elif name == "plugin":
                    outcome = rerun_plugin(states[name], workdir, label, "from_failure", "get_build_job", PLUGIN_JOB)
                    execute_job.add(name, outcome["execute_job_seconds"])
                    step.add(name, outcome["step_seconds"].get("step_1_dbt_build", 0.0))
                elif name == "dagster_floor":
                    outcome = run_dagster_floor(workdir, label)
                    execute_job.add(name, outcome["execute_job_seconds"])
                else:
                    outcome = rerun_dagster_dbt(states[name], workdir, label)
                    selections = outcome["selections"]
                seconds.add(name, outcome["seconds"])
                if "nodes" in outcome:
                    nodes[name] = outcome["nodes"]
                log(f"[dagster-dbt] N={model_count} {label} {name:<12} {outcome['seconds']:7.2f} s")

        raw[model_count] = {"seconds": seconds.samples, "dagster_dbt_select": selections, "exact": {}}
        cli = seconds.median("cli")
        time_rows.append(
            [
                model_count,
                f"{rounds} ({dagster_dbt_rounds or rounds} for dagster-dbt)",
                f"{cli:.2f}",
                f"{seconds.median('plugin'):.2f}",
                f"{seconds.median('dagster_dbt'):.2f}",
                fmt_ratio(seconds.median("plugin"), cli),
                fmt_ratio(seconds.median("dagster_dbt"), cli),
                f"{execute_job.median('plugin'):.2f}",
                f"{step.median('plugin'):.2f}",
                f"{seconds.median('dagster_floor'):.2f}",
            ]
        )
        for name in ("cli", "plugin", "dagster_dbt"):
            expected = states[name].parent_nodes.with_status("error", "skipped")
            exact = nodes[name].executed() == expected
            raw[model_count]["exact"][name] = exact
            node_rows.append(
                [
                    model_count,
                    name,
                    states[name].parent_nodes.by_type(expected),
                    nodes[name].by_type(),
                    "yes" if exact else "NO",
                ]
            )
        memory_row = [model_count]
        for name in ("cli", "plugin", "dagster_dbt"):
            max_rss, tree_peak = states[name].parent_memory
            memory_row += [f"{max_rss or 0:.0f}", f"{tree_peak:.0f}"]
        memory_rows.append(memory_row)

    time_table = markdown_table(
        [
            "N models",
            "rounds",
            "cli `dbt retry` s",
            "plugin from failure s",
            "dagster-dbt from failure s",
            "plugin/cli",
            "dagster-dbt/cli",
            "plugin: in execute_job s",
            "plugin: retry step s (event log)",
            "Dagster floor: no-op run s",
        ],
        time_rows,
    )
    node_table = markdown_table(
        ["N models", "contender", "parent: failed + skipped", "rerun: nodes executed", "exact"],
        node_rows,
    )
    memory_table = markdown_table(
        [
            "N models",
            "cli max RSS MB",
            "cli tree peak MB",
            "plugin max RSS MB (run worker)",
            "plugin tree peak MB",
            "dagster-dbt max RSS MB (largest process)",
            "dagster-dbt tree peak MB (run worker + dbt)",
        ],
        memory_rows,
    )

    return {"time_table": time_table, "node_table": node_table, "memory_table": memory_table, "raw": raw}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[200, 1000], help="project sizes (default 200 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each contender (default 3)")
    parser.add_argument(
        "--dagster-dbt-rounds", type=int, help="rounds of the dagster-dbt contender (default: --rounds)"
    )
    parser.add_argument("--workdir", type=Path, help="work directory (default: a new /tmp/bench_* directory, removed at the end)")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_", dir="/tmp") as tmp:
        result = run(options.workdir or Path(tmp), options.models, options.rounds, options.dagster_dbt_rounds)

    print("\nScenario 3: rerun from failure of `dbt build`\n")
    print(result["time_table"])
    print()
    print(result["node_table"])
    print("\nPeak memory of the failed `dbt build` (parents, one sample each)\n")
    print(result["memory_table"])


if __name__ == "__main__":
    main()
