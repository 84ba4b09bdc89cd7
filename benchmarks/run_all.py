"""Run every benchmark scenario and print (and optionally save) the result tables.

Usage: python benchmarks/run_all.py [--quick] [--report FILE.md] [--json FILE.json] [--keep-workdir]

Full run (about 40 minutes on 2 cores at a load average below 2):
- scenarios 1 and 4, three-step job against the plain CLI: N = 50, 200, 1000 (3 rounds);
- scenario 2, rerun from failure against `dbt retry`: N = 200, 1000 (3 rounds);
- scenario 3, `dbt build` rerun from failure, plugin against dagster-dbt: N = 200, 1000
  (3 rounds; at N = 1000 dagster-dbt, which rebuilds everything, runs in the first round only);
- scenario 5, code location load time: N = 50, 200, 1000, 2000 (3 rounds);
- plain `dbt test` with and without dbt_rerun_dagster visible to dbt's plugin
  discovery, as after a regular install: N = 50 (5 rounds);
- the cost of one asset event in Dagster's event log: 1000 events (3 rounds).
`--quick` runs every scenario at N = 50 (scenario 5 also at N = 200) with
1 or 2 rounds, in a few minutes. Work files go to a new /tmp/bench_* directory,
removed at the end unless --keep-workdir is given. Contenders import a copy
of dbt_rerun_dagster taken at the start, so edits made during the run do not
mix two versions in one report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import bench_dagster_dbt_rerun
import bench_dbt_plugin_discovery
import bench_event_cost
import bench_load_time
import bench_rerun
import bench_three_step
from harness import log, snapshot_package

# Each scenario runs in parts, and each part is the keyword arguments of its run().
FULL_PLAN = {
    "three_step": [
        {"model_counts": [50, 200, 1000], "rounds": 3},
    ],
    "rerun": [{"model_counts": [200, 1000], "rounds": 3}],
    "dagster_dbt_rerun": [
        {"model_counts": [200], "rounds": 3},
        {"model_counts": [1000], "rounds": 3, "dagster_dbt_rounds": 1},
    ],
    "load_time": [{"model_counts": [50, 200, 1000, 2000], "rounds": 3}],
    "plugin_discovery": [{"model_counts": [50], "rounds": 5}],
    "event_cost": [{"event_counts": [1000], "rounds": 3}],
}
QUICK_PLAN = {
    "three_step": [{"model_counts": [50], "rounds": 2}],
    "rerun": [{"model_counts": [50], "rounds": 1}],
    "dagster_dbt_rerun": [{"model_counts": [50], "rounds": 1}],
    "load_time": [{"model_counts": [50, 200], "rounds": 1}],
    "plugin_discovery": [{"model_counts": [50], "rounds": 2}],
    "event_cost": [{"event_counts": [200], "rounds": 1}],
}
PACKAGES = ("dagster", "dagster-dbt", "dbt-core", "dbt-duckdb", "duckdb")


def describe_machine() -> str:
    """Return the core count, memory, OS, package versions and Python of this machine."""
    cores = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    memory = subprocess.run(["free", "-h"], capture_output=True, text=True, check=True).stdout
    total = next(line.split()[1] for line in memory.splitlines() if line.startswith("Mem:"))
    versions = ", ".join(f"{name} {version(name)}" for name in PACKAGES)

    return (
        f"- machine: {cores} cores (`nproc`), {total} memory (`free -h`), {platform.platform()}\n"
        f"- versions: {versions}, Python {platform.python_version()}"
    )


def _merge(results: list[dict]) -> dict:
    """Merge the results of one scenario run in several parts (one per rounds setting)."""
    merged: dict = {"raw": {}}
    for result in results:
        merged["raw"].update(result["raw"])
        for key, value in result.items():
            if key == "raw":
                continue
            if key in merged:
                # Keep the header of the first table and append the rows of the next ones.
                merged[key] += "\n" + "\n".join(value.splitlines()[2:])
            else:
                merged[key] = value

    return merged


def check_targets(results: dict) -> list[str]:
    """Return one line per target with the measured figure and whether it meets the target."""
    lines = []
    for model_count, raw in results.get("three_step", {}).get("raw", {}).items():
        ratio = statistics.median(raw["seconds"]["plugin"]) / statistics.median(raw["seconds"]["cli"])
        extra = statistics.median(raw["max_rss_mb"]["plugin"]) - statistics.median(raw["max_rss_mb"]["cli"])
        if model_count in (200, 1000):
            lines.append(_verdict(f"S1 N={model_count}: plugin/cli wall time {ratio:.2f}x", ratio <= 1.10, "<= 1.10x"))
        lines.append(_verdict(f"S4 N={model_count}: plugin peak RSS - cli {extra:+.0f} MB", extra <= 150, "<= +150 MB"))
    for model_count, raw in results.get("rerun", {}).get("raw", {}).items():
        from_failure = statistics.median(raw["seconds"]["plugin_from_failure"])
        retry_test = statistics.median(raw["seconds"]["cli"])
        lines.append(
            _verdict(
                f"S2 N={model_count}: from failure / cli `dbt retry` + `dbt test` {from_failure / retry_test:.2f}x",
                from_failure / retry_test <= 1.15,
                "<= 1.15x",
            )
        )
        exact = raw["exact"]["plugin from failure"] == "yes"
        lines.append(_verdict(f"S2 N={model_count}: from failure ran exactly the failed and skipped nodes", exact, "exact"))
    for model_count, raw in results.get("dagster_dbt_rerun", {}).get("raw", {}).items():
        ratio = statistics.median(raw["seconds"]["plugin"]) / statistics.median(raw["seconds"]["cli"])
        floor = raw["seconds"].get("dagster_floor")
        floor_text = f"; an empty Dagster run takes {statistics.median(floor):.2f} s" if floor else ""
        lines.append(
            _verdict(
                f"S3 N={model_count}: one-step `dbt build` job from failure / cli `dbt retry` {ratio:.2f}x{floor_text}",
                ratio <= 1.15,
                "<= 1.15x, the S2 target applied to a one-step job",
            )
        )
        lines.append(
            _verdict(f"S3 N={model_count}: plugin ran exactly the failed and skipped nodes", raw["exact"]["plugin"], "exact")
        )
    for model_count, raw in results.get("load_time", {}).get("raw", {}).items():
        if model_count >= 1000:
            seconds = statistics.median(raw["validate"]["plugin"])
            lines.append(_verdict(f"S5 N={model_count}: code location load {seconds:.2f} s", seconds < 5, "< 5 s"))

    return lines


def _verdict(text: str, met: bool, target: str) -> str:
    return f"- {'met   ' if met else 'MISSED'} {text} (target {target})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small projects and 1-2 rounds, a few minutes")
    parser.add_argument("--report", type=Path, help="also write the tables to this markdown file")
    parser.add_argument("--json", type=Path, help="also write every sample to this JSON file")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the /tmp/bench_* work directory")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(FULL_PLAN),
        help="run only these scenarios (default: all)",
    )
    options = parser.parse_args()

    plan = QUICK_PLAN if options.quick else FULL_PLAN
    modules = {
        "three_step": bench_three_step,
        "rerun": bench_rerun,
        "dagster_dbt_rerun": bench_dagster_dbt_rerun,
        "load_time": bench_load_time,
        "plugin_discovery": bench_dbt_plugin_discovery,
        "event_cost": bench_event_cost,
    }
    workroot = Path(tempfile.mkdtemp(prefix="bench_", dir="/tmp"))
    log(f"work directory: {workroot}")
    package_version = snapshot_package(workroot)
    log(f"measuring a copy of dbt_rerun_dagster: {package_version}")
    results: dict[str, dict] = {}
    load_averages: list[str] = []
    started = time.perf_counter()
    try:
        for scenario, parts in plan.items():
            if options.only and scenario not in options.only:
                continue
            scenario_started = time.perf_counter()
            load_before = os.getloadavg()[0]
            results[scenario] = _merge([modules[scenario].run(workroot, **part) for part in parts])
            elapsed = time.perf_counter() - scenario_started
            load_after = os.getloadavg()[0]
            load_averages.append(f"{scenario} {load_before:.1f} -> {load_after:.1f} ({elapsed:.0f} s)")
            log(f"[{scenario}] finished in {elapsed:.0f} s; 1-minute load average {load_before:.1f} -> {load_after:.1f}")
    finally:
        if not options.keep_workdir:
            shutil.rmtree(workroot, ignore_errors=True)

    sections = [
        "# Benchmark results" + (" (--quick)" if options.quick else ""),
        describe_machine(),
        f"- dbt_rerun_dagster measured: {package_version}",
        f"- total wall time: {time.perf_counter() - started:.0f} s; command: `{' '.join([Path(sys.executable).name, *sys.argv])}`",
        "- 1-minute load average at the start and end of each scenario (2 cores; other work shares "
        "the machine): " + "; ".join(load_averages),
    ]
    titles = {
        "three_step": [("time_table", "Scenario 1: seed, run, test"), ("memory_table", "Scenario 4: peak memory")],
        "rerun": [("time_table", "Scenario 2: rerun after a failed model"), ("node_table", "Scenario 2: nodes executed")],
        "dagster_dbt_rerun": [
            ("time_table", "Scenario 3: `dbt build` rerun from failure"),
            ("node_table", "Scenario 3: nodes executed"),
            ("memory_table", "Scenario 3: peak memory of the failed `dbt build`"),
        ],
        "load_time": [("table", "Scenario 5: code location load time")],
        "plugin_discovery": [("table", "Side effect of a regular install on plain dbt commands")],
        "event_cost": [("table", "Cost of one asset event in Dagster's event log")],
    }
    for scenario, result in results.items():
        for key, title in titles[scenario]:
            sections.append(f"## {title}\n\n{result[key]}")
    sections.append("## Targets\n\n" + "\n".join(check_targets(results)))
    report = "\n\n".join(sections) + "\n"
    print("\n" + report)
    if options.report:
        options.report.write_text(report)
    if options.json:
        raw = {scenario: result["raw"] for scenario, result in results.items()}
        options.json.write_text(json.dumps(raw, indent=1, default=str))


if __name__ == "__main__":
    main()
