"""Benchmark code location: a job whose one op reports $BENCH_EVENT_COUNT asset materializations.

The plugin reports one asset materialization per model or seed and one asset
check evaluation per data test that a step ran. This job reports the same
kind of events without dbt, to measure what each event costs in Dagster.
"""

import os
import time

import dagster as dg

EVENT_COUNT = int(os.environ.get("BENCH_EVENT_COUNT", "1000"))


@dg.op
def report_materializations(context: dg.OpExecutionContext):
    started = time.perf_counter()
    for index in range(EVENT_COUNT):
        # The same description and metadata as the plugin's events for a dbt model.
        yield dg.AssetMaterialization(
            asset_key=["bench_events", f"m_{index:04d}"],
            description=f"dbt model model.bench_events.m_{index:04d}",
            metadata={
                "unique_id": dg.MetadataValue.text(f"model.bench_events.m_{index:04d}"),
                "execution time (s)": dg.MetadataValue.float(0.1),
            },
        )
    context.log.info(f"reported {EVENT_COUNT} materializations in {time.perf_counter() - started:.2f} s")
    yield dg.Output(None)


@dg.job(executor_def=dg.in_process_executor)
def events_job() -> None:
    report_materializations()


def get_events_job() -> dg.JobDefinition:
    """Return events_job, for `dg.build_reconstructable_job`."""
    return events_job
