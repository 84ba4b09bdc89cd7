"""Cost of one asset event in Dagster's event log, without dbt.

Usage: python benchmarks/bench_event_cost.py [--events 1000] [--rounds 3]

Runs events_location.py, a one-op job that reports N asset materializations
like the plugin's per-node events, and the same job with 0 events, each as a
new process on a new SQLite instance (Dagster's default storage). The
difference of the op's durations, divided by N, is the cost of one event,
which the plugin pays for every model, seed and data test a step ran.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench_rerun import RUNS_SCRIPT
from harness import PYTHON, Timings, bench_env, log, markdown_table, new_dagster_home, rotated, run_measured

CONTENDERS = ("no_events", "events")


def run(workroot: Path, event_counts: list[int], rounds: int) -> dict:
    """Measure the op duration with 0 and N events and return the table and raw samples."""
    rows, raw = [], {}
    for event_count in event_counts:
        workdir = workroot / "event_cost" / f"n{event_count}"
        step_seconds = Timings()
        for round_index in range(rounds):
            for name in rotated(CONTENDERS, round_index):
                home = new_dagster_home(workdir / "dagster_home")
                env = bench_env(workdir, dagster_home=home)
                env["BENCH_EVENT_COUNT"] = str(event_count if name == "events" else 0)
                measured = run_measured(
                    [PYTHON, RUNS_SCRIPT, "execute", "events_location", "get_events_job"],
                    cwd=workdir,
                    env=env,
                    log_path=workdir / "logs" / f"round{round_index + 1}-{name}.log",
                )
                seconds = measured.last_json_line()["step_seconds"]["report_materializations"]
                step_seconds.add(name, seconds)
                log(f"[events] N={event_count} round {round_index + 1} {name:<9} op {seconds:6.2f} s")

        raw[event_count] = step_seconds.samples
        cost = step_seconds.median("events") - step_seconds.median("no_events")
        rows.append(
            [
                event_count,
                rounds,
                f"{step_seconds.median('no_events'):.2f}",
                f"{step_seconds.median('events'):.2f}",
                f"{cost / event_count * 1000:.1f}",
            ]
        )

    table = markdown_table(
        ["events", "rounds", "op with 0 events s", "op with N events s", "ms per event"], rows
    )

    return {"table": table, "raw": raw}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1000], help="event counts (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each contender (default 3)")
    parser.add_argument("--workdir", type=Path, help="work directory (default: a new /tmp/bench_* directory, removed at the end)")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_", dir="/tmp") as tmp:
        result = run(options.workdir or Path(tmp), options.events, options.rounds)

    print("\nCost of one asset event in Dagster's event log\n")
    print(result["table"])


if __name__ == "__main__":
    main()
