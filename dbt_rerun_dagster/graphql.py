"""A small client for the Dagster webserver's GraphQL API.

Re-executions ("from failure", "all steps") can only be launched through the
webserver: Dagster's `RunRequest` has no parent run or step selection, and
`DagsterGraphQLClient` has no re-execution method (Dagster 1.13).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final

import requests

from dbt_rerun_dagster.errors import DbtRerunError

DEFAULT_GRAPHQL_URL: Final = "http://127.0.0.1:3000/graphql"
# Environment variable that overrides the default URL for sensors and the CLI.
GRAPHQL_URL_ENV: Final = "DBT_RERUN_GRAPHQL_URL"


class GraphQLError(DbtRerunError):
    """The webserver responded with an error."""


class WebserverUnreachableError(DbtRerunError):
    """No webserver responded at the URL."""


def default_graphql_url() -> str:
    return os.environ.get(GRAPHQL_URL_ENV) or DEFAULT_GRAPHQL_URL


def execute_graphql(
    url: str, query: str, variables: Mapping[str, Any] | None = None, timeout: float = 30.0
) -> dict[str, Any]:
    """Post a GraphQL request and return its `data`.

    Raises:
        WebserverUnreachableError: nothing responded at `url`.
        GraphQLError: the response carries errors. Dagster returns a Python
            error with HTTP 500 and a JSON body, whose message is used.
    """
    try:
        response = requests.post(
            url, json={"query": query, "variables": dict(variables or {})}, timeout=timeout
        )
    except (requests.ConnectionError, requests.Timeout) as error:
        raise WebserverUnreachableError(
            f"No Dagster webserver responded at {url} ({type(error).__name__}). "
            "Start it with `dagster dev` or pass the right --url."
        ) from error

    try:
        payload = response.json()
    except ValueError as error:
        raise GraphQLError(
            f"{url} responded with HTTP {response.status_code} and no JSON; "
            "is it a Dagster webserver?"
        ) from error
    if payload.get("errors"):
        messages = "; ".join(str(item.get("message", item)) for item in payload["errors"])
        raise GraphQLError(f"GraphQL request failed (HTTP {response.status_code}): {messages}")
    if not response.ok:
        raise GraphQLError(f"GraphQL request failed with HTTP {response.status_code}")

    return payload["data"]


LAUNCH_REEXECUTION_MUTATION: Final = """
mutation LaunchRunReexecution($params: ReexecutionParams!) {
  launchRunReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
    ... on PipelineNotFoundError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey }
    ... on RunConflict { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
  }
}
"""


def launch_reexecution(
    url: str, parent_run_id: str, strategy: str, extra_tags: Mapping[str, str] | None = None
) -> str:
    """Launch a re-execution of `parent_run_id` and return the new run's id.

    Args:
        strategy: "FROM_FAILURE" or "ALL_STEPS".
    """
    params: dict[str, Any] = {
        "parentRunId": parent_run_id,
        "strategy": strategy,
        "extraTags": [{"key": key, "value": value} for key, value in (extra_tags or {}).items()],
        "useParentRunTags": True,
    }
    data = execute_graphql(url, LAUNCH_REEXECUTION_MUTATION, {"params": params})
    result = data["launchRunReexecution"]
    if result["__typename"] != "LaunchRunSuccess":
        detail = result.get("message") or result.get("errors") or result
        raise GraphQLError(
            f"Re-execution of run {parent_run_id} was rejected ({result['__typename']}): {detail}"
        )

    return result["run"]["runId"]
