"""Starting and stopping a real dagster-webserver on 127.0.0.1 for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent


def write_instance_config(home: Path, *, run_retries: bool = False) -> None:
    """Write a dagster.yaml that launches runs at once (no daemon needed) and sends no telemetry."""
    config = (
        "telemetry:\n  enabled: false\n"
        "run_coordinator:\n"
        "  module: dagster._core.run_coordinator\n"
        "  class: DefaultRunCoordinator\n"
    )
    if run_retries:
        config += "run_retries:\n  enabled: true\n"
    (home / "dagster.yaml").write_text(config, encoding="utf-8")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_webserver(
    env: dict[str, str],
    log_path: Path,
    timeout: float = 90.0,
    workspace: Path = REPO_ROOT / "workspace.yaml",
    port: int | None = None,
) -> Iterator[str]:
    """Start dagster-webserver on a workspace file; yield its GraphQL URL."""
    port = port or free_port()
    executable = Path(sys.executable).with_name("dagster-webserver")
    command = [str(executable), "-h", "127.0.0.1", "-p", str(port), "-w", str(workspace)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(base_url, process, log_path, timeout)
        yield f"{base_url}/graphql"
    finally:
        _stop_process_group(process)


@contextmanager
def running_daemon(env: dict[str, str], log_path: Path, workspace: Path) -> Iterator[None]:
    """Start dagster-daemon (sensors, run retries) on a workspace file."""
    executable = Path(sys.executable).with_name("dagster-daemon")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(executable), "run", "-w", str(workspace)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield
    finally:
        _stop_process_group(process)


def _wait_until_ready(
    base_url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"dagster-webserver exited with {process.returncode}:\n{log_path.read_text()}"
            )
        try:
            if requests.get(f"{base_url}/server_info", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise TimeoutError(
        f"dagster-webserver did not answer within {timeout} s:\n{log_path.read_text()}"
    )


def _stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """Stop the webserver and its children (code server, run workers) by process group."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)


def graphql(url: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """Post a GraphQL request; Dagster returns errors as HTTP 500 with a JSON body."""
    response = requests.post(url, json={"query": query, "variables": variables}, timeout=60)
    payload = response.json()
    if "errors" in payload:
        raise RuntimeError(f"GraphQL error (HTTP {response.status_code}): {payload['errors']}")
    return payload["data"]


LAUNCH_RUN = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""

LAUNCH_REEXECUTION = """
mutation Reexecute($params: ReexecutionParams!) {
  launchRunReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""


def launched_run_id(result: dict[str, Any]) -> str:
    if result["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"launch failed: {result}")
    return result["run"]["runId"]
