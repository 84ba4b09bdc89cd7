"""`dbt-rerun`: list, inspect and rerun dbt job runs through a Dagster webserver.

Exit codes: 0 success, 1 the rerun failed (with --wait), 2 usage or
prerequisite error, 3 the webserver could not be reached.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import yaml

from dbt_rerun_dagster.errors import DbtRerunError
from dbt_rerun_dagster.graphql import (
    GraphQLError,
    WebserverUnreachableError,
    default_graphql_url,
    execute_graphql,
    launch_reexecution,
)
from dbt_rerun_dagster.tags import (
    AUTO_RETRY_TAG,
    RERUN_MODE_TAG,
    THREADS_TAG,
    VARS_TAG,
)

EXIT_OK: Final = 0
EXIT_RERUN_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNREACHABLE: Final = 3

FINISHED_STATUSES: Final = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
RESUMABLE_STATUSES: Final = frozenset({"FAILURE", "CANCELED"})
# Step metadata that `dbt-rerun show` prints as text, in this order.
SHOWN_METADATA: Final = (
    "dbt command run",
    "mode",
    "mode reason",
    "node counts",
    "artifact directory",
)
# Step keys of jobs built by build_dbt_job, such as step_2_dbt_run.
_STEP_KEY = re.compile(r"^step_\d+_dbt_[a-z0-9_]+$")

RUN_FIELDS: Final = """
  runId jobName status startTime endTime creationTime parentRunId rootRunId
  tags { key value }
  stepStats { stepKey status }
  executionPlan { steps { key } }
"""
RUNS_QUERY: Final = f"""
query Runs($filter: RunsFilter, $limit: Int) {{
  runsOrError(filter: $filter, limit: $limit) {{
    __typename
    ... on Runs {{ results {{ {RUN_FIELDS} }} }}
    ... on PythonError {{ message }}
    ... on InvalidPipelineRunsFilterError {{ message }}
  }}
}}
"""
RUN_QUERY: Final = f"""
query Run($runId: ID!) {{
  runOrError(runId: $runId) {{
    __typename
    ... on Run {{ {RUN_FIELDS} }}
    ... on RunNotFoundError {{ message }}
    ... on PythonError {{ message }}
  }}
}}
"""
METADATA_FIELDS: Final = """
  label
  ... on TextMetadataEntry { text }
  ... on IntMetadataEntry { intValue }
  ... on JsonMetadataEntry { jsonString }
  ... on PathMetadataEntry { path }
  ... on MarkdownMetadataEntry { mdStr }
"""
LOGS_QUERY: Final = f"""
query Logs($runId: ID!, $cursor: String) {{
  logsForRun(runId: $runId, afterCursor: $cursor, limit: 1000) {{
    __typename
    ... on EventConnection {{
      cursor
      hasMore
      events {{
        __typename
        ... on ExecutionStepOutputEvent {{ stepKey metadataEntries {{ {METADATA_FIELDS} }} }}
        ... on ExecutionStepFailureEvent {{
          stepKey
          failureMetadata {{ description metadataEntries {{ {METADATA_FIELDS} }} }}
        }}
      }}
    }}
    ... on RunNotFoundError {{ message }}
    ... on PythonError {{ message }}
  }}
}}
"""


class PrerequisiteError(DbtRerunError):
    """A command cannot go ahead; the message gives the reason in one sentence."""


@dataclass(frozen=True)
class RunSummary:
    """One run as `dbt-rerun runs` lists it."""

    run_id: str
    job_name: str
    status: str
    trigger: str
    duration_seconds: float | None
    rerun_mode: str | None
    parent_run_id: str | None
    root_run_id: str | None
    failed_steps: list[str]
    step_keys: list[str]

    @classmethod
    def from_graphql(cls, run: dict[str, Any]) -> RunSummary:
        tags = {tag["key"]: tag["value"] for tag in run.get("tags") or []}
        start, end = run.get("startTime"), run.get("endTime")
        plan = run.get("executionPlan") or {}

        return cls(
            run_id=run["runId"],
            job_name=run["jobName"],
            status=run["status"],
            trigger=_trigger(tags),
            duration_seconds=(end - start) if start and end else None,
            rerun_mode=tags.get(RERUN_MODE_TAG) or None,
            parent_run_id=run.get("parentRunId"),
            root_run_id=run.get("rootRunId"),
            failed_steps=[
                s["stepKey"] for s in run.get("stepStats") or [] if s["status"] == "FAILURE"
            ],
            step_keys=[step["key"] for step in plan.get("steps") or []],
        )

    def as_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data.pop("step_keys")

        return data


def _trigger(tags: dict[str, str]) -> str:
    if tags.get(AUTO_RETRY_TAG) == "true":
        return "retry sensor"
    if tags.get("dagster/auto_retry_run_id") or tags.get("dagster/retry_number"):
        return "run retry"
    if tags.get("dagster/schedule_name"):
        return f"schedule {tags['dagster/schedule_name']}"
    if tags.get("dagster/sensor_name"):
        return f"sensor {tags['dagster/sensor_name']}"
    if tags.get("dagster/parent_run_id"):
        return "rerun"

    return "manual"


def fetch_run(url: str, run_id: str) -> RunSummary:
    result = execute_graphql(url, RUN_QUERY, {"runId": run_id})["runOrError"]
    if result["__typename"] == "RunNotFoundError":
        raise PrerequisiteError(f"Run {run_id} does not exist on {url}.")
    if result["__typename"] != "Run":
        raise GraphQLError(result.get("message", str(result)))
    summary = RunSummary.from_graphql(result)
    if not summary.step_keys or not all(_STEP_KEY.match(key) for key in summary.step_keys):
        raise PrerequisiteError(
            f"Run {run_id} belongs to job {summary.job_name}, which is not a dbt job built by "
            "build_dbt_job."
        )

    return summary


def fetch_runs(url: str, job_name: str, limit: int) -> list[RunSummary]:
    variables = {"filter": {"pipelineName": job_name}, "limit": limit}
    result = execute_graphql(url, RUNS_QUERY, variables)["runsOrError"]
    if result["__typename"] != "Runs":
        raise GraphQLError(result.get("message", str(result)))

    return [RunSummary.from_graphql(run) for run in result["results"]]


def fetch_step_reports(url: str, run_id: str) -> dict[str, dict[str, Any]]:
    """Return each step's output or failure metadata, keyed by step."""
    reports: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    while True:
        variables = {"runId": run_id, "cursor": cursor}
        result = execute_graphql(url, LOGS_QUERY, variables)["logsForRun"]
        if result["__typename"] != "EventConnection":
            raise PrerequisiteError(result.get("message", f"No event log for run {run_id}."))
        for event in result["events"]:
            _collect_step_report(event, reports)
        cursor = result["cursor"]
        if not result["hasMore"]:
            return reports


