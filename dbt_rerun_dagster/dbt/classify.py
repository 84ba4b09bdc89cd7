"""Classifying a failed dbt step: would an automatic retry fix it?

Only failures outside the project's control are worth retrying on their own:
dropped connections, timeouts, lock and concurrency conflicts, a warehouse
asking to try again. A data test that finds rows or a SQL or compilation error
fails the same way until someone changes code or data.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from dbt_rerun_dagster.dbt.results import RunResults

# Case-insensitive regular expressions for error messages of failures that a
# retry can fix. They match the wording of DuckDB, PostgreSQL, Snowflake,
# BigQuery and Databricks adapters as seen in their error messages.
DEFAULT_TRANSIENT_PATTERNS: tuple[str, ...] = (
    r"connection (?:was |has been )?(?:reset|refused|closed|lost|dropped|aborted|timed out)",
    r"(?:could not|can't|cannot|unable to|failed to) connect",
    r"server closed the connection",
    r"timed? ?out",
    r"timeout",
    r"could not set lock",
    r"conflicting lock",
    r"lock (?:wait )?timeout",
    r"deadlock",
    r"database is locked",
    r"could not serialize",
    r"serialization failure",
    r"concurrent (?:update|transaction|modification)",
    r"transaction conflict",
    r"too many connections",
    r"rate ?limit",
    r"throttl",
    r"try again",
    r"temporarily unavailable",
    r"service unavailable",
    r"\btransient\b",
)


# Reasons end up in run tags, which should stay short enough to read in the UI.
MAX_REASON_CHARS = 300


class FailureKind(str, enum.Enum):
    """Whether an automatic retry may fix a failure; the value is written to run tags."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class FailureClassification:
    kind: FailureKind
    reason: str

    @property
    def retryable(self) -> bool:
        return self.kind is FailureKind.TRANSIENT


@dataclass(frozen=True)
class FailureClassifier:
    """Decides which failed steps automatic retries may rerun.

    Attributes:
        transient_patterns: Case-insensitive regular expressions; a failed
            node whose message matches one is transient.
        retry_everything: Classify every failure as transient.
    """

    transient_patterns: Sequence[str] = field(default=DEFAULT_TRANSIENT_PATTERNS)
    retry_everything: bool = False

    def __post_init__(self) -> None:
        for pattern in self.transient_patterns:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(
                    f"transient pattern {pattern!r} is not a valid regular expression: {error}"
                ) from error

    def is_transient_message(self, message: str) -> bool:
        return any(
            re.search(pattern, message, re.IGNORECASE) for pattern in self.transient_patterns
        )

    def classify(self, results: RunResults | None, error: str | None) -> FailureClassification:
        """Classify a failed invocation from its node results, or its error if it has none."""
        if self.retry_everything:
            return FailureClassification(FailureKind.TRANSIENT, "every failure is retried")

        failed = results.failed_nodes if results is not None else ()
        if not failed:
            return self._classify_message("dbt stopped before running any node", error or "")
        for node in failed:
            if node.status == "fail":
                return FailureClassification(
                    FailureKind.PERMANENT,
                    f"data test {node.unique_id} failed; its data or code needs a fix",
                )
            classification = self._classify_message(node.unique_id, node.message or "")
            if not classification.retryable:
                return classification

        names = ", ".join(node.unique_id for node in failed)
        return FailureClassification(FailureKind.TRANSIENT, f"transient errors in {names}")

    def _classify_message(self, subject: str, message: str) -> FailureClassification:
        summary = " ".join(message.split())[:MAX_REASON_CHARS] or "no error message"
        if message and self.is_transient_message(message):
            return FailureClassification(FailureKind.TRANSIENT, f"{subject}: {summary}")

        return FailureClassification(
            FailureKind.PERMANENT, f"{subject}: {summary} (not a transient error)"
        )
