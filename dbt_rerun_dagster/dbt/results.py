"""Reading dbt's `run_results.json` and classifying node statuses."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from dbt_rerun_dagster.errors import RunResultsError

RUN_RESULTS_FILE: Final = "run_results.json"

# Statuses that fail a step even when dbt exits 0.
FAILED_STATUSES: Final = frozenset(
    {
        "error",  # a model, seed or snapshot failed to build
        "fail",  # a data test found rows
        "runtime error",  # a test or operation raised (dbt-core < 1.8 spelling of some errors)
        "partial success",  # a microbatch model built only some batches (dbt-core >= 1.9)
    }
)

# Statuses that `dbt retry` runs again: the failed ones plus the nodes skipped
# because an upstream node failed (dbt's RETRYABLE_STATUSES, dbt-core 1.6 to 1.11).
RETRY_STATUSES: Final = FAILED_STATUSES | {"skipped"}

# `warn` is retried only under --warn-error, as dbt does.
STRICT_RETRY_STATUSES: Final = RETRY_STATUSES | {"warn"}

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    return _ANSI_ESCAPE.sub("", text)


@dataclass(frozen=True)
class NodeResult:
    """One entry of `run_results.json`."""

    unique_id: str
    status: str
    message: str | None
    execution_time: float

    @property
    def resource_type(self) -> str:
        return self.unique_id.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.unique_id.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class RunResults:
    """The parts of a `run_results.json` file that reruns and reports need."""

    path: Path
    invocation_id: str | None
    command: str | None
    generated_at: datetime | None
    nodes: tuple[NodeResult, ...]

    @property
    def failed_nodes(self) -> tuple[NodeResult, ...]:
        return tuple(node for node in self.nodes if node.status in FAILED_STATUSES)

    def status_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(node.status for node in self.nodes).items()))

    def nodes_to_retry(self, *, strict: bool) -> tuple[NodeResult, ...]:
        """Return the nodes `dbt retry` would run again, with dbt's own rules.

        dbt skips `operation.` nodes (project hooks) unless the command was
        `run-operation`, and retries `warn` nodes only under --warn-error.
        """
        statuses = STRICT_RETRY_STATUSES if strict else RETRY_STATUSES
        return tuple(
            node
            for node in self.nodes
            if node.status in statuses
            and (self.command == "run-operation" or node.resource_type != "operation")
        )


def load_run_results(target_dir: Path) -> RunResults:
    """Read `run_results.json` from a dbt target directory.

    Raises:
        RunResultsError: the file is missing or is not a run results artifact.
    """
    path = target_dir / RUN_RESULTS_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise RunResultsError(f"{path} does not exist") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunResultsError(f"{path} cannot be read: {error}") from error

    try:
        return _parse_run_results(path, raw)
    except (KeyError, TypeError, ValueError) as error:
        raise RunResultsError(f"{path} is not a dbt run_results.json file: {error!r}") from error


def _parse_run_results(path: Path, raw: dict[str, Any]) -> RunResults:
    metadata = raw.get("metadata") or {}
    generated_at = metadata.get("generated_at")
    nodes = tuple(
        NodeResult(
            unique_id=str(result["unique_id"]),
            status=str(result["status"]),
            message=strip_ansi(result["message"]) if result.get("message") else None,
            execution_time=float(result.get("execution_time") or 0.0),
        )
        for result in raw["results"]
    )

    return RunResults(
        path=path,
        invocation_id=metadata.get("invocation_id"),
        command=(raw.get("args") or {}).get("which"),
        generated_at=datetime.fromisoformat(generated_at.replace("Z", "+00:00"))
        if generated_at
        else None,
        nodes=nodes,
    )
