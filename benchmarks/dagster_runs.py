"""Execute a job, or re-execute a run, on the persistent Dagster instance at $DAGSTER_HOME.

Usage:
    python benchmarks/dagster_runs.py execute MODULE FUNCTION
    python benchmarks/dagster_runs.py reexecute MODULE FUNCTION PARENT_RUN_ID {from_failure,from_start}

MODULE.FUNCTION returns the job (benchmarks/ must be on PYTHONPATH). A
benchmark starts this script as its own process, as a run launcher starts a
run worker, and times the whole process. The last line of standard output
is JSON: the run id, whether it succeeded, the seconds spent in
`dagster.execute_job`, and each executed step's duration from the event log.
"""

from __future__ import annotations

import argparse
import json
import time

import dagster as dg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    execute = commands.add_parser("execute", help="execute the job as a fresh run")
    reexecute = commands.add_parser("reexecute", help="re-execute a run of the job")
    for subparser in (execute, reexecute):
        subparser.add_argument("module", help="module that defines the job function")
        subparser.add_argument("function", help="module-level function that returns the job")
    reexecute.add_argument("parent_run_id", help="run to re-execute")
    reexecute.add_argument("mode", choices=["from_failure", "from_start"], help="rerun mode")
    options = parser.parse_args()

    job = dg.build_reconstructable_job(options.module, options.function)
    with dg.DagsterInstance.get() as instance:
        reexecution_options = None
        if options.command == "reexecute" and options.mode == "from_failure":
            reexecution_options = dg.ReexecutionOptions.from_failure(options.parent_run_id, instance)
        elif options.command == "reexecute":
            reexecution_options = dg.ReexecutionOptions(parent_run_id=options.parent_run_id)

        started = time.perf_counter()
        result = dg.execute_job(job, instance=instance, reexecution_options=reexecution_options)
        seconds = time.perf_counter() - started
        step_seconds = {
            stats.step_key: stats.end_time - stats.start_time
            for stats in instance.get_run_step_stats(result.run_id)
            if stats.start_time is not None and stats.end_time is not None
        }

    summary = {
        "run_id": result.run_id,
        "success": result.success,
        "execute_job_seconds": seconds,
        "step_seconds": step_seconds,
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
