"""Scenarios 1 and 4: a three-step job (seed, run, test) through the plugin against the plain dbt CLI.

Usage: python benchmarks/bench_three_step.py [--models 50 200 1000] [--rounds 3]

Contenders, alternated within each round (the first one rotates), each on a
fresh copy of the synthetic project with a new DuckDB file and no dbt
artifacts, so both parse the project from scratch:
- cli: `dbt seed`, `dbt run`, `dbt test` as three dbt processes, as cron runs them;
- plugin: `dagster job execute -m plugin_location -j bench_nightly` with a new
  DAGSTER_HOME: one process that loads the code location and runs the three
  steps in-process, as a run worker does.

Prints the medians of wall time and the ratio plugin/cli (scenario 1), and
the peak resident memory of the run worker against the largest dbt process
(scenario 4; see harness.py for how memory is measured).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from harness import (
    DAGSTER,
    NodeSet,
    Timings,
    bench_env,
    dbt_argv,
    fmt_ratio,
    fresh_project,
    log,
    markdown_table,
    new_dagster_home,
    plugin_run_results,
    pristine_project,
    rotated,
    run_measured,
)

CONTENDERS = ("cli", "plugin")
STEPS = (("seed",), ("run",), ("test",))


def run_cli(pristine: Path, workdir: Path, label: str) -> dict:
    project = fresh_project(pristine, workdir / "cli" / "project")
    env = bench_env(project)
    seconds, max_rss, tree_peak, nodes = 0.0, 0.0, 0.0, 0
    for args in STEPS:
        measured = run_measured(
            dbt_argv(*args), cwd=project, env=env, log_path=workdir / "logs" / f"{label}-cli-{args[0]}.log"
        )
        seconds += measured.seconds
        max_rss = max(max_rss, measured.max_rss_mb or 0.0)
        tree_peak = max(tree_peak, measured.tree_peak_mb)
        nodes += len(NodeSet.from_files([project / "target" / "run_results.json"]).executed())

    return {"seconds": seconds, "max_rss_mb": max_rss, "tree_peak_mb": tree_peak, "nodes": nodes}


def run_plugin(pristine: Path, workdir: Path, label: str) -> dict:
    project = fresh_project(pristine, workdir / "plugin" / "project")
    home = new_dagster_home(workdir / "plugin" / "dagster_home")
    measured = run_measured(
        [DAGSTER, "job", "execute", "-m", "plugin_location", "-j", "bench_nightly"],
        cwd=workdir,
        env=bench_env(project, dagster_home=home, plugin=True),
        log_path=workdir / "logs" / f"{label}-plugin.log",
    )
    run_dirs = list((home / "dbt_rerun_artifacts" / "bench_nightly").iterdir())
    run_ids = [path.name for path in run_dirs if path.name != "partial_parse"]
    nodes = NodeSet.from_files(plugin_run_results(home, "bench_nightly", run_ids[0]))

    return {
        "seconds": measured.seconds,
        "max_rss_mb": measured.max_rss_mb or 0.0,
        "tree_peak_mb": measured.tree_peak_mb,
        "nodes": len(nodes.executed()),
    }


def run(workroot: Path, model_counts: list[int], rounds: int) -> dict:
    """Run scenarios 1 and 4 and return their markdown tables and raw samples."""
    time_rows, memory_rows, raw = [], [], {}
    for model_count in model_counts:
        pristine = pristine_project(workroot, model_count)
        workdir = workroot / "three_step" / f"n{model_count}"
        log(f"[three-step] N={model_count}: warm-up (untimed)")
        run_cli(pristine, workdir, "warmup")

        seconds, max_rss, tree_peak = Timings(), Timings(), Timings()
        node_counts: dict[str, set[int]] = {name: set() for name in CONTENDERS}
        for round_index in range(rounds):
            for name in rotated(CONTENDERS, round_index):
                runner = run_cli if name == "cli" else run_plugin
                outcome = runner(pristine, workdir, f"round{round_index + 1}")
                seconds.add(name, outcome["seconds"])
                max_rss.add(name, outcome["max_rss_mb"])
                tree_peak.add(name, outcome["tree_peak_mb"])
                node_counts[name].add(outcome["nodes"])
                log(
                    f"[three-step] N={model_count} round {round_index + 1} {name:<6} "
                    f"{outcome['seconds']:7.2f} s  max RSS {outcome['max_rss_mb']:6.0f} MB  "
                    f"tree peak {outcome['tree_peak_mb']:6.0f} MB  nodes {outcome['nodes']}"
                )

        cli, plugin = seconds.median("cli"), seconds.median("plugin")
        same_nodes = node_counts["cli"] == node_counts["plugin"] and len(node_counts["cli"]) == 1
        time_rows.append(
            [
                model_count,
                rounds,
                f"{cli:.2f}",
                f"{plugin:.2f}",
                fmt_ratio(plugin, cli),
                f"{min(seconds.samples['cli']):.2f}-{max(seconds.samples['cli']):.2f}",
                f"{min(seconds.samples['plugin']):.2f}-{max(seconds.samples['plugin']):.2f}",
                ", ".join(str(count) for count in sorted(node_counts["plugin"]))
                + ("" if same_nodes else " (differs from cli!)"),
            ]
        )
        cli_rss, plugin_rss = max_rss.median("cli"), max_rss.median("plugin")
        memory_rows.append(
            [
                model_count,
                f"{cli_rss:.0f}",
                f"{plugin_rss:.0f}",
                f"{plugin_rss - cli_rss:+.0f}",
                f"{tree_peak.median('cli'):.0f}",
                f"{tree_peak.median('plugin'):.0f}",
            ]
        )
        raw[model_count] = {
            "seconds": seconds.samples,
            "max_rss_mb": max_rss.samples,
            "tree_peak_mb": tree_peak.samples,
        }
        log(f"[three-step] N={model_count}: median cli {cli:.2f} s, plugin {plugin:.2f} s, ratio {plugin / cli:.2f}")

    time_table = markdown_table(
        [
            "N models",
            "rounds",
            "cli median s",
            "plugin median s",
            "plugin/cli",
            "cli range s",
            "plugin range s",
            "nodes run",
        ],
        time_rows,
    )
    memory_table = markdown_table(
        [
            "N models",
            "cli max RSS MB (largest dbt process)",
            "plugin max RSS MB (run worker)",
            "plugin - cli MB",
            "cli tree peak MB (polled)",
            "plugin tree peak MB (polled)",
        ],
        memory_rows,
    )

    return {"time_table": time_table, "memory_table": memory_table, "raw": raw}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[50, 200, 1000], help="project sizes (default 50 200 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each contender (default 3)")
    parser.add_argument("--workdir", type=Path, help="work directory (default: a new /tmp/bench_* directory, removed at the end)")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_", dir="/tmp") as tmp:
        result = run(options.workdir or Path(tmp), options.models, options.rounds)

    print("\nScenario 1: wall time of seed, run, test\n")
    print(result["time_table"])
    print("\nScenario 4: peak resident memory\n")
    print(result["memory_table"])


if __name__ == "__main__":
    main()