def _collect_step_report(event: dict[str, Any], reports: dict[str, dict[str, Any]]) -> None:
    if event["__typename"] == "ExecutionStepOutputEvent":
        reports[event["stepKey"]] = {"status": "SUCCESS", **_metadata(event["metadataEntries"])}
    elif event["__typename"] == "ExecutionStepFailureEvent":
        failure = event.get("failureMetadata") or {}
        reports[event["stepKey"]] = {
            "status": "FAILURE",
            "description": failure.get("description"),
            **_metadata(failure.get("metadataEntries") or []),
        }


def _metadata(entries: list[dict[str, Any]]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for entry in entries:
        if "jsonString" in entry:
            values[entry["label"]] = json.loads(entry["jsonString"])
        else:
            for key in ("text", "intValue", "path", "mdStr"):
                if key in entry:
                    values[entry["label"]] = entry[key]

    return values


def wait_for_run(url: str, run_id: str, poll_seconds: float = 1.0) -> RunSummary:
    while True:
        summary = fetch_run(url, run_id)
        if summary.status in FINISHED_STATUSES:
            return summary
        time.sleep(poll_seconds)


def start_rerun(
    url: str,
    run_id: str,
    *,
    from_failure: bool,
    threads: int | None = None,
    vars_yaml: str | None = None,
) -> str:
    """Check that `run_id` can be rerun as asked, launch the rerun, return its id."""
    parent = fetch_run(url, run_id)
    if from_failure and parent.status not in RESUMABLE_STATUSES:
        raise PrerequisiteError(
            f"Run {run_id} has status {parent.status}; only failed or canceled runs can be "
            "rerun from failure (use --from-start to run every step again)."
        )
    if parent.status not in FINISHED_STATUSES:
        raise PrerequisiteError(f"Run {run_id} is still {parent.status}; wait until it ends.")
    tags: dict[str, str] = {}
    if threads is not None:
        tags[THREADS_TAG] = str(threads)
    if vars_yaml is not None:
        tags[VARS_TAG] = vars_yaml

    return launch_reexecution(url, run_id, "FROM_FAILURE" if from_failure else "ALL_STEPS", tags)


def latest_failed_run(url: str, job_name: str) -> RunSummary:
    """Return the job's latest run if it failed or was canceled, else explain why not."""
    runs = fetch_runs(url, job_name, limit=1)
    if not runs:
        raise PrerequisiteError(f"Job {job_name} has no runs on {url}; nothing to retry.")
    latest = runs[0]
    if latest.status == "SUCCESS":
        raise PrerequisiteError(f"The latest run of {job_name} succeeded; nothing to retry.")
    if latest.status not in RESUMABLE_STATUSES:
        raise PrerequisiteError(
            f"The latest run of {job_name} ({latest.run_id}) is still {latest.status}; "
            "retry it when it has ended."
        )

    return latest


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dbt-rerun", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url",
        default=default_graphql_url(),
        help="GraphQL endpoint of the Dagster webserver "
        "(default: $DBT_RERUN_GRAPHQL_URL, else http://127.0.0.1:3000/graphql)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    commands = parser.add_subparsers(dest="command", required=True)

    runs = commands.add_parser("runs", help="list recent runs of a job")
    runs.add_argument("job", help="job name")
    runs.add_argument("--limit", type=int, default=20, help="number of runs (default 20)")

    show = commands.add_parser("show", help="show each step of a run")
    show.add_argument("run_id", help="run id")

    rerun = commands.add_parser("rerun", help="rerun a run from failure or from start")
    rerun.add_argument("run_id", help="run id")
    mode = rerun.add_mutually_exclusive_group(required=True)
    mode.add_argument("--from-failure", action="store_true", help="rerun failed and skipped steps")
    mode.add_argument("--from-start", action="store_true", help="rerun every step")
    rerun.add_argument("--threads", type=int, help="dbt --threads for the rerun")
    rerun.add_argument("--vars", help="dbt --vars for the rerun, a YAML mapping")
    rerun.add_argument("--wait", action="store_true", help="wait for the rerun to end")

    unresolved = commands.add_parser(
        "unresolved", help="list failed root runs of a job that no rerun has resolved"
    )
    unresolved.add_argument("job", help="job name")
    unresolved.add_argument("--limit", type=int, default=200, help="recent runs to scan")

    prune = commands.add_parser(
        "prune-artifacts",
        help="delete a job's old artifacts (reads $DAGSTER_HOME, not the webserver)",
    )
    prune.add_argument("job", help="job name")
    prune.add_argument(
        "--root",
        help="artifact root, a path or an fsspec URL (default: $DAGSTER_HOME/dbt_rerun_artifacts)",
    )
    prune.add_argument("--max-age-days", type=float, help="delete runs older than this")
    prune.add_argument("--keep-last", type=int, help="keep this many most recent runs")

    retry = commands.add_parser(
        "retry-failed", help="rerun a job's latest run from failure if it failed"
    )
    retry.add_argument("job", help="job name")
    retry.add_argument("--wait", action="store_true", help="wait for the rerun to end")

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `dbt-rerun` command line and return its exit code."""
    options = _parser().parse_args(argv)
    try:
        _validate(options)
        return _dispatch(options)
    except WebserverUnreachableError as error:
        _fail(options, str(error))
        return EXIT_UNREACHABLE
    except (PrerequisiteError, GraphQLError) as error:
        _fail(options, str(error))
        return EXIT_USAGE


def _validate(options: argparse.Namespace) -> None:
    if getattr(options, "threads", None) is not None and options.threads < 1:
        raise PrerequisiteError(f"--threads must be 1 or more, got {options.threads}.")
    vars_yaml = getattr(options, "vars", None)
    if vars_yaml is not None:
        try:
            parsed = yaml.safe_load(vars_yaml)
        except yaml.YAMLError as error:
            raise PrerequisiteError(f"--vars {vars_yaml!r} is not valid YAML: {error}") from error
        if not isinstance(parsed, dict):
            raise PrerequisiteError(
                f"--vars must be a YAML mapping such as '{{key: value}}', got {vars_yaml!r}."
            )


def _dispatch(options: argparse.Namespace) -> int:
    url = options.url
    if options.command == "runs":
        return _print_runs(options, fetch_runs(url, options.job, options.limit))
    if options.command == "prune-artifacts":
        return _prune(options)
    if options.command == "unresolved":
        return _print_unresolved(
            options, unresolved_roots(fetch_runs(url, options.job, options.limit))
        )
    if options.command == "show":
        summary = fetch_run(url, options.run_id)
        return _print_show(options, summary, fetch_step_reports(url, options.run_id))
    if options.command == "rerun":
        new_run_id = start_rerun(
            url,
            options.run_id,
            from_failure=options.from_failure,
            threads=options.threads,
            vars_yaml=options.vars,
        )
        return _report_launch(options, url, options.run_id, new_run_id)

    latest = latest_failed_run(url, options.job)
    new_run_id = start_rerun(url, latest.run_id, from_failure=True)

    return _report_launch(options, url, latest.run_id, new_run_id)


def _report_launch(options: argparse.Namespace, url: str, parent_id: str, new_id: str) -> int:
    result: dict[str, Any] = {"parent_run_id": parent_id, "run_id": new_id}
    if options.wait:
        finished = wait_for_run(url, new_id)
        result["status"] = finished.status
    if options.json:
        print(json.dumps(result))
    else:
        print(f"Launched run {new_id}, a rerun of {parent_id}.")
        if "status" in result:
            print(f"Run {new_id} ended with status {result['status']}.")
    if result.get("status") not in (None, "SUCCESS"):
        return EXIT_RERUN_FAILED

    return EXIT_OK


def _print_runs(options: argparse.Namespace, runs: list[RunSummary]) -> int:
    if options.json:
        print(json.dumps([run.as_json() for run in runs], indent=2))
        return EXIT_OK
    print(f"{'run id':<36}  {'status':<9}  {'trigger':<14}  {'duration':>8}  {'mode':<12}  details")
    for run in runs:
        duration = f"{run.duration_seconds:.0f} s" if run.duration_seconds is not None else "-"
        details = []
        if run.parent_run_id:
            details.append(f"parent {run.parent_run_id[:8]}, root {(run.root_run_id or '')[:8]}")
        if run.failed_steps:
            details.append(f"failed step {', '.join(run.failed_steps)}")
        print(
            f"{run.run_id:<36}  {run.status:<9}  {run.trigger:<14}  {duration:>8}  "
            f"{run.rerun_mode or '-':<12}  {'; '.join(details)}"
        )

    return EXIT_OK


def _print_show(
    options: argparse.Namespace, summary: RunSummary, reports: dict[str, dict[str, Any]]
) -> int:
    steps = [{"step": key, **reports.get(key, {"status": "NOT RUN"})} for key in summary.step_keys]
    if options.json:
        print(json.dumps({"run": summary.as_json(), "steps": steps}, indent=2, default=str))
        return EXIT_OK
    print(f"Run {summary.run_id} of {summary.job_name}: {summary.status}")
    for step in steps:
        print(f"\n{step['step']}: {step['status']}")
        for label in (
            "dbt command run",
            "mode",
            "mode reason",
            "node counts",
            "artifact directory",
        ):
            if label in step:
                print(f"  {label}: {step[label]}")
        if step.get("description"):
            print("  " + step["description"].replace("\n", "\n  "))

    return EXIT_OK


def unresolved_roots(runs: list[RunSummary]) -> list[dict[str, Any]]:
    """Group runs by root run; return failed groups without a successful run, newest first."""
    groups: dict[str, list[RunSummary]] = {}
    for run in runs:
        groups.setdefault(run.root_run_id or run.run_id, []).append(run)
    unresolved = []
    for root_id, members in groups.items():
        root = next((run for run in members if run.run_id == root_id), None)
        if root is None or root.status not in RESUMABLE_STATUSES:
            continue
        if any(run.status == "SUCCESS" for run in members):
            continue
        latest = members[0]  # runsOrError lists the newest run first
        unresolved.append(
            {
                "root_run_id": root_id,
                "runs": len(members),
                "latest_run_id": latest.run_id,
                "latest_status": latest.status,
                "failed_steps": latest.failed_steps,
            }
        )

    return unresolved


def _print_unresolved(options: argparse.Namespace, unresolved: list[dict[str, Any]]) -> int:
    if options.json:
        print(json.dumps(unresolved, indent=2))
        return EXIT_OK
    if not unresolved:
        print(f"Every failed run of {options.job} has been resolved by a rerun.")
    for item in unresolved:
        print(
            f"{item['root_run_id']}  {item['runs']} run(s), latest {item['latest_run_id']} "
            f"{item['latest_status']}, failed step {', '.join(item['failed_steps']) or '-'}"
        )

    return EXIT_OK


def _prune(options: argparse.Namespace) -> int:
    import dagster as dg

    from dbt_rerun_dagster.orchestration.retention import ArtifactRetention, prune_artifacts
    from dbt_rerun_dagster.orchestration.spec import DEFAULT_ARTIFACTS_DIRNAME

    try:
        retention = ArtifactRetention(options.max_age_days, options.keep_last)
    except DbtRerunError as error:
        raise PrerequisiteError(f"{error}; pass --max-age-days, --keep-last or both.") from error
    try:
        instance = dg.DagsterInstance.get()
    except dg.DagsterInvariantViolationError as error:
        raise PrerequisiteError(
            "prune-artifacts reads run statuses from the Dagster instance; set DAGSTER_HOME."
        ) from error
    with instance:
        root = options.root or f"{instance.root_directory}/{DEFAULT_ARTIFACTS_DIRNAME}"
        report = prune_artifacts(instance, f"{root.rstrip('/')}/{options.job}", retention)
    if options.json:
        print(json.dumps(report.__dict__))
    else:
        print(
            f"Deleted artifacts of {len(report.deleted)} run(s), kept only the retry files of "
            f"{len(report.slimmed)} unresolved failed run(s), kept {len(report.kept)} run(s)."
        )

    return EXIT_OK


def _fail(options: argparse.Namespace, message: str) -> None:
    if options.json:
        print(json.dumps({"error": message}))
    else:
        print(f"dbt-rerun: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
